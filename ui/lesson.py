"""The lesson of the two shipped runs (issue 27), on Home and Results: the default classic network
loses to PCA with as many code values, the ``wide`` preset with the same code wins, and why
(depth, width, code).

No number is typed here: each run's test PSNR comes from its metrics.json, its depth, widths and
code from its spec.json, and PCA's PSNR from ``cae.baselines`` on the runs' own data recipe. That
PCA is fitted in this process, not in a worker of the server's queue as the Results table's
baselines are, because the lesson is shown only for the shipped runs of the bundled sample (4,500
training images: ~3 s and ~60 MB once under load, then read from the gallery's baseline cache in
milliseconds), and a Home page waiting its owner's turn behind a training would not paint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from cae.baselines import code_size, pca_baseline
from cae.spec import ArchitectureSpec, Conv, Deconv, Depthwise, SepConv
from cae.store import (
    DEFAULT_RUN_ID,
    RunError,
    RunInfo,
    gallery_root,
    get_run_info,
    read_run_json,
)
from cae.text import plain_markdown
from ui.state import run_link

WIDE_RUN_ID = "wide-mnist-sample"  # the wide preset's shipped run, beside DEFAULT_RUN_ID
BOUNDED_DATASETS = ("mnist-sample",)  # the recipes whose PCA is small enough to fit here
CONVOLUTIONS = (Conv, Deconv, SepConv, Depthwise)


@dataclass(frozen=True)
class Side:
    """One shipped run as the lesson shows it."""

    run_id: str
    name: str
    psnr: float
    params: int
    code: tuple[int, ...]
    convolutions: int  # in the encoder, the code's own included
    widths: tuple[int, ...]  # the encoder's filters before the code
    code_activation: str


@dataclass(frozen=True)
class Lesson:
    """The classic run, the wide run and PCA with their code's number of values, on one recipe."""

    classic: Side
    wide: Side
    components: int
    pca_psnr: float


def _side(info: RunInfo) -> Side | None:
    """The run's numbers, or None when its record lacks one (a broken or foreign folder)."""
    psnr = info.metrics.get("psnr")
    if not isinstance(psnr, (int, float)) or not math.isfinite(psnr):
        return None
    try:
        spec = ArchitectureSpec.from_dict(read_run_json(info.path, "spec"))
    except (RunError, ValueError, OSError):
        return None
    convolutions = [layer for layer in spec.encoder if isinstance(layer, CONVOLUTIONS)]
    if not convolutions or info.latent_shape is None or info.params is None:
        return None
    return Side(
        run_id=info.run_id,
        name=info.name,
        psnr=float(psnr),
        params=int(info.params),
        code=tuple(int(n) for n in info.latent_shape),
        convolutions=len(convolutions),
        widths=tuple(int(getattr(layer, "filters", 0)) for layer in convolutions[:-1]),
        code_activation=convolutions[-1].activation,
    )


@st.cache_data(show_spinner="Fitting PCA for the lesson…", max_entries=4)
def cached_lesson(gallery: str, stamps: tuple[str | None, ...]) -> Lesson | None:
    """The lesson of the gallery's two shipped runs (``stamps``: their creation times, so a rebuilt
    run is read again), or None when either is missing or broken, or they differ in data or code
    size, or their data are not the bundled sample's."""
    del stamps  # only part of the cache key
    try:
        classic_info = get_run_info(DEFAULT_RUN_ID, gallery)
        wide_info = get_run_info(WIDE_RUN_ID, gallery)
    except (RunError, ValueError, OSError):
        return None
    if not (classic_info.ok and wide_info.ok) or classic_info.recipe is None:
        return None
    if (
        wide_info.recipe != classic_info.recipe
        or classic_info.recipe.dataset not in BOUNDED_DATASETS
    ):
        return None
    classic, wide = _side(classic_info), _side(wide_info)
    if classic is None or wide is None or code_size(classic_info) != code_size(wide_info):
        return None
    components = code_size(classic_info)
    pca = pca_baseline(classic_info.recipe, components, root=gallery)["psnr"]
    return Lesson(classic=classic, wide=wide, components=components, pca_psnr=float(pca))


def shipped_lesson(root: str) -> Lesson | None:
    """The lesson for a session whose runs folder is ``root`` (its gallery's shipped runs)."""
    gallery = gallery_root(root) or Path(root)
    stamps = []
    for run_id in (DEFAULT_RUN_ID, WIDE_RUN_ID):
        try:
            stamps.append(get_run_info(run_id, gallery).created)
        except (RunError, ValueError, OSError):
            return None
    return cached_lesson(str(gallery), tuple(stamps))


def _widths(side: Side) -> str:
    return "-".join(str(width) for width in side.widths)


def lesson_text(lesson: Lesson) -> str:
    """The lesson in three sentences, every number from the runs and the baseline (markdown)."""
    classic, wide = lesson.classic, lesson.wide
    behind = lesson.pca_psnr - classic.psnr
    ahead = wide.psnr - lesson.pca_psnr
    verdict = (
        f"**The tiny classic network {'loses to' if behind > 0 else 'beats'} PCA by "
        f"{abs(behind):.1f} dB; the wide one {'beats' if ahead > 0 else 'loses to'} it by "
        f"{abs(ahead):.1f} dB,** with the same {lesson.components} numbers per image "
        "(PCA is the best code a linear projection can make)."
    )
    shapes = ["x".join(map(str, side.code)) for side in (wide, classic)]
    code = f"both {shapes[0]}" if shapes[0] == shapes[1] else f"{shapes[0]} against {shapes[1]}"
    code_words = (
        f"{code}, but the classic's goes through a ReLU (which zeroes every negative value) "
        f"where the wide one's is {wide.code_activation}"
        if classic.code_activation == "relu" and wide.code_activation != "relu"
        else f"{code}, {wide.code_activation} against {classic.code_activation}"
    )
    why = (
        f"Why: *depth*, {wide.convolutions} convolutions down to the code against "
        f"{classic.convolutions}; *width*, {_widths(wide)} filters against {_widths(classic)} "
        f"({wide.params:,} parameters against {classic.params:,}); *code*, {code_words}."
    )
    return f"{verdict} {why}"


def lesson_section(root: str, *, boxed: bool = False) -> bool:
    """The lesson's three numbers, its sentences and a link opening both runs on Results (under a
    subheading, or ``boxed`` in a bordered box for a page where it is an aside); nothing when the
    gallery lacks either shipped run. Returns whether it was drawn."""
    lesson = shipped_lesson(root)
    if lesson is None:
        return False
    with st.container(border=boxed):
        if boxed:
            st.markdown("**Autoencoder or PCA? The two shipped runs**")
        else:
            st.subheader("Autoencoder or PCA?")
        columns = st.columns(3)
        columns[0].metric(
            f"PCA, {lesson.components} components",
            f"{lesson.pca_psnr:.2f} dB",
            help="Test PSNR of the best linear code of the same size, fitted on the runs' "
            "training split",
        )
        for column, side in zip(columns[1:], (lesson.classic, lesson.wide), strict=True):
            column.metric(
                plain_markdown(side.name),
                f"{side.psnr:.2f} dB",
                f"{side.psnr - lesson.pca_psnr:+.2f} dB vs PCA",
                help=f"Test PSNR of the shipped run {side.run_id}",
            )
        st.markdown(lesson_text(lesson))
        st.page_link(
            "pages/3_Results.py",
            label="Compare the two runs on Results",
            icon=":material/insights:",
            query_params=run_link([lesson.wide.run_id, lesson.classic.run_id]),
        )
    return True
