"""Issue 13 item 11, what needs no browser: errors read as text (no Python ``b'...'``, a JSON
error says where it is), no emoji icon anywhere (an empty box without an emoji font), and the
Results picker's "How many" is off while the indices are typed."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cae.spec import ArchitectureSpec, SpecError
from cae.text import first_bytes, json_error
from cae.uploads import load_array_file

REPO = Path(__file__).resolve().parents[1]
# Emoji and pictographs (❌ U+274C, ✅ U+2705, ⚠ U+26A0, 🚫 U+1F6AB, ...): a font-less machine
# draws them as empty boxes. Streamlit's material icons need no font of the system's.
EMOJI = re.compile("[\u2600-\u27bf\U0001f000-\U0001faff\u2b00-\u2bff\ufe0f]")


def test_a_json_error_says_where_with_the_text_there_once_quoted():
    text = '{"name": "x", "input_shape": [28, 28, 1], oops}'
    with pytest.raises(SpecError) as caught:
        ArchitectureSpec.from_json(text.encode())  # an upload's bytes, as the page passes them
    message = str(caught.value)
    assert "b'" not in message and "\\'" not in message and '\\"' not in message, message
    assert "at line 1, column 43" in message, message
    assert message.endswith("""Received: '…hape": [28, 28, 1], oops}'"""), message


def test_a_long_value_is_quoted_once():
    """``_short`` cut a long value's repr, which was then quoted again: '\\'{"name"...'."""
    data = {"name": "a", "input_shape": [28, 28, 1], "encoder": "x" * 100, "decoder": []}
    with pytest.raises(SpecError) as caught:
        ArchitectureSpec.from_json(json.dumps(data))
    message = str(caught.value)
    assert "Received: encoder='xxxx" in message and "\\'" not in message, message


def test_a_binary_file_is_named_by_its_bytes_not_python_reprs():
    with pytest.raises(SpecError) as caught:
        ArchitectureSpec.from_json(b"\x89PNG\r\n\x1a\n\x00\x00")
    message = str(caught.value)
    assert "not UTF-8 text (byte 89 at position 0)" in message and "b'" not in message, message
    with pytest.raises(ValueError) as caught:
        load_array_file(b"these are not arrays", "digits.npz")
    assert str(caught.value).endswith('Received: first bytes "these ar"'), caught.value
    assert first_bytes(b"\x00\xff") == "00 FF" and repr(first_bytes(b"ab")) == '"ab"'


def test_json_error_of_a_nesting_too_deep():
    problem, received = json_error(RecursionError("maximum recursion depth exceeded"), "[" * 9)
    assert problem == "maximum recursion depth exceeded" and received == "9 characters"


def test_no_emoji_in_what_the_pages_show():
    """The Architecture page's ❌ rendered as an empty box; every icon is a material icon."""
    shown = [REPO / "app.py", *REPO.glob("pages/*.py"), *REPO.glob("ui/*.py")]
    for path in [*shown, *REPO.glob("cae/*.py")]:  # cae's messages are shown on the pages
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found = EMOJI.findall(node.value)
                assert not found, (path.name, node.lineno, found)


def test_the_architecture_page_shows_a_bad_upload_with_a_material_icon(tmp_path, monkeypatch):
    monkeypatch.setenv("CAE_MODELS_DIR", str(tmp_path))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    app.session_state["arch_message"] = ("error", "net.json was not loaded: reason")
    app.run().switch_page("pages/1_Architecture.py").run()
    (alert,) = [e for e in app.error if "was not loaded" in e.value]
    assert alert.icon == ":material/error:"


@pytest.mark.slow
def test_how_many_is_off_while_indices_are_typed(tmp_path, monkeypatch):
    from tests.runs import make_trained_run

    monkeypatch.setenv("CAE_MODELS_DIR", str(tmp_path))
    make_trained_run(tmp_path, epochs=1, limit=64, name="small")
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.run().switch_page("pages/3_Results.py").run()
    assert not app.exception
    assert not app.slider(key="results_count").disabled
    app.radio(key="results_mode").set_value("by index").run()
    assert app.slider(key="results_count").disabled
    app.radio(key="results_mode").set_value("random").run()
    assert not app.slider(key="results_count").disabled
