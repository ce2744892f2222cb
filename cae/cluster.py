"""The cluster of a multi-worker training, read from ``TF_CONFIG``, checked before TensorFlow
starts: a bad config, a port in use and a peer that never answers each give one line.

TensorFlow's ``MultiWorkerMirroredStrategy`` reads the same variable. Measured here (TensorFlow
2.21): with a peer missing, its constructor waits for it forever; with the own port taken it fails
with "Could not start gRPC server", naming no port. So the CLI meets its peers first (:func:`rendezvous`),
in Python, where a taken port or a missing peer can be named.
No TensorFlow here.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PEER_TIMEOUT = 120.0  # seconds the workers may take to all be up (CAE_PEER_TIMEOUT)
TASK_TYPES = ("worker", "chief")
EXAMPLE = (
    '{"cluster": {"worker": ["host1:23456", "host2:23456"]}, '
    '"task": {"type": "worker", "index": 0}}'
)


def _address(value: Any, where: str) -> str:
    if not isinstance(value, str) or value.count(":") < 1:
        raise ValueError(f"TF_CONFIG: {where} must be 'host:port'. Received: {where}={value!r}")
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"TF_CONFIG: {where} must be 'host:port' with a port from 1 to 65535. "
            f"Received: {where}={value!r}"
        )
    return value


@dataclass(frozen=True)
class Cluster:
    """The workers (and optional chief) of a multi-worker training, and which one this is."""

    workers: tuple[str, ...]
    chief: str | None
    task_type: str
    task_index: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Cluster:
        """The cluster ``TF_CONFIG`` describes; ValueError (one line) naming what is wrong."""
        raw = (os.environ if env is None else env).get("TF_CONFIG")
        if not raw:
            raise ValueError(
                "the multiworker strategy needs the TF_CONFIG environment variable describing "
                f"the cluster, e.g. {EXAMPLE}. Received: TF_CONFIG=None"
            )
        try:
            config = json.loads(raw)
        except ValueError as error:
            raise ValueError(
                f"TF_CONFIG is not valid JSON ({error}). Received: TF_CONFIG={raw[:120]!r}"
            ) from None
        if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
            raise ValueError(
                f"TF_CONFIG must be a JSON object with 'cluster' and 'task', e.g. {EXAMPLE}. "
                f"Received: TF_CONFIG={raw[:120]!r}"
            )
        cluster, task = config["cluster"], config.get("task")
        unknown = sorted(set(cluster) - set(TASK_TYPES))
        if unknown:
            raise ValueError(
                f"TF_CONFIG: the cluster may hold 'worker' and 'chief' lists only. "
                f"Received: {unknown}"
            )
        workers = cluster.get("worker") or []
        chiefs = cluster.get("chief") or []
        if not isinstance(workers, list) or not isinstance(chiefs, list) or len(chiefs) > 1:
            raise ValueError(
                "TF_CONFIG: cluster.worker must be a list of 'host:port' and cluster.chief a list "
                f"of at most one. Received: worker={workers!r}, chief={chiefs!r}"
            )
        addresses = [_address(a, f"worker[{i}]") for i, a in enumerate(workers)]
        chief = _address(chiefs[0], "chief[0]") if chiefs else None
        everyone = addresses + ([chief] if chief else [])
        if len(everyone) < 1 or len(set(everyone)) != len(everyone):
            raise ValueError(
                f"TF_CONFIG: the cluster needs at least one address, each once. "
                f"Received: {everyone}"
            )
        if not isinstance(task, dict):
            raise ValueError(
                f"TF_CONFIG needs 'task': {{'type': 'worker', 'index': N}}. Received: task={task!r}"
            )
        kind, index = task.get("type"), task.get("index", 0)
        members = addresses if kind == "worker" else ([chief] if chief else [])
        if kind not in TASK_TYPES or isinstance(index, bool) or not isinstance(index, int):
            raise ValueError(
                "TF_CONFIG: task.type must be 'worker' or 'chief' and task.index an integer. "
                f"Received: task={task!r}"
            )
        if not 0 <= index < len(members):
            raise ValueError(
                f"TF_CONFIG: task.index must name one of the {len(members)} {kind} addresses. "
                f"Received: task={task!r}"
            )
        return cls(tuple(addresses), chief, kind, index)

    @property
    def address(self) -> str:
        """This task's own 'host:port'."""
        return self.chief if self.task_type == "chief" else self.workers[self.task_index]  # type: ignore[return-value]

    @property
    def peers(self) -> tuple[str, ...]:
        """Every other task's 'host:port'."""
        everyone = (*self.workers, *([self.chief] if self.chief else []))
        return tuple(address for address in everyone if address != self.address)

    @property
    def is_chief(self) -> bool:
        """True on the task that writes the run: the chief, else worker 0."""
        if self.chief is not None:
            return self.task_type == "chief"
        return self.task_index == 0

    @property
    def size(self) -> int:
        """How many tasks train."""
        return len(self.workers) + (1 if self.chief else 0)


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def unreachable(addresses: tuple[str, ...], timeout: float = 1.0) -> list[str]:
    """The addresses that do not accept a TCP connection within ``timeout`` seconds each."""
    missing = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                pass
        except OSError:
            missing.append(address)
    return missing


def rendezvous(cluster: Cluster, timeout: float | None = None, poll: float = 0.25) -> None:
    """Wait until every peer answers on its port, listening on this task's own port meanwhile so
    that the peers see this one; ValueError (one line) when the port is taken or a peer has not
    answered within ``timeout`` seconds (``CAE_PEER_TIMEOUT``, default 120).

    Why: TensorFlow's strategy, once started, waits for missing peers forever inside C++ (no
    Python thread or signal handler runs meanwhile), and a taken port only gives "Could not start
    gRPC server". The socket here only listens, never accepts: the kernel completes the peers'
    connections, and closing it leaves nothing behind, so TensorFlow can bind the port next. A
    peer already past this point answers on the same port with TensorFlow's own server."""
    if timeout is None:
        timeout = float(os.environ.get("CAE_PEER_TIMEOUT", PEER_TIMEOUT))
    port = _port(cluster.address)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("", port))
        except OSError:
            raise ValueError(
                f"port {port} of this task ({cluster.task_type} {cluster.task_index}, "
                f"{cluster.address}) is in use on this machine: stop what uses it or choose "
                f"another port in TF_CONFIG. Received: address={cluster.address!r}"
            ) from None
        listener.listen(64)
        deadline = time.monotonic() + timeout
        waiting = list(cluster.peers)
        while waiting:
            waiting = unreachable(tuple(waiting), timeout=min(1.0, poll * 4))
            if not waiting:
                break
            if time.monotonic() > deadline:
                raise ValueError(
                    f"the other workers did not all join within {timeout:.0f} s; no answer from "
                    f"{', '.join(waiting)}: start every worker with the same cluster in TF_CONFIG "
                    f"and open those ports. Received: task={cluster.task_type}:{cluster.task_index}"
                )
            time.sleep(poll)
    finally:
        listener.close()
