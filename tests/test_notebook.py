"""A run as a Jupyter notebook (issue 28, point 5): ``cae notebook`` and the Results page's
download write the same notebook; executed with nbclient in ipykernel's python3 kernel (this
venv's Python), it reproduces the page's PSNR to 1e-4 and prints it."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cae import metrics as image_metrics
from cae.__main__ import main
from cae.evaluation import reconstruct
from cae.notebook import notebook_text
from cae.recipe import TestSplit, load_recipe
from cae.store import get_run_info, load_run, run_test_split

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
RUN = "classic-mnist-sample-default"  # the shipped run: stored test images, a gallery run


def page_psnr(run: str) -> float:
    """The Results page's PSNR of a run, by the page's own two calls (cached_own_metrics)."""
    images = run_test_split(run, MODELS).pixels
    recon = reconstruct(load_run(run, MODELS).built.autoencoder, images)
    return image_metrics.summarize(images, recon)["psnr"]


@pytest.mark.slow
def test_the_notebook_runs_and_reproduces_the_pages_psnr(tmp_path, capsys):
    from nbclient import NotebookClient

    out = tmp_path / "run.ipynb"
    assert main(["notebook", RUN, "--root", str(MODELS), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    notebook = nbformat.read(out, as_version=4)
    nbformat.validate(notebook)
    kernel_cwd = tmp_path / "elsewhere"  # not the project: the notebook finds cae itself
    kernel_cwd.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PWD")}
    env["CAE_MODELS_DIR"] = str(MODELS)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",  # ipykernel's own: this interpreter, the venv's
        resources={"metadata": {"path": str(kernel_cwd)}},
    )
    client.execute(env=env, cwd=str(kernel_cwd))
    printed = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream"
    )
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in errors if o.output_type == "error"], printed
    found = re.search(r"^PSNR (\d+\.\d+) dB$", printed, re.MULTILINE)
    assert found, printed
    assert abs(float(found.group(1)) - page_psnr(RUN)) < 1e-4
    assert "500 test images of mnist-sample" in printed and "stored with the run" in printed
    pictures = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert len(pictures) == 1  # the grid


def test_a_moved_run_rebuilds_the_same_test_split_from_its_recipe():
    """What the notebook falls back to where the run folder is gone: the recorded recipe gives
    the stored test images again (seeded)."""
    recipe = get_run_info(RUN, MODELS).recipe
    rebuilt = TestSplit.of(load_recipe(recipe), recipe)
    assert np.array_equal(rebuilt.pixels, run_test_split(RUN, MODELS).pixels)


def test_the_notebook_is_the_same_every_time_and_says_where_the_run_is():
    text = notebook_text(RUN, MODELS)
    assert notebook_text(MODELS / RUN) == text  # by id or by folder
    notebook = nbformat.reads(text, as_version=4)
    sources = "\n".join(cell.source for cell in notebook.cells)
    assert repr(str((MODELS / RUN).resolve())) in sources
    assert "cae.load_model(" in sources and "run_test_split(RUN)" in sources
    assert "corrupted" not in sources  # a clean run: no denoising section
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_a_denoising_runs_notebook_scores_its_own_corrupted_inputs(tmp_path):
    folder = tmp_path / "denoiser"
    shutil.copytree(MODELS / RUN, folder)
    record = json.loads((folder / "train.json").read_text())
    record["config"].update(corruption="salt-pepper", strength=0.2)  # as a denoiser records it
    (folder / "train.json").write_text(json.dumps(record))
    sources = "\n".join(cell.source for cell in nbformat.reads(notebook_text(folder), 4).cells)
    assert "corruption_of('salt-pepper', 0.2)" in sources
    assert "corruption.apply(split.pixels, seed=EVAL_SEED)" in sources


def test_cli_notebook_refuses_what_it_cannot_write(tmp_path, capsys):
    bad = main(["notebook", RUN, "--root", str(MODELS), "--out", str(tmp_path / "x.txt")])
    assert bad == 2 and "--out must name an .ipynb file" in capsys.readouterr().err
    missing = tmp_path / "no" / "x.ipynb"
    assert main(["notebook", RUN, "--root", str(MODELS), "--out", str(missing)]) == 2
    assert "--out's folder does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    out = str(tmp_path / "x.ipynb")
    assert main(["notebook", str(tmp_path / "empty"), "--out", out]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.ipynb"))


def test_results_offers_the_notebook_of_each_run(models):
    shutil.copytree(MODELS / RUN, models / RUN)  # a gallery of the shipped run alone
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.run()
    app.switch_page("pages/3_Results.py").run()
    assert not app.exception
    buttons = [
        element
        for element in app.get("download_button")
        if element.proto.label == "Notebook (.ipynb)"
    ]
    assert buttons and "cae notebook RUN" in buttons[0].proto.help
    assert notebook_text(models / RUN) != notebook_text(MODELS / RUN)  # it names its folder
