"""User-supplied names as plain text: cleaned at input, escaped wherever they are shown.

Run, spec, file and zip member names come from people (the Train page, the CLI, a train.json, an
upload) and are shown to every visitor: in Streamlit markdown (which renders images, links,
``:red-background[...]`` directives, LaTeX and headings), in Plotly legends and hovers (which
render ``<a href>``) and in terminals (which obey escape sequences). Three functions, one per
concern:

- :func:`clean_name` at input: drops control characters and bidi overrides (``U+202E`` shows
  ``gnp.exe`` as ``exe.png``), collapses newlines and runs of white space to one space.
- :func:`plain_markdown` (or :func:`plain_code`, monospace) where a name goes into markdown, and
  :func:`plain_html` where it goes into a Plotly text.
- :func:`terminal_safe` where the CLI prints one.

And :func:`fmt_seconds`, a duration as a clock reads (the pages and the CLI). No Streamlit here.
"""

from __future__ import annotations

import html
import json
import math
import re
import unicodedata

# Bidi embeddings, overrides and isolates, the directional marks and the Arabic letter mark: they
# reorder what follows them, so a name can show a different text than it holds.
BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)
# Characters that end a line (besides the C0 ones): they become a space like newlines do.
_LINE_BREAKS = frozenset("\u2028\u2029\u0085")

# Markdown-significant anywhere in a line (Streamlit: CommonMark + GFM, raw HTML and entities,
# ``$math$``); ``:`` where a ``:directive[...]`` or ``:emoji:`` could start; ``_`` unless inside a
# word (``data_seed`` is never emphasis).
_MARKDOWN_ANYWHERE = re.compile(r"[\\`*\[\]<>&~|$]|:(?=[\w/+-])|(?<![^\W_])_|_(?![^\W_])")
# Significant only where a line starts (a heading, a list item, a setext underline).
_MARKDOWN_LINE_START = re.compile(r"^(\s*)([-+=#])")
_ORDERED_ITEM = re.compile(r"^(\s*\d{1,9})([.)])")
# GFM links bare URLs and e-mail addresses after parsing, in the text itself (remark-gfm's
# ``https?://``, ``www.`` and ``x@y.z`` patterns), so a backslash cannot stop it: an invisible
# WORD JOINER inside each pattern does.
WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?i)(?<=:)(?=//)|(?<=\bwww)(?=\.)|(?=@)")


def clean_name(text: str, max_len: int | None = None) -> str:
    """``text`` without control characters (Unicode category Cc) and bidi controls, every run of
    white space (newlines included) as one space, stripped, cut to ``max_len`` characters.

    Example: ``clean_name("a\\n# b\\u202egnp.exe\\x1b[31m")`` is ``"a # bgnp.exe[31m"``.
    """
    if not isinstance(text, str):
        raise TypeError(f"a name must be a string. Received: type={type(text).__name__}")
    kept = []
    for char in text:
        if char in BIDI_CONTROLS:
            continue
        if char.isspace() or char in _LINE_BREAKS:
            kept.append(" ")
        elif unicodedata.category(char) != "Cc":
            kept.append(char)
    cleaned = " ".join("".join(kept).split())
    if max_len is not None:
        cleaned = cleaned[: max(0, max_len)].rstrip()
    return cleaned


def plain_markdown(text: str) -> str:
    """``text`` escaped for Streamlit markdown (``st.markdown``, ``st.caption``, alerts, titles,
    metric values, image captions), so it shows as the characters it holds.

    Escapes with a backslash ``\\ ` * [ ] < > & ~ | $`` everywhere, ``:`` before a word
    character, ``/``, ``+`` or ``-`` (a directive, an emoji), ``_`` except inside a word, and a
    leading ``# - + =`` and ordered-list ``1.``/``1)``; puts an invisible ``WORD_JOINER`` inside
    ``://``, ``www.`` and before ``@`` (GFM links those after parsing, escaped or not).
    Everything else stays as it is, so a message stays readable in tests and logs
    (``Received: data_seed=None`` is unchanged): parentheses are markup only after ``[...]``,
    the rest only at a line start, and the text is made one line first.
    Example: ``plain_markdown("![x](http://h/x.png)")`` is ``"!\\[x\\](http\\:\u2060//h/x.png)"``.
    """
    text = clean_name(str(text))  # no newline may start a heading or a list
    text = _MARKDOWN_ANYWHERE.sub(lambda match: "\\" + match.group(0), text)
    text = _MARKDOWN_LINE_START.sub(r"\1\\\2", text)
    text = _ORDERED_ITEM.sub(r"\1\\\2", text)
    return _AUTOLINK.sub(WORD_JOINER, text)


def plain_code(text: str) -> str:
    """``text`` as a markdown code span (monospace, nothing inside rendered), fenced with more
    backticks than any run of them inside, so no text can close it early.
    Example: ``plain_code("a`b")`` is ``"``a`b``"``."""
    text = clean_name(str(text))
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}" if text else ""


