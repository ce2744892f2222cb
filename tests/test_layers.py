"""The house's layers: every import in cae/ and ui/ (inside functions too) runs from a higher layer
to a lower one, so there are no import loops and nothing low depends on something high."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

LAYERS: dict[str, list[list[str]]] = {
    "cae": [
        ["text", "colours", "pixels"],  # names as plain text; palettes; images as held
        ["admission"],  # the memory budget and the one queue of heavy steps
        ["spec", "data", "metrics", "latent", "latent_edit", "quiet", "errors", "cluster"],
        ["array_files", "upload_files"],  # files read safely; uploads kept on disk, by quota
        ["variational", "corruption"],  # the KL term and sampling layer; input corruptions
        ["datasets", "uploads"],  # the built-in datasets; uploads
        ["shapes"],  # shape arithmetic over specs
        ["onednn"],  # oneDNN off for the designs it cannot train
        ["builder", "explain", "plots"],  # Keras models, words and figures from shapes
        [
            "inspection",
            "recipe",
            "preflight",
        ],  # looking into models; where images come from; checks
        [
            "events",
            "evaluation",
            "pipeline",
            "strategies",
        ],  # event file; scoring; tf.data; replicas
        ["progress"],  # what a training reports as it goes, and the monitor that reports it
        ["training"],  # train(...) and what it returns
        ["protocol", "request"],  # what to train; the worker's wire format
        ["store", "naming"],  # run folders: the one record and the one test split; run names
        ["baselines", "sampling", "notebook"],  # baselines; a run's samples; a run as a notebook
        ["offload"],  # heavy steps (baselines, evaluations, uploads) in a capped worker process
        ["worker"],  # a training in a process
        ["zygote", "ray_dispatch"],  # workers forked from a template; or run on a Ray cluster
        ["jobs", "sweep", "search_space"],  # the jobs the pages poll; sweeps; search spaces
        ["search"],  # Optuna studies: storage, ask and tell, pruning, the command line's loop
        ["experiments"],  # sweeps as grid studies (the caps on a student's experiment runs)
        ["studies"],  # grids and searches on the server: their trials as runs in the one queue
        ["__main__"],  # the command line
    ],
    "ui": [
        [
            "nav",
            "run_index",
            "test_images",
            "layer_editor",
            "latent_link",
            "channels",
            "unsaved",
            "admin",
        ],
        ["state"],
        ["steps"],  # heavy steps a page waits on, with their place in the queue
        ["baselines"],  # Results' baselines table
        [
            "runs",
            "experiments",
            "studies",
            "design_editor",
            "train_progress",
            "data_choice",
            "train_settings",
            "lesson",
        ],  # lesson: the shipped classic and wide runs against PCA (Home, Results)
        [
            "denoising",
            "latent_view",
            "results_scores",
        ],  # Results on corrupted inputs; the Latent Editor's run
        ["latent_sources"],  # the Latent Editor's starting points
    ],
}


def rank(package: str, module: str) -> int:
    """The layer number of ``package.module`` (AssertionError when it has no layer yet)."""
    for number, members in enumerate(LAYERS[package]):
        if module in members:
            return number
    raise AssertionError(f"{package}/{module}.py has no layer in tests/test_layers.py: add it")


def imports(path: Path) -> set[str]:
    """Every ``cae``/``ui`` module a file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module in ("cae", "ui"):
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif node.module.split(".")[0] in ("cae", "ui"):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in ("cae", "ui"))
    return found


MODULES = [path for package in LAYERS for path in sorted((REPO / package).glob("*.py"))]


@pytest.mark.parametrize("path", MODULES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_imports_run_downwards(path: Path):
    package, module = path.parent.name, path.stem
    if module == "__init__":
        return
    mine = rank(package, module)
    for target in sorted(imports(path)):
        other_package, _, other = target.partition(".")
        if package == "cae":
            assert other_package == "cae", (
                f"cae/{module}.py imports {target}: cae/ never imports ui/"
            )
        if other_package != package:
            continue  # ui/ builds on cae/
        assert rank(package, other) < mine, (
            f"{package}/{module}.py (layer {mine}) imports {target} "
            f"(layer {rank(package, other)}): imports must run to a lower layer"
        )


def test_cae_never_imports_streamlit():
    for path in (REPO / "cae").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not {name for name in names if name.split(".")[0] == "streamlit"}, path.name
