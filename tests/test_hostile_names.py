"""Names are text: hostile run, spec, upload and class names saved as runs, then shown on every
page (AppTest), printed by ``cae list`` and served to a real browser, which must fetch nothing
from the URLs they hold.

203.0.113.7 is TEST-NET-3 (RFC 5737): an address no request can legitimately go to.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cae.__main__ import main as cli
from cae.builder import build
from cae.plots import image_grid, latent_map, loss_curves
from cae.recipe import DataRecipe, TestSplit, load_recipe
from cae.request import TrainRequest
from cae.spec import ArchitectureSpec, preset
from cae.store import list_runs, save_run
from cae.text import (
    WORD_JOINER,
    clean_name,
    plain_code,
    plain_html,
    plain_markdown,
    terminal_safe,
)
from cae.training import TrainConfig
from ui.state import RUN_KEY, SPEC_KEY

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
HOST = "203.0.113.7"

HOSTILE = [
    f"![b](http://{HOST}/image.png) my run",
    f"[click me](http://{HOST}/link) please",
    ":red-background[WARNING: your runs were deleted] :material/warning:",
    f"<a href=http://{HOST}/a>html link</a>",
    f"<img src=http://{HOST}/img.png>",
    "\u202egnp.exe",  # shows as exe.png with the override
    "one\n# Heading\n- item\n1. first",
    "\x1b[31mred\x1b[0m \x1b]0;title\x07 ansi",
    "a long name " * 25,
    "emoji 🧪🔥 :fire: $x^2$ _it_ **bold** ~~gone~~ www.example.com me@example.com",
]
UPLOAD_NAME = f"![u](http://{HOST}/upload.png)\u202eypn.npz"
CLASS_NAMES = [f"<a href=http://{HOST}/c>c</a>", ":red[y]", f"![z](http://{HOST}/z.png)"]
SPEC_NAME = f"![s](http://{HOST}/spec.png) :blue-background[spec]"
# In the browser: the newest run (the active one) carries every trick at once.
BROWSER_NAME = (
    f"![b](http://{HOST}/b.png) <img src=http://{HOST}/i.png> [l](http://{HOST}/l) "
    ":red-background[FAKE WARNING]"
)

# What a name must never become in rendered markdown: an image, a link, HTML, a directive, a
# heading, a bidi override or an escape sequence.
UNESCAPED = re.compile(
    r"!\[|(?<!\\)\]\(|(?<!\\)<(a|img)\b|(?<!\\):red-background|(?<!\\):blue-background"
    r"|\n#|\u202e|\x1b"
)


def upload_recipe(folder: Path) -> DataRecipe:
    """An uploaded .npz of 60 bundled digits with string labels (class names) and a hostile name."""
    images = load_recipe(DataRecipe("mnist-sample", limit=60)).x_train[:60]
    pixels = np.round(images[..., 0] * 255).astype(np.uint8)
    labels = np.array([CLASS_NAMES[i % 3] for i in range(60)])
    path = folder / "upload.npz"
    np.savez(path, x_train=pixels[:48], y_train=labels[:48], x_test=pixels[48:], y_test=labels[48:])
    return DataRecipe.for_file(path, name=UPLOAD_NAME)


def save_hostile_runs(root: Path, names: list[str]) -> list[str]:
    """One untrained classic run per name (the last one on the hostile upload, with a hostile
    spec name); their ids, oldest first."""
    model = build(preset("classic")).autoencoder
    sample = DataRecipe("mnist-sample", limit=32)
    sample_split = TestSplit.of(load_recipe(sample), sample)
    upload = upload_recipe(root.parent)
    ids = []
    for index, name in enumerate(names):
        last = index == len(names) - 1
        recipe = upload if last else sample
        spec = replace(preset("classic"), name=SPEC_NAME) if last else preset("classic")
        ids.append(
            save_run(
                model,
                spec,
                name=name,
                train_config={"data": recipe.to_dict()},
                history={"loss": [0.3, 0.2], "val_loss": [0.31, 0.22]},
                metrics={"mse": 0.1, "psnr": 10.0, "ssim": 0.1, "params": 2690},
                test_split=TestSplit.of(load_recipe(recipe), recipe) if last else sample_split,
                root=root,
            )
        )
    return ids


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile") / "models"
    root.mkdir()
    ids = save_hostile_runs(root, HOSTILE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CAE_MODELS_DIR", str(root))
        yield root, ids


# ------------------------------------------------------------------------------ the functions


def test_names_are_cleaned_at_input():
    for name in HOSTILE:
        cleaned = clean_name(name)
        assert "\n" not in cleaned and "\x1b" not in cleaned and "\u202e" not in cleaned
        assert cleaned == cleaned.strip() and "  " not in cleaned
    assert clean_name("\u202egnp.exe") == "gnp.exe"
    assert clean_name("a\n# b\r\n\tc\u2028d") == "a # b c d"
    assert clean_name("x" * 90, 80) == "x" * 80
    request = TrainRequest(
        spec=preset("classic"),
        data=DataRecipe("mnist-sample"),
        config=TrainConfig(),
        name="one\n# two\u202e",
    )
    assert request.name == "one # two"
    with pytest.raises(ValueError, match="Received: name=''"):
        TrainRequest(preset("classic"), DataRecipe(), TrainConfig(), name="\x1b\u202e\n")
    spec = ArchitectureSpec.from_dict({**preset("classic").to_dict(), "name": "a\nb\u202ec"})
    assert spec.name == "a bc"


def test_markdown_html_and_terminal_escapes():
    joiner = WORD_JOINER  # invisible: GFM links bare URLs and e-mails after parsing, escaped or not
    assert plain_markdown(HOSTILE[0]) == rf"!\[b\](http\:{joiner}//203.0.113.7/image.png) my run"
    assert plain_markdown(":red-background[x]") == r"\:red-background\[x\]"
    assert plain_markdown("# h") == r"\# h" and plain_markdown("1. x") == r"1\. x"
    assert plain_markdown("Received: data_seed=None") == "Received: data_seed=None"
    assert plain_markdown("www.example.com a@b.co") == f"www{joiner}.example.com a{joiner}@b.co"
    assert plain_code("a`b") == "``a`b``" and plain_code("run-1") == "`run-1`"
    assert plain_html("<a href=x>y</a> 5%") == "&lt;a href=x&gt;y&lt;/a&gt; 5&#37;"
    assert terminal_safe("\x1b[31mred\u202e\n") == "\\x1b[31mred\\u202e\\x0a"


def test_plotly_figures_show_names_as_text():
    figures = [
        loss_curves({name: {"loss": [0.3], "val_loss": [0.2]} for name in HOSTILE}),
        latent_map(np.zeros((3, 2)), np.array([0.5, 0.2]), np.array([0, 1, 2]), CLASS_NAMES),
    ]
    for figure in figures:
        texts = plotly_texts(json.loads(figure.to_json()))
        assert texts
        for text in texts:
            assert "<a" not in text and "<img" not in text and "\u202e" not in text, text
    names = [trace["name"] for trace in json.loads(figures[1].to_json())["data"]]
    assert names[0] == f"&lt;a href=http://{HOST}/c&gt;c&lt;/a&gt;"


def test_image_grid_titles_are_text():
    """An image grid is HTML: a run name as a row title is escaped, its bidi controls dropped."""
    rows = [np.zeros((2, 4, 4, 1))] * 3
    grid = image_grid(rows, [HOSTILE[3], HOSTILE[4], "\u202egnp.exe"])
    assert "<a " not in grid and "<img src=http" not in grid and "\u202e" not in grid
    assert f"&lt;a href=http://{HOST}/a&gt;html link&lt;/a&gt;" in grid
    assert f"&lt;img src=http://{HOST}/img.png&gt;" in grid


def plotly_texts(spec: dict) -> list[str]:
    """Every string plotly.js renders as text with HTML: names, hovers, titles, annotations."""
    texts = []
    for trace in spec.get("data", []):
        for key in ("name", "hovertemplate", "hovertext", "text"):
            value = trace.get(key)
            texts.extend(value if isinstance(value, list) else [value])
    layout = spec.get("layout", {})
    for value in layout.values():
        if isinstance(value, dict) and isinstance(value.get("title"), dict):
            texts.append(value["title"].get("text"))
    if isinstance(layout.get("title"), dict):
        texts.append(layout["title"].get("text"))
    texts.extend(note.get("text") for note in layout.get("annotations", []))
    return [text for text in texts if isinstance(text, str)]


# ------------------------------------------------------------------------------- every page


# An image grid's own markup (cae.plots.image_grid): its tiles and its style, taken out of an
# st.html body before the names in it are checked.
GRID_MARKUP = re.compile(r"<img class='cae-grid-tile'[^>]*>|<style>.*?</style>", re.S)


def rendered(app: AppTest) -> tuple[list[str], list[str], list[str]]:
    """(every string the page renders as markdown, every Plotly text, every st.html body without
    an image grid's own tiles and style) in the app's element tree."""
    markdown: list[str] = []
    plotly: list[str] = []
    html: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        kind = getattr(node, "type", None)
        if kind == "plotly_chart" and proto is not None:
            plotly.extend(plotly_texts(json.loads(proto.spec)))
        elif kind == "html" and proto is not None:
            html.append(GRID_MARKUP.sub("", proto.body))
        elif kind == "imgs" or (proto is not None and hasattr(proto, "imgs")):
            markdown.extend(image.caption for image in proto.imgs)
        elif proto is not None:
            for field in ("body", "label"):
                value = getattr(proto, field, None)
                if isinstance(value, str):
                    markdown.append(value)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(app._tree)
    return markdown, plotly, html


def check_page(app: AppTest, shown: list[str]) -> None:
    """No element renders a hostile name as markup; each name in ``shown`` appears escaped."""
    assert not app.exception, [item.value for item in app.exception]
    markdown, plotly, html = rendered(app)
    for text in markdown:
        assert not UNESCAPED.search(text), text
        for name in HOSTILE + CLASS_NAMES + [UPLOAD_NAME, SPEC_NAME]:
            cleaned = clean_name(name)
            if plain_markdown(cleaned) != cleaned:
                assert cleaned not in text, text
    for text in plotly:
        assert "<a" not in text and "<img" not in text and "\u202e" not in text, text
    for text in html:  # HTML, not markdown: only tags and bidi controls would be a problem
        assert not re.search(r"<(a|img)\b", text) and "\u202e" not in text, text
    everything = "\n".join(markdown)
    for name in shown:
        assert plain_markdown(clean_name(name)) in everything, name


def open_app(page: str | None = None, state: dict | None = None) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=120)
    for key, value in (state or {}).items():
        app.session_state[key] = value
    app.run()
    if page is not None:
        app.switch_page(page).run()
    return app


def hostile_spec() -> dict:
    return {**preset("classic").to_dict(), "name": SPEC_NAME}


@pytest.mark.slow
def test_home_and_train_show_hostile_names_as_text(hostile_runs):
    root, ids = hostile_runs
    for run_id, name in zip(ids, HOSTILE, strict=True):
        app = open_app(state={RUN_KEY: run_id, SPEC_KEY: hostile_spec()})
        check_page(app, [name, SPEC_NAME])  # the sidebar and the home page
        assert app.metric[0].value == plain_markdown(clean_name(SPEC_NAME))
    app.switch_page("pages/2_Train.py").run()
    check_page(app, [HOSTILE[-1], SPEC_NAME])


@pytest.mark.slow
def test_results_shows_every_hostile_name_as_text(hostile_runs):
    root, ids = hostile_runs
    app = open_app("pages/3_Results.py")
    app.multiselect(key="results_runs").set_value(ids).run()
    check_page(app, HOSTILE)
    table = app.dataframe[0].value
    assert list(table["name"]) == [clean_name(name) for name in HOSTILE]  # plain text cells
    legends = [t for t in rendered(app)[1] if "train" in t]
    assert f"&lt;a href=http://{HOST}/a&gt;html link&lt;/a&gt; train" in legends


@pytest.mark.parametrize("page", ["pages/4_Latent_Editor.py", "pages/5_Inspect.py"])
def test_latent_editor_and_inspect_show_hostile_names_as_text(hostile_runs, page):
    root, ids = hostile_runs
    key = "le_run" if "Latent" in page else "inspect_run"
    app = open_app(page, {RUN_KEY: ids[-1]})
    assert app.selectbox(key=key).value == ids[-1]
    if "Latent" in page:
        app.radio(key="le_source").set_value("Test image").run()
        app.selectbox(key="le_pick").set_value("by class").run()
    shown = [HOSTILE[-1]] + ([UPLOAD_NAME] if "Inspect" in page else [])
    check_page(app, shown)
    everything = "\n".join(rendered(app)[0])  # an image's caption names its class, escaped
    assert any(f"(a {plain_markdown(name)})" in everything for name in CLASS_NAMES)
    if "Inspect" in page:  # the latent map: a legend entry per class
        assert f"&lt;a href=http://{HOST}/c&gt;c&lt;/a&gt;" in rendered(app)[1]


def test_cae_list_escapes_control_characters(hostile_runs, capsys, tmp_path):
    root, ids = hostile_runs
    assert [run.name for run in list_runs(root)] == [clean_name(n) for n in reversed(HOSTILE)]
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "\x1b]0;pwned\x07\x1b[2J\u202eevil").mkdir()  # a folder name is not cleaned
    assert cli(["list", "--root", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\u202eevil" in out
    assert cli(["list", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and clean_name(HOSTILE[7]) in out


# ------------------------------------------------------------------------------- a real browser


@pytest.mark.browser
def test_a_browser_fetches_nothing_from_the_urls_in_names(page, tmp_path):
    """Home, Results and Inspect with the hostile runs: the names are on screen as text, no
    image or link element points at their URLs, and no request leaves localhost."""
    from playwright.sync_api import expect

    from tests.browser import (
        foreign_requests,
        record_requests,
        screenshot,
        serve_app,
        wait_for_app_idle,
    )
    from tests.browser import open_app as open_in_browser

    root = tmp_path / "models"
    root.mkdir()
    save_hostile_runs(root, [HOSTILE[0], HOSTILE[3], BROWSER_NAME])  # the last is the newest
    urls = record_requests(page)
    planted = f'img[src*="{HOST}"], a[href*="{HOST}"], image[href*="{HOST}"]'

    def visible_text() -> str:
        return page.locator("body").inner_text().replace(WORD_JOINER, "")

    def go_to(title: str) -> None:
        page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
        expect(page.get_by_role("heading", name=title, level=1)).to_be_visible(timeout=90_000)
        wait_for_app_idle(page, 90_000)

    with serve_app("app.py", env={"CAE_MODELS_DIR": str(root)}) as url:
        open_in_browser(page, url)
        expect(page.locator('[data-testid="stMarkdown"]').first).to_be_visible(timeout=30_000)
        assert f"![b](http://{HOST}/b.png)" in visible_text()  # the characters the name holds
        assert page.locator(planted).count() == 0
        screenshot(page, "hostile-home")

        go_to("Results")
        expect(page.locator(".legendtext").first).to_be_visible(timeout=90_000)
        legend = " ".join(page.locator(".legendtext").all_text_contents())
        assert f"<img src=http://{HOST}/i.png>" in legend  # text, not an element
        assert ":red-background[FAKE WARNING]" in visible_text()
        assert page.locator(planted).count() == 0
        screenshot(page, "hostile-results")

        go_to("Inspect")
        page.get_by_role("tab", name="Latent map").click()
        expect(page.locator(".legendtext").first).to_be_visible(timeout=60_000)
        legend = " ".join(page.locator(".legendtext").all_text_contents())
        assert f"<a href=http://{HOST}/c>c</a>" in legend
        assert f"upload:![u](http://{HOST}/upload.png)ypn.npz" in visible_text()
        assert page.locator(planted).count() == 0
        screenshot(page, "hostile-inspect")

    assert len(urls) > 10  # the recorder saw the app's own requests
    assert foreign_requests(urls) == [] and not [u for u in urls if HOST in u]
