"""How long uploaded files stay on disk, and how much of it each workspace may take.

An upload is written once, by content, to ``models/.uploads/<sha256><ext>`` when it is chosen on
the Train page (``cae.store.save_upload``), trained on or not. Beside it, ``<file>.owners.json``
records who uploaded it (the workspace ids), its size, when it was last used, and the jobs that
hold it. The rules:

- **Kept while used.** A training job holds its upload from the moment it is made (queued) until
  it ends (:func:`hold_upload`, :func:`release_upload`); a held file is never removed. A hold of a
  process that is gone (the server was killed) no longer counts.
- **Then for a stated time.** An upload not held is removed :func:`keep_seconds` after its last
  use (chosen again, or the end of the last job that trained on it): 24 hours, or
  ``CAE_UPLOAD_KEEP_HOURS``. Runs keep their own test images, so a removed upload never breaks a
  saved run; it only has to be uploaded again to train on it again.
- **Within a quota per workspace.** The files a workspace uploaded may take :func:`upload_quota`
  bytes together (1 GiB, or ``CAE_UPLOAD_QUOTA`` in bytes); a file uploaded by two workspaces
  counts for each. A new upload over the quota is refused with :class:`UploadQuotaError`, which
  names the quota and the size received; nothing already kept is removed to make room.

Disk grows only when an upload is saved, and every save first removes what has expired
(:func:`clean_uploads`), so the folder holds at most one quota per workspace active within the
keep time. Nothing here imports TensorFlow or streamlit; the records are read and written under one
lock per process (the server is the only writer).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

UPLOADS_DIR = ".uploads"  # inside the runs folder (hidden, so never listed as a run)
DEFAULT_QUOTA_BYTES = 2**30  # 1 GiB: five of the largest uploads (200 MB each)
DEFAULT_KEEP_HOURS = 24.0  # a day after the last use: the next lesson's uploads start afresh
RECORD_SUFFIX = ".owners.json"
PARTIAL_PREFIX = ".tmp-"  # a file being written (cae.store.save_upload), renamed when complete
STALE_PARTIAL_SECONDS = 3600.0  # a partial file this old was left by a crash
UPLOADS_LOCK = threading.RLock()
"""Held around every read-modify-write of a record, and by ``save_upload`` from its quota check
to its record, so two uploads of one workspace cannot both pass the same free space."""


class UploadQuotaError(ValueError):
    """An upload that would take a workspace past its upload quota."""


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


def upload_quota() -> int:
    """The bytes of uploads one workspace may keep: ``$CAE_UPLOAD_QUOTA`` (bytes), else 1 GiB."""
    return int(_env_number("CAE_UPLOAD_QUOTA", DEFAULT_QUOTA_BYTES))


def keep_seconds() -> float:
    """How long an upload nobody holds is kept after its last use: ``$CAE_UPLOAD_KEEP_HOURS``
    (hours), else 24 hours."""
    return _env_number("CAE_UPLOAD_KEEP_HOURS", DEFAULT_KEEP_HOURS) * 3600.0


def size_text(count: int) -> str:
    """Bytes for people: ``1.0 GiB``, ``200.0 MiB``, ``512 bytes``."""
    for unit, power in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 2**power:
            return f"{count / 2**power:.1f} {unit}"
    return f"{count:,} bytes"


# --------------------------------------------------------------------------------------------
# Records


@dataclass
class UploadRecord:
    """What ``<file>.owners.json`` says of one upload: its size, the workspaces that uploaded it
    (each with when it last chose it), when it was last used by anyone, and the jobs holding it."""

    size: int = 0
    owners: dict[str, float] = field(default_factory=dict)
    last_used: float = 0.0
    holds: dict[str, dict[str, Any]] = field(default_factory=dict)  # holder -> {owner, pid, since}

    def live_holds(self) -> dict[str, dict[str, Any]]:
        """The holds whose process still runs (a killed server's holds do not count)."""
        return {name: hold for name, hold in self.holds.items() if _alive(hold.get("pid"))}

    def expires(self, keep: float) -> float | None:
        """When the file may be removed (a Unix time), or None while a job holds it."""
        return None if self.live_holds() else self.last_used + keep


def record_path(upload: str | os.PathLike[str]) -> Path:
    """The record beside an uploaded file: ``<file>.owners.json``."""
    path = Path(upload)
    return path.with_name(path.name + RECORD_SUFFIX)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


def read_record(upload: str | os.PathLike[str]) -> UploadRecord:
    """The record of an uploaded file; a missing or unreadable record (a file saved before
    records, or a crash mid-write) reads as no owners, last used when the file was written."""
    path = Path(upload)
    try:
        status = path.stat()
    except OSError:
        status = None
    fallback = UploadRecord(
        size=status.st_size if status else 0, last_used=status.st_mtime if status else 0.0
    )
    try:
        data = json.loads(record_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return fallback
    if not isinstance(data, dict):
        return fallback
    owners = data.get("owners") if isinstance(data.get("owners"), dict) else {}
    holds = data.get("holds") if isinstance(data.get("holds"), dict) else {}
    last_used = data.get("last_used")
    return UploadRecord(
        size=fallback.size,
        owners={str(k): float(v) for k, v in owners.items() if _is_number(v)},
        last_used=float(last_used) if _is_number(last_used) else fallback.last_used,
        holds={str(k): v for k, v in holds.items() if isinstance(v, dict)},
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _write_record(upload: Path, record: UploadRecord) -> None:
    """Write the record next to the file in one step (a temporary file, then a rename)."""
    target = record_path(upload)
    partial = target.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-{threading.get_ident()}.json")
    data = {
        "size": record.size,
        "owners": record.owners,
        "last_used": record.last_used,
        "holds": record.holds,
    }
    try:
        partial.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise


def _check_owner(owner: str) -> str:
    if not isinstance(owner, str) or not owner.strip():
        raise ValueError(f"an upload needs the workspace it belongs to. Received: owner={owner!r}")
    return owner


def claim_upload(upload: str | os.PathLike[str], owner: str, now: float | None = None) -> None:
    """Record that ``owner`` chose (uploaded) the file now: it counts for that workspace's quota
    and its keep time starts again."""
    _check_owner(owner)
    path = Path(upload)
    now = time.time() if now is None else now
    with UPLOADS_LOCK:
        record = read_record(path)
        record.size = path.stat().st_size
        record.owners[owner] = now
        record.last_used = max(record.last_used, now)
        _write_record(path, record)


def _is_kept_upload(path: Path) -> bool:
    """True for a file of an uploads folder (written by ``save_upload``, maybe before records
    existed): a ``--data`` file of the CLI or a built-in dataset is not ours to hold or remove."""
    return path.parent.name == UPLOADS_DIR and path.is_file() and not path.name.startswith(".")


def hold_upload(upload: str | os.PathLike[str] | None, holder: str, owner: str = "") -> bool:
    """Keep an uploaded file while ``holder`` (a job id) may still read it; True when it was held
    (False for None, or a file that is not a kept upload)."""
    if upload is None:
        return False
    path = Path(upload)
    with UPLOADS_LOCK:
        if not _is_kept_upload(path):
            return False
        record = read_record(path)
        now = time.time()
        record.holds[str(holder)] = {"owner": owner, "pid": os.getpid(), "since": now}
        record.last_used = max(record.last_used, now)
        _write_record(path, record)
    return True


def release_upload(upload: str | os.PathLike[str] | None, holder: str) -> None:
    """The job ``holder`` no longer needs the file: its keep time starts now."""
    if upload is None:
        return
    path = Path(upload)
    with UPLOADS_LOCK:
        if not _is_kept_upload(path):
            return
        record = read_record(path)
        if record.holds.pop(str(holder), None) is None:
            return
        record.last_used = max(record.last_used, time.time())
        _write_record(path, record)


# --------------------------------------------------------------------------------------------
# Quota and clean-up


def _uploads(folder: Path) -> list[Path]:
    """The uploaded files of ``folder`` (not records, not partial files)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    found = []
    for entry in entries:
        if entry.name.startswith(".") or entry.name.endswith(RECORD_SUFFIX):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False):
                found.append(Path(entry.path))
    return found


@dataclass(frozen=True)
class UploadUse:
    """What a workspace's uploads take: bytes, files, and when the first one not held expires."""

    owner: str
    used: int
    files: int
    quota: int
    next_expiry: float | None  # a Unix time, or None when every file is held (or there is none)


def owner_usage(folder: str | os.PathLike[str], owner: str) -> UploadUse:
    """The bytes and files the uploads of ``owner`` take in ``folder``, against its quota."""
    used = files = 0
    expiries = []
    keep = keep_seconds()
    for path in _uploads(Path(folder)):
        record = read_record(path)
        if owner in record.owners:
            used += record.size
            files += 1
            expiry = record.expires(keep)
            if expiry is not None:
                expiries.append(expiry)
    return UploadUse(owner, used, files, upload_quota(), min(expiries, default=None))


def check_quota(folder: str | os.PathLike[str], owner: str, target: Path, size: int) -> None:
    """Raise UploadQuotaError when ``owner`` saving ``size`` bytes as ``target`` would pass its
    quota (a file it uploaded already costs nothing more)."""
    _check_owner(owner)
    if target.is_file() and owner in read_record(target).owners:
        return
    use = owner_usage(folder, owner)
    if use.used + size <= use.quota:
        return
    if use.files:
        when = (
            f"the first of them is removed at "
            f"{datetime.fromtimestamp(use.next_expiry).astimezone():%Y-%m-%d %H:%M %Z} "
            if use.next_expiry is not None
            else "they are in use by a training "
        )
        held = (
            f"this workspace keeps {use.files} upload(s) of {size_text(use.used)}: {when}"
            f"({keep_seconds() / 3600:g} hours after its last use)"
        )
    else:
        held = "this workspace keeps no uploads"
    raise UploadQuotaError(
        f"the upload does not fit this workspace's upload quota of {size_text(use.quota)} "
        f"(CAE_UPLOAD_QUOTA): {held}; nothing was removed. Received: size={size:,} bytes "
        f"({size_text(size)}), quota={use.quota:,} bytes, used={use.used:,} bytes"
    )


def clean_uploads(folder: str | os.PathLike[str], now: float | None = None) -> list[str]:
    """Remove the uploads of ``folder`` that no live job holds and whose keep time has passed
    (with their records), records left without a file, and partial files left by a crash; the
    names removed."""
    base = Path(folder)
    now = time.time() if now is None else now
    keep = keep_seconds()
    removed = []
    with UPLOADS_LOCK:
        for path in _uploads(base):
            record = read_record(path)
            expiry = record.expires(keep)
            if expiry is None or now < expiry:
                if record.holds and len(record.live_holds()) != len(record.holds):
                    record.holds = record.live_holds()  # a killed server's holds
                    with contextlib.suppress(OSError):
                        _write_record(path, record)
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path.name)
            with contextlib.suppress(OSError):
                record_path(path).unlink()
        try:
            entries = list(os.scandir(base))
        except OSError:
            entries = []
        for entry in entries:
            with contextlib.suppress(OSError):
                orphan = (
                    entry.name.endswith(RECORD_SUFFIX)
                    and not (base / entry.name[: -len(RECORD_SUFFIX)]).exists()
                )
                partial = (
                    entry.name.startswith(PARTIAL_PREFIX)
                    and now - entry.stat(follow_symlinks=False).st_mtime > STALE_PARTIAL_SECONDS
                )
                if (orphan or partial) and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed.append(entry.name)
    return removed
