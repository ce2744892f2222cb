"""User-supplied names as plain text: cleaned at input, escaped wherever they are shown.

Run, spec, file and zip member names come from people (the Train page, the CLI, a train.json, an
upload) and are shown to every visitor: in Streamlit markdown (which renders images, links,
``:red-background[...]`` directives, LaTeX and headings), in Plotly legends and hovers (which
render ``<a href>``) and in terminals (which obey escape sequences). Three functions, one per
concern:

- :func:`clean_name` at input: drops control characters and bidi overrides (``U+202E`` shows
  ``gnp.exe`` as ``exe.png``), collapses newlines and runs of white space to one space.
- :func:`plain_markdown` and :func:`plain_html` where a name goes into markdown or a Plotly text.
- :func:`terminal_safe` where the CLI prints one.

No Streamlit here.
"""

from __future__ import annotations

import html
import re
import unicodedata

# Bidi embeddings, overrides and isolates, the directional marks and the Arabic letter mark: they
# reorder what follows them, so a name can show a different text than it holds.
BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)
# Characters that end a line (besides the C0 ones): they become a space like newlines do.
_LINE_BREAKS = frozenset("\u2028\u2029\u0085")

# Markdown-significant anywhere in a line (Streamlit: CommonMark + GFM, ``:directive[...]``,
# ``:emoji:``, ``$math$``; raw HTML and entities; ``@`` for e-mail autolinks).
_MARKDOWN_ANYWHERE = re.compile(r"([\\`*_\[\]<>&~|:$#@])")
# Significant only where a line starts (a list item, a setext underline): escaped there.
_MARKDOWN_LINE_START = re.compile(r"^(\s*)([-+=])")
_ORDERED_ITEM = re.compile(r"^(\s*\d{1,9})([.)])")
_WWW = re.compile(r"(?i)(www)\.")  # GFM turns www.example.com into a link


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

    Escapes with a backslash ``\\ ` * _ [ ] < > & ~ | : $ # @`` everywhere, a leading ``- + =``
    and an ordered-list ``1.``/``1)``, and the dot of ``www.`` (an autolink). Parentheses, dots
    and hyphens elsewhere stay as they are: they are markup only after ``[...]`` or at a line
    start. Call it on the name (after :func:`clean_name`), not on the markdown around it.
    Example: ``plain_markdown("![x](http://h/x.png)")`` is ``"!\\[x\\](http\\://h/x.png)"``.
    """
    text = clean_name(str(text))  # no newline may start a heading or a list
    text = _MARKDOWN_ANYWHERE.sub(r"\\\1", text)
    text = _MARKDOWN_LINE_START.sub(r"\1\\\2", text)
    text = _ORDERED_ITEM.sub(r"\1\\\2", text)
    return _WWW.sub(r"\1\\.", text)


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
