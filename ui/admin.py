"""The teacher's way in to the Admin page, and the queue as it shows there.

Who may open it (:func:`admin_access`, plain values in and out): a browser on the server's own
machine (the request's remote address is localhost: ``st.context.ip_address`` is None while the
request has headers; a page run with no request at all, as in a test, is not local), or anyone
who enters ``CAE_ADMIN_TOKEN``'s value once: the browser then keeps a digest of it (never the token
itself) in the ``cae_admin`` cookie, read back with ``st.context.cookies`` on the next visits, and
nothing of it ever goes in a URL. Without the variable only the server's machine gets in.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

import streamlit as st
import streamlit.components.v1 as components

from cae.jobs import JOBS
from cae.preflight import size_text
from cae.studies import STUDIES
from cae.text import fmt_seconds, plain_markdown

TOKEN_ENV = "CAE_ADMIN_TOKEN"
COOKIE = "cae_admin"
COOKIE_DAYS = 30
GRANTED_KEY = "admin_granted"  # this session entered the token (the cookie shows from the next)


def token_digest(token: str) -> str:
    """What the cookie holds: a keyed digest of the token, so the cookie never carries it."""
    return hmac.new(token.encode(), b"cae-admin-cookie", hashlib.sha256).hexdigest()


def admin_access(
    *, remote_ip: str | None, has_request: bool, token: str, cookie: str = "", entered: str = ""
) -> tuple[bool, str]:
    """(allowed, why) for one visit: local, or the token entered now, or its digest in the cookie."""
    if has_request and remote_ip is None:
        return True, "this is the server's own machine"
    if not token:
        return False, (
            "The Admin page opens on the server's own machine (http://localhost). To open it "
            f"from elsewhere, start the server with {TOKEN_ENV} set and enter its value here."
        )
    if cookie and hmac.compare_digest(cookie, token_digest(token)):
        return True, "the admin cookie of this browser"
    if entered and hmac.compare_digest(entered.encode(), token.encode()):
        return True, "the admin token"
    return False, f"Enter the admin token ({TOKEN_ENV}) to see and stop the server's queue."


def gate() -> bool:
    """Draw the way in; True when this visit may see the queue."""
    token = os.environ.get(TOKEN_ENV, "")
    if token and st.session_state.get(GRANTED_KEY) == token_digest(token):
        return True
    remote_ip = st.context.ip_address
    cookie = st.context.cookies.get(COOKIE, "")
    allowed, why = admin_access(
        remote_ip=remote_ip if remote_ip is None or isinstance(remote_ip, str) else "unknown",
        has_request=bool(st.context.headers),
        token=token,
        cookie=cookie if isinstance(cookie, str) else "",
    )
    if allowed:
        st.caption(f"Admin: {why}.")
        return True
    st.warning(why, icon=":material/lock:")
    if not token:
        return False
    entered = st.text_input("Admin token", type="password", key="admin_token")
    allowed, why = admin_access(
        remote_ip="remote", has_request=True, token=token, entered=entered or ""
    )
    if entered and not allowed:
        st.error("That is not the admin token.", icon=":material/error:")
    if allowed:
        st.session_state[GRANTED_KEY] = token_digest(token)
        remember_in_cookie(token_digest(token))
    return allowed


def remember_in_cookie(value: str) -> None:
    """Write the admin cookie from the browser (a script in a zero-height component)."""
    seconds = COOKIE_DAYS * 86400
    components.html(
        f"<script>document.cookie = '{COOKIE}={value}; path=/; max-age={seconds}; "
        "SameSite=Strict';</script>",
        height=0,
    )


def queue_rows() -> list[dict[str, Any]]:
    """The whole queue, one plain row per entry: owner (short), kind, what, state, place,
    estimated start, estimated memory."""
    rows = []
    for entry in JOBS.scheduler.entries():
        rows.append(
            {
                "owner": entry["owner"][:8],
                "kind": entry["kind"],
                "what": entry["label"],
                "state": entry["state"],
                "place": entry["place"],
                "starts in": fmt_seconds(entry["starts_in"]) if entry["state"] == "queued" else "",
                "memory": size_text(entry["bytes"]),
                "id": entry["entry_id"],
            }
        )
    return rows


def stop_entry(entry_id: str) -> None:
    """Stop one entry of the queue; an experiment run stops its whole study (grid or search)."""
    entry = JOBS.scheduler.get(entry_id)
    if entry is None:
        return
    if entry.kind == "experiment" and entry.group:
        STUDIES.stop(entry.group)
    else:
        JOBS.scheduler.stop(entry_id)


def budget_line() -> str:
    """The budget and the slots, and how much of each the running entries take."""
    queue = JOBS.scheduler
    running = [e for e in queue.active() if e.state == "running"]
    queued = sum(e.state == "queued" for e in queue.active())
    used = sum(e.bytes for e in running)
    return (
        f"Memory budget {size_text(queue.budget)}, {size_text(used)} estimated in use by "
        f"{len(running)} running; {queue.slots} training slot(s); {queued} waiting."
    )


def label(row: dict[str, Any]) -> str:
    """One active entry for the stop picker (plain text)."""
    return f"{row['state']} · {row['kind']} · {plain_markdown(row['what'])} · {row['owner']}"
