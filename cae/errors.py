"""One line for an error, whatever raised it: what the CLI prints and the Train page shows.

TensorFlow's messages can carry whole tensors (a ``PerReplica`` of a batch is kilobytes of
``array([[[0.], ...``), graph stack traces and newlines; a person needs the first sentence. The
full text stays available: the CLI prints the traceback under ``CAE_DEBUG=1``.
"""

from __future__ import annotations

import re

MAX_LINE = 300  # characters of an error line, the "error: " prefix included
_ARRAY_DUMP = re.compile(r"(numpy=)?\s*array\(\[.*?(\]\)|$)", re.S)
_PER_REPLICA = re.compile(r"PerReplica:\{.*?(\}\)|\}|$)", re.S)
# TensorFlow's "Graph execution error:" message: the Python stack of the node that failed, then
# the reason, then the node's name. The reason is what a person needs.
_GRAPH_HEAD = re.compile(
    r"Graph execution error:\s*(Detected at node .*?defined at \(most recent call last\):\s*)?",
    re.S,
)
_STACK_LINE = re.compile(r'^\s*File "[^"]*", line \d+, in .*$', re.M)
_NODE_TAIL = re.compile(r"\s*\[\[\{\{node [^\n]*$|\s*\[Op:[^\]]*\]\s*$", re.S)
_NOISE = (
    "The error could be from a previous operation. Restart your program to reset.",
    "[type.googleapis.com/tensorflow.DerivedStatus='']",
)


def short_message(error: BaseException | str, limit: int = MAX_LINE) -> str:
    """``error`` as one line of at most ``limit`` characters: array dumps, TensorFlow's graph
    stacks and node names cut, whitespace collapsed, an ellipsis where text was dropped (before
    a closing ``Received: ...`` of up to half the line, which is kept)."""
    text = error if isinstance(error, str) else str(error)
    if not isinstance(error, str) and isinstance(getattr(error, "message", None), str):
        text = error.message or text  # tf.errors.OpError: the message without the node dump
    text = _PER_REPLICA.sub("PerReplica{…}", text)
    text = _ARRAY_DUMP.sub("array(…)", text)
    if _GRAPH_HEAD.search(text):
        text = _STACK_LINE.sub("", _GRAPH_HEAD.sub("", text))
        text = _NODE_TAIL.sub("", text)
    for noise in _NOISE:
        text = text.replace(noise, "")
    text = " ".join(text.split())
    if len(text) > limit:
        # the house's messages end with the values received: cut the middle, not them
        cut = text.rfind(" Received: ")
        tail = text[cut:] if cut > 0 else ""
        if tail and len(tail) <= limit // 2:
            text = text[: limit - len(tail) - 1].rstrip() + "…" + tail
        else:
            text = text[: max(0, limit - 1)].rstrip() + "…"
    return text


def error_line(error: BaseException, *, with_type: bool = True, prefix: str = "error: ") -> str:
    """``prefix``, the error's type (``with_type``) and its short message, in at most
    :data:`MAX_LINE` characters."""
    head = f"{prefix}{type(error).__name__}: " if with_type else prefix
    return head + short_message(error, MAX_LINE - len(head))