def plain_html(text: str) -> str:
    """``text`` for a Plotly string (trace name, hover text, axis or figure title), which renders
    a subset of HTML (``<a href>``, ``<b>``, entities) and ``%{...}`` in hover templates: ``& <
    >`` become entities and ``%`` becomes ``&#37;`` (plotly.js decodes these and numeric ones,
    but not ``&quot;``, so quotes stay), control and bidi characters are dropped."""
    return html.escape(clean_name(str(text)), quote=False).replace("%", "&#37;")


def terminal_safe(text: str) -> str:
    """``text`` for a terminal: control characters (C0, DEL, C1) and bidi controls as ``\\xNN`` /
    ``\\uNNNN``, so a name cannot move the cursor, recolour or retitle the terminal, or reverse
    what follows it. Example: ``terminal_safe("a\\x1b[31m")`` is ``"a\\\\x1b[31m"``."""
    out = []
    for char in str(text):
        code = ord(char)
        if char in BIDI_CONTROLS or char in _LINE_BREAKS:
            out.append(f"\\u{code:04x}")
        elif unicodedata.category(char) == "Cc":
            out.append(f"\\x{code:02x}")
        else:
            out.append(char)
    return "".join(out)


class Shown(str):
    """Text already written for people, shown as is where a ``Received: key=value`` line takes a
    value's ``repr`` (so it is not quoted and escaped a second time)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def first_bytes(data: bytes, count: int = 8) -> Shown:
    """The first ``count`` bytes of a file, readable: as quoted text when they are printable
    (``"these ar"``), else as hex (``89 50 4E 47 0D 0A 1A 0A``); never Python's ``b'...'``."""
    head = bytes(data[:count])
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable():
        return Shown(f'"{text}"')
    return Shown(head.hex(" ").upper() or "(none)")


def json_error(error: ValueError | RecursionError, document: str | bytes) -> tuple[str, Shown]:
    """A JSON parse error for people, as (problem, text received): ``("Expecting ',' delimiter at
    line 1, column 15", '...')`` with the 40 characters around that place; for text that is not
    UTF-8, which byte is not, and the file's first bytes."""
    if isinstance(error, UnicodeDecodeError):
        bad = first_bytes(error.object[error.start : error.end])
        return f"not UTF-8 text (byte {bad} at position {error.start:,})", first_bytes(error.object)
    pos = getattr(error, "pos", None)
    if not isinstance(error, json.JSONDecodeError) or pos is None or not isinstance(document, str):
        return short_text(str(error) or type(error).__name__), Shown(
            f"{len(document):,} characters"
        )
    lo, hi = max(0, pos - 20), pos + 20
    snippet = ("…" if lo else "") + document[lo:hi] + ("…" if hi < len(document) else "")
    where = f"{error.msg} at line {error.lineno}, column {error.colno}"
    return where, Shown(short_text(repr(clean_name(snippet))))


def short_text(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis where it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt_seconds(seconds: float | None) -> str:
    """``1:05`` (or ``1:02:03`` from an hour) for a number of seconds; a dash for none."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
