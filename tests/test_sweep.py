"""Sweeps: expansion over dotted paths and short names, validation before anything trains, the
estimate, the grid study a sweep trains as (its points, their requests), the comparison rows and
``python -m cae sweep`` end to end (2 runs, 1 epoch: each marked 'did not learn', the winner
sentence)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cae.metrics import METRICS
from cae.plots import pareto_front, sweep_scatter
from cae.preflight import estimate_sweep
from cae.recipe import DataRecipe
from cae.shapes import work_per_image
from cae.spec import ArchitectureSpec, preset
from cae.sweep import (
    MAX_AXES,
    MAX_RUNS,
    Axis,
    SweepError,
    chart_baselines,
    did_not_learn,
    expand,
    mark_learning,
    parse_value,
    parse_values,
    parse_vary,
    rate_samples,
    result_columns,
    rows_csv,
    varied_fields,
    winner_sentence,
)
from cae.training import TrainConfig
from tests.test_cli_train import cli  # this process: TensorFlow is imported once

REPO = Path(__file__).resolve().parents[1]


def test_values_parse_as_typed():
    assert parse_value("16") == 16
    assert parse_value("1e-3") == pytest.approx(0.001)
    assert parse_value("3x5") == (3, 5)
    assert parse_value("relu") == "relu"
    assert parse_values("8, 16,32") == (8, 16, 32)
    assert parse_vary("kernel=3,5") == Axis("kernel", (3, 5))
    for bad in ("8,,16", "", "8,8"):
        with pytest.raises(SweepError):
            parse_values(bad)
    with pytest.raises(SweepError, match="FIELD=v1"):
        parse_vary("kernel")


def test_cartesian_product_applies_paths_and_short_names():
    spec = preset("classic")
    axes = [parse_vary("encoder.0.filters=4,8"), parse_vary("kernel=3,5"), parse_vary("lr=0.01")]
    variants = expand(spec, TrainConfig(epochs=1), axes)
    assert len(variants) == 4 and all(v.ok for v in variants)
    assert [v.label for v in variants] == [
        "encoder.0.filters=4, kernel=3, lr=0.01",
        "encoder.0.filters=4, kernel=5, lr=0.01",
        "encoder.0.filters=8, kernel=3, lr=0.01",
        "encoder.0.filters=8, kernel=5, lr=0.01",
    ]
    last = variants[-1]
    assert last.spec.encoder[0].filters == 8
    convs = [
        layer for layer in (*last.spec.encoder, *last.spec.decoder) if hasattr(layer, "kernel")
    ]
    assert convs and all(layer.kernel == (5, 5) for layer in convs)
    assert last.config.learning_rate == pytest.approx(0.01)
    assert spec == preset("classic")  # the base design is never changed
    # the parameter count is the shape check's: Conv(8, 5x5) on 1 channel has 8 * 25 + 8
    assert last.params > variants[0].params


def test_code_channels_epochs_noise_and_config_paths():
    axes = [parse_vary("code=2,4"), parse_vary("epochs=2"), parse_vary("noise=0.2")]
    variants = expand(preset("classic"), TrainConfig(), axes)
    assert [v.latent_shape for v in variants] == [(7, 7, 2), (7, 7, 4)]
    assert variants[0].compression == pytest.approx(784 / 98)
    assert variants[0].config.epochs == 2 and variants[0].config.strength == pytest.approx(0.2)
    assert variants[0].config.corruption == "gaussian"
    batch = expand(preset("classic"), TrainConfig(), [parse_vary("config.batch_size=16,32")])
    assert [v.config.batch_size for v in batch] == [16, 32]


def test_beta_varies_the_objective_between_plain_and_variational():
    from cae.spec import Variational

    variants = expand(preset("classic"), TrainConfig(), [parse_vary("beta=0,0.5,2")])
    assert all(v.ok for v in variants)
    assert [v.spec.variational for v in variants] == [
        None,
        Variational(0.5, 0),
        Variational(2.0, 0),
    ]
    # the two code maps (mean, log-variance) of 73 parameters replace the code's one of 73
    assert [v.params for v in variants] == [2690, 2763, 2763]
    # a variational base design: 0 makes it plain, other values keep its KL warm-up
    base = dataclasses.replace(preset("classic"), variational=Variational(1.0, 3))
    again = expand(base, TrainConfig(), [parse_vary("beta=0,4")])
    assert [v.spec.variational for v in again] == [None, Variational(4.0, 3)]
    assert base.variational == Variational(1.0, 3)  # the base design is never changed
    bad = expand(preset("classic"), TrainConfig(), [parse_vary("beta=-1,high,2000")])
    problems = [v.problem for v in bad]
    assert "0 for a plain autoencoder" in problems[0] and "Received: beta=-1" in problems[0]
    assert "Received: beta='high'" in problems[1]
    assert "'beta' must be a number above 0 and at most 1000" in problems[2]


def test_warmup_varies_the_kl_warm_up_of_the_design_beta_makes_in_either_order():
    from cae.spec import Variational

    axes = [parse_vary("warmup=0,5"), parse_vary("beta=0,2")]
    variants = expand(preset("classic"), TrainConfig(), axes)
    specs = {v.label: v.spec.variational for v in variants if v.ok}
    assert specs == {
        "warmup=0, beta=0": None,
        "warmup=0, beta=2": Variational(2.0, 0),
        "warmup=5, beta=2": Variational(2.0, 5),  # beta is applied first, then the warm-up
    }
    plain = next(v for v in variants if v.label == "warmup=5, beta=0")
    assert "a KL warm-up needs a variational design; vary beta too" in plain.problem
    assert "Received: variational=None, warmup=5" in plain.problem
    # alone: a variational base design keeps its beta; a bad value says what it got
    base = dataclasses.replace(preset("classic"), variational=Variational(0.5, 3))
    alone = expand(base, TrainConfig(), [parse_vary("warmup=0,10,-1,2.5")])
    assert [v.spec.variational for v in alone[:2]] == [Variational(0.5, 0), Variational(0.5, 10)]
    assert "Received: warmup=-1" in alone[2].problem and "Received: warmup=2.5" in alone[3].problem
    assert "warmup" in dict(varied_fields(preset("classic")))


def test_corruption_and_strength_vary_the_denoiser_in_either_order():
    axes = [parse_vary("corruption=none,salt-pepper,erase"), parse_vary("strength=0,0.4")]
    variants = expand(preset("classic"), TrainConfig(), axes)
    configs = {v.label: (v.config.corruption, v.config.strength) for v in variants if v.ok}
    assert configs == {
        "corruption=none, strength=0": (None, 0.0),
        "corruption=salt-pepper, strength=0": (None, 0.0),  # strength 0: clean inputs
        "corruption=salt-pepper, strength=0.4": ("salt-pepper", 0.4),
        "corruption=erase, strength=0": (None, 0.0),
        "corruption=erase, strength=0.4": ("erase", 0.4),
    }
    none = next(v for v in variants if v.label == "corruption=none, strength=0.4")
    assert "a strength needs a corruption kind" in none.problem
    reversed_ = expand(preset("classic"), TrainConfig(), axes[::-1])  # strength applied first

    def by_values(found):
        return {frozenset(v.values): v.config for v in found if v.ok}

    assert by_values(reversed_) == by_values(variants)
    # alone, a kind keeps the config's strength, or takes its own default without one
    kinds = [parse_vary("corruption=gaussian,erase,blur")]
    plain = expand(preset("classic"), TrainConfig(), kinds)
    assert [(v.config.corruption, v.config.strength) for v in plain[:2]] == [
        ("gaussian", 0.3),
        ("erase", 0.25),
    ]
    assert "one of gaussian, salt-pepper, erase or none" in plain[2].problem
    noisy = expand(preset("classic"), TrainConfig(corruption="gaussian", strength=0.5), kinds)
    assert [v.config.strength for v in noisy[:2]] == [0.5, 0.5]
    # a strength alone needs a corruption in the base settings
    alone = expand(preset("classic"), TrainConfig(), [parse_vary("strength=0.2")])
    assert "vary corruption too" in alone[0].problem
    base = TrainConfig(corruption="erase", strength=0.1)
    kept = expand(preset("classic"), base, [parse_vary("strength=0.2,0")])
    assert [(v.config.corruption, v.config.strength) for v in kept] == [
        ("erase", 0.2),
        (None, 0.0),
    ]


def test_invalid_combinations_carry_their_reason_before_anything_trains():
    axes = [parse_vary("code=0,1"), parse_vary("lr=0.001,20")]
    variants = expand(preset("classic"), TrainConfig(), axes)
    problems = {v.label: v.problem for v in variants}
    assert problems["code=1, lr=0.001"] is None
    assert "'filters' must be at least 1" in problems["code=0, lr=0.001"]
    assert "learning_rate must be a number" in problems["code=1, lr=20"]
    # a kernel that no longer fits a 'valid' layer's input fails the shape check
    valid_spec = ArchitectureSpec.from_dict(
        {
            "name": "valid",
            "input_shape": [8, 8, 1],
            "encoder": [{"type": "conv", "filters": 2, "kernel": 3, "padding": "valid"}],
            "decoder": [{"type": "deconv", "filters": 1, "kernel": 3, "padding": "valid"}],
        }
    )
    variants = expand(valid_spec, TrainConfig(), [parse_vary("encoder.0.kernel=3,9")])
    assert variants[0].ok and not variants[1].ok
    assert "encoder[0]" in variants[1].problem
    # the images' shape is checked too
    wrong = expand(
        preset("classic"), TrainConfig(), [parse_vary("lr=0.01")], image_shape=(32, 32, 3)
    )
    assert "The images are 32x32x3 but the design expects 28x28x1" in wrong[0].problem


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ([], "vary at least one"),
        ([Axis("encoder.0.filters", (1,)), Axis("kernel", (3,)), Axis("lr", (0.1,)), Axis("epochs", (1,))], f"at most {MAX_AXES}"),
        ([Axis("kernel", (3,)), Axis("kernel", (5,))], "varied twice"),
        ([Axis("encoder.1.filters", (3,))], "a pool layer has no 'filters'"),
        ([Axis("encoder.7.filters", (3,))], "the encoder has 5 layers"),
        ([Axis("decoder.0.colour", (3,))], "has no 'colour'"),
        ([Axis("config.speed", (3,))], "not a training setting"),
        ([Axis("width", (3,))], "unknown field"),
        ([Axis("noise", (0.1,)), Axis("strength", (0.2,))], "vary either noise, or corruption"),
        ([Axis("kernel", tuple(range(1, 10))), Axis("lr", tuple(0.1 / n for n in range(1, 10)))], f"at most {MAX_RUNS} runs"),
    ],
)  # fmt: skip
def test_bad_sweeps_are_refused_in_one_line(axes, message):
    with pytest.raises(SweepError, match=message) as caught:
        expand(preset("classic"), TrainConfig(), axes)
    assert "Received:" in str(caught.value)


def test_fields_offered_for_a_design():
    fields = dict(varied_fields(preset("classic")))
    assert {
        "kernel",
        "code",
        "lr",
        "epochs",
        "noise",
        "beta",
        "corruption",
        "strength",
        "encoder.0.filters",
        "decoder.4.kernel",
    } <= set(fields)
    assert "encoder.1.filters" not in fields  # a pooling layer has none


def test_estimate_from_measured_speed_and_its_basis():
    from cae.preflight import START_SECONDS, fit_speed
    from cae.shapes import compute_shapes

    variants = expand(preset("classic"), TrainConfig(epochs=2), [parse_vary("code=1,2,0")])
    work = variants[0].work
    assert work == work_per_image(compute_shapes(variants[0].spec))
    # earlier runs that took 3 s plus 1 s per G multiply-adds: the fit finds both
    samples = [(w, 3.0 + w / 1e9) for w in (1e9, 4e9, 9e9, 2e10)]
    speed = fit_speed(samples)
    assert speed.overhead == pytest.approx(3.0) and speed.rate == pytest.approx(1e9)
    guess = estimate_sweep([v.workload for v in variants], 1000, samples)
    expected = sum(START_SECONDS + 3.0 + v.work * 1000 * 2 / 1e9 for v in variants if v.ok)
    assert guess.seconds == pytest.approx(expected)
    assert (
        "4 earlier run(s) on this machine: 3.0 s per run plus 1.00 G multiply-adds/s" in guess.basis
    )
    assert "no run timed" in estimate_sweep([v.workload for v in variants], 1000, []).basis
    # short runs only: their time is mostly the fixed part
    assert fit_speed([(1e6, 7.0), (1e6, 8.0)]).overhead == pytest.approx(7.5)


def test_the_speed_is_measured_on_runs_timed_here_not_on_the_shipped_ones(tmp_path):
    """The estimate's speed comes from runs this machine (or the cluster) trained: the shipped
    run was timed on another machine under another load and records no host, so it is left out;
    a copy that says it trained here counts, one that names another host does not."""
    import shutil

    from cae.store import list_runs, local_backend

    shipped = Path(__file__).resolve().parents[1] / "models" / "classic-mnist-sample-default"
    for name, where in (("shipped", {}), ("here", local_backend()), ("other", None)):
        folder = tmp_path / name
        shutil.copytree(shipped, folder)
        train = json.loads((folder / "train.json").read_text())
        if where is None:
            where = {**local_backend(), "host": "another-machine"}
        (folder / "train.json").write_text(json.dumps({**train, **where}))
    runs = {run.run_id: run for run in list_runs(tmp_path)}
    assert len(runs) == 3 and all(run.ok for run in runs.values()), runs
    assert len(rate_samples(list(runs.values()))) == 1
    assert len(rate_samples([runs["here"]])) == 1
    assert rate_samples([runs["shipped"], runs["other"]]) == []


def test_a_sweep_is_a_grid_study_whose_trials_are_its_points(tmp_path):
    """The points are enqueued in the plan's order under the fields' own names (a pair as typed,
    3x5), each asked trial is the combination the plan showed, one that cannot train is told
    skipped with its reason, and its request is tagged with the study."""
    from cae.experiments import (
        ask_grid_candidate,
        free_study_name,
        grid_request,
        grid_rows,
        open_grid_study,
    )
    from cae.search import SearchError, study_conflict

    axes = [parse_vary("code=0,2"), parse_vary("kernel=3,3x5")]
    recipe, config = DataRecipe(limit=50), TrainConfig(epochs=1)
    study = open_grid_study(
        "try", axes, spec=preset("classic"), config=config, recipe=recipe, root=tmp_path
    )
    plan = expand(preset("classic"), config, axes)
    first = ask_grid_candidate(study, recipe.image_shape(), num_train=45)
    assert first.number == 2 and first.params == {"code": 2, "kernel": 3}
    assert [number for number, _ in first.skipped] == [0, 1]  # code=0 cannot train
    assert first.spec == plan[2].spec and first.config == plan[2].config
    request = grid_request("try", first, recipe, axes)
    assert request.name == "try · code=2, kernel=3"
    assert request.experiment == {
        "id": "study:try", "name": "try", "kind": "grid", "study": "try", "trial": 2,
        "index": 2, "values": {"code": 2, "kernel": 3},
    }  # fmt: skip
    again = type(request).from_json(request.to_json())
    assert again.experiment == request.experiment and again.spec == request.spec
    pair = ask_grid_candidate(study, recipe.image_shape(), num_train=45)
    assert pair.params == {"code": 2, "kernel": "3x5"} and pair.spec == plan[3].spec
    rows = grid_rows(study)
    assert [(row["index"], row["state"], row["label"]) for row in rows] == [
        (0, "skipped", "code=0, kernel=3"),
        (1, "skipped", "code=0, kernel=3x5"),
        (2, "running", "code=2, kernel=3"),
        (3, "running", "code=2, kernel=3x5"),
    ]
    assert "'filters' must be at least 1" in rows[0]["reason"]
    # found again by name; another grid under its name is refused before it starts
    assert len(open_grid_study("try", root=tmp_path).trials) == 4
    other = {"kind": "grid", "grid": {"axes": [{"field": "code", "values": [1]}]}}
    assert "started with another grid" in study_conflict("try", other, root=tmp_path)
    with pytest.raises(SearchError, match="another kind"):
        from cae.search import open_study
        from cae.search_space import SearchSpace
        from tests.test_search import TINY

        open_study("try", SearchSpace.from_dict(TINY), root=tmp_path)
    assert free_study_name("try", root=tmp_path) == "try (2)"
    # cae sweep --study try --storage ... with another grid: refused in one line, before training
    from cae.experiments import run_grid
    from cae.search import default_storage

    with pytest.raises(SearchError, match=r"another grid; .*Received: grid=") as refused:
        run_grid(
            preset("classic"), config, recipe, [parse_vary("code=1")], tmp_path / "out",
            study_name="try", storage=default_storage(tmp_path),
        )  # fmt: skip
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "out" / "sweep.json").exists()


def test_pareto_front_and_the_chart():
    points = [(100, 10.0), (200, 12.0), (150, 9.0), (300, 11.0), (400, 14.0)]
    assert pareto_front(points) == [0, 1, 4]
    rows = [
        {"params": x, "code_size": 49, "psnr": y, "design": f"<b>d{i}</b>", "run_id": f"r{i}"}
        for i, (x, y) in enumerate(points)
    ]
    fig = sweep_scatter(
        rows,
        "code_size",
        [{"label": "mean image", "psnr": 8.0}, {"label": "PCA", "points": [(49, 13.0)]}],
    )
    names = [trace.name for trace in fig.data]
    assert names == ["Pareto front", "runs", "PCA"]
    runs = fig.data[1]
    assert list(runs.customdata) == ["r0", "r1", "r2", "r3", "r4"]
    assert "&lt;b&gt;d0&lt;/b&gt;" in runs.text[0] and "<b>d0" not in runs.text[0]  # plain text
    assert fig.layout.shapes[0].y0 == 8.0  # the mean-image line


def test_the_chart_zooms_to_the_runs_with_the_baselines_as_lines():
    """PCA at its k x D + D stored numbers sat at 39k-78k on the parameters axis, the runs
    (1.7k-4.1k parameters) crowded into a corner: now PCA is a line at its PSNR, and the axis
    spans the runs."""
    rows = [
        {"params": 1_700, "code_size": 49, "psnr": 18.0, "run_id": "a", "did_not_learn": False},
        {"params": 4_100, "code_size": 98, "psnr": 21.0, "run_id": "b", "did_not_learn": False},
        {"params": 1_600, "code_size": 49, "psnr": 8.0, "run_id": "c", "did_not_learn": True},
    ]
    lines = chart_baselines({49: 19.8, 98: 23.4}, 11.75, "params")
    fig = sweep_scatter(rows, "params", lines)
    low, high = fig.layout.xaxis.range
    assert 1_300 < low < 1_600 and 4_100 < high < 4_400  # the runs, and a margin
    assert fig.layout.xaxis.type == "linear"
    assert [(shape.y0, shape.y1) for shape in fig.layout.shapes] == [
        (19.8, 19.8),
        (23.4, 23.4),
        (11.75, 11.75),
    ]
    notes = [annotation.text for annotation in fig.layout.annotations]
    assert notes == ["PCA, 49 values: 19.80 dB", "PCA, 98 values: 23.40 dB", "mean image: 11.75 dB"]
    bottom, top = fig.layout.yaxis.range
    assert bottom < 8.0 and top > 23.4  # every run and every line in view
    # the run that did not learn: a grey x, said on hover and beside it
    runs = fig.data[1]
    assert list(runs.marker.symbol) == ["circle", "circle", "x"]
    assert "did not learn" in runs.text[2] and "did not learn" not in runs.text[0]
    words = fig.data[2]
    assert words.name.startswith("did not learn") and list(words.x) == [1_600]
    assert words.hoverinfo == "skip"  # a click on the point still reaches the run
    # the front joins the runs that learned: the smallest, which did not, is no trade-off
    assert list(fig.data[0].x) == [1_700, 4_100]
    assert list(runs.marker.color)[2] != list(runs.marker.color)[0]
    # a single run: a range around it, not a point on an edge
    one = sweep_scatter(rows[:1], "params", lines)
    low, high = one.layout.xaxis.range
    assert low < 1_700 < high


def test_chart_baselines_lines_a_band_or_points_at_the_code_size():
    assert chart_baselines({49: 19.8}, 11.75, "params") == [
        {"label": "PCA, 49 values", "psnr": 19.8, "kind": "pca"},
        {"label": "mean image", "psnr": 11.75, "kind": "mean"},
    ]
    assert chart_baselines({98: 23.4, 49: 19.8}, None, "code_size") == [
        {"label": "PCA, as many components as the code", "points": [(49, 19.8), (98, 23.4)]}
    ]
    many = {k: 15.0 + k / 49 for k in (49, 98, 147, 196, 245)}
    (band,) = chart_baselines(many, float("nan"), "params")
    assert band["label"] == "PCA, 49 to 245 values" and band["band"] == (16.0, 20.0)
    fig = sweep_scatter([{"params": 10, "psnr": 17.0}], "params", [band])
    assert (fig.layout.shapes[0].y0, fig.layout.shapes[0].y1) == (16.0, 20.0)
    assert chart_baselines({}, None) == []


def test_a_run_that_does_not_beat_the_mean_image_did_not_learn():
    assert did_not_learn(8.8, 11.75) and did_not_learn(11.75, 11.75)
    assert not did_not_learn(11.76, 11.75)
    assert not did_not_learn(None, 11.75) and not did_not_learn(8.0, None)  # nothing to say
    assert not did_not_learn(float("nan"), 11.75)
    rows = [{"psnr": 6.7, "design": "a"}, {"psnr": 17.7, "design": "b"}]
    marked = mark_learning(rows, 11.75)
    assert [row["did_not_learn"] for row in marked] == [True, False]
    assert "did_not_learn" not in rows[0]  # copies


def row(design, psnr, code_size=49, params=2_690):
    return {"design": design, "psnr": psnr, "code_size": code_size, "params": params}


def test_the_winner_sentence_names_the_best_run_and_why():
    pca = {49: 19.8, 98: 23.4}
    rows = [row("encoder.0.filters=8", 18.2), row("encoder.0.filters=32", 21.9, params=9_000)]
    assert winner_sentence(rows, pca, 11.75) == (
        "encoder.0.filters=32: best PSNR, 21.90 dB, +2.1 dB over PCA with the same 49 numbers."
    )
    # honest when PCA wins, with the PCA of the best run's own code size
    rows = [row("code=1", 17.7), row("code=2", 20.1, code_size=98)]
    assert winner_sentence(rows, pca, 11.75) == (
        "Best: code=2, 20.10 dB, 3.3 dB below PCA with the same 98 numbers."
    )
    assert winner_sentence([row("x", 19.82)], pca, 11.75) == (
        "x: best PSNR, 19.82 dB, level with PCA with the same 49 numbers."
    )
    assert winner_sentence([row("x", 19.0)], {}, None) == (
        "x: best PSNR, 19.00 dB (no PCA score to compare it with)."
    )
    # no run learned: said so, not crowned
    assert winner_sentence([row("lr=0.1", 8.8), row("lr=1", 6.7)], pca, 11.75) == (
        "No run learned: the best, lr=0.1, scores 8.80 dB, not above the mean image's 11.75 dB; "
        "train for more epochs or on more images."
    )
    # a tie goes to the smaller design; nothing scored: no sentence
    tie = [row("big", 20.0, params=5_000), row("small", 20.0, params=1_000)]
    assert winner_sentence(tie, pca).startswith("small: ")
    assert winner_sentence([{"design": "x", "psnr": None}], pca) is None
    assert winner_sentence([], pca) is None


def test_rows_csv_has_the_metric_columns():
    columns = result_columns()
    assert [m.key for m in METRICS] == [c for c in columns if c in {m.key for m in METRICS}]
    text = rows_csv([{"index": 0, "design": "code=2, lr=0.1", "params": 10, "psnr": 12.5}])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert (
        rows[0]["design"] == "code=2, lr=0.1"
        and rows[0]["psnr"] == "12.5"
        and rows[0]["ssim"] == ""
    )
    assert "did_not_learn" not in rows[0]  # unmarked rows (no mean image scored): no such column
    marked = mark_learning([{"design": "a", "psnr": 8.8}, {"design": "b", "psnr": 17.7}], 11.75)
    rows = list(csv.DictReader(io.StringIO(rows_csv(marked))))
    assert [row["did_not_learn"] for row in rows] == ["True", "False"]


# ``cae sweep`` of the classic design on 120 bundled images, 1 epoch
SWEEP = ["sweep", "--preset", "classic", "--dataset", "mnist-sample", "--limit", "120"]
SWEEP += ["--epochs", "1"]


def sweep_cli(out: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m cae`` + SWEEP + ``args`` in a process of its own, into ``out``."""
    command = [sys.executable, "-m", "cae", *SWEEP, *args, "--out-dir", str(out)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.mark.slow
def test_cli_sweep_two_runs_one_epoch(tmp_path, capsys):
    out = tmp_path / "sweep"
    result = sweep_cli(out, "--vary", "encoder.0.filters=4,8", "--vary", "code=1,0")
    assert result.returncode == 0, result.stderr
    assert (
        "skipped #1 encoder.0.filters=4, code=0: encoder[4]: 'filters' must be at least 1"
        in result.stdout
    )
    record = json.loads((out / "sweep.json").read_text())
    assert [row["design"] for row in record["runs"]] == [
        "encoder.0.filters=4, code=1",
        "encoder.0.filters=8, code=1",
    ]
    assert len(record["invalid"]) == 2
    table = list(csv.DictReader(io.StringIO((out / "sweep.csv").read_text())))
    assert len(table) == 2
    for row in table:
        assert int(row["params"]) > 0 and float(row["psnr"]) > 0
        train = json.loads((out / row["run_id"] / "train.json").read_text())
        assert train["experiment"]["id"] == record["id"]
        assert train["config"]["epochs"] == 1
    assert int(table[1]["params"]) > int(table[0]["params"])
    # the printed table names both runs with their parameters; 120 images for 1 epoch learn
    # nothing: each run is marked, and the winner sentence says so
    for row in table:
        assert row["run_id"] in result.stdout and f"{int(row['params']):,}" in result.stdout
        assert row["did_not_learn"] == "True"
    lines = result.stdout.splitlines()
    assert sum(line.rstrip().endswith("did not learn") for line in lines) == 2
    assert any(line.startswith("No run learned: the best, encoder.0.filters=") for line in lines)
    assert record["winner"].startswith("No run learned") and record["mean_image_psnr"] > 0
    assert record["study"] == "classic sweep" and (out / ".studies" / "studies.db").is_file()
    # a second sweep into the same folder is refused in one line (the CLI's own code, in this
    # process: a second TensorFlow import would only cost time)
    status, _, errors = cli(capsys, *SWEEP, "--vary", "lr=0.01", "--out-dir", str(out))
    (line,) = errors.strip().splitlines()
    assert status == 2 and "already holds a sweep" in line


@pytest.mark.slow
def test_cli_sweep_compares_plain_and_variational_denoisers(tmp_path, capsys):
    """The same command as above, by the CLI's own main in this process (the subprocess there
    covers the process; here a second TensorFlow import, and a template's, would only cost time)."""
    out = tmp_path / "objective"
    args = ["--corruption", "erase", "--vary", "beta=0,0.5", "--out-dir", str(out)]
    status, _, errors = cli(capsys, *SWEEP, *args)
    assert status == 0, errors
    record = json.loads((out / "sweep.json").read_text())
    assert [row["design"] for row in record["runs"]] == ["beta=0", "beta=0.5"]
    assert [row["params"] for row in record["runs"]] == [2690, 2763]
    plain, variational = (out / row["run_id"] for row in record["runs"])
    assert "variational" not in json.loads((plain / "spec.json").read_text())
    assert json.loads((variational / "spec.json").read_text())["variational"] == {
        "beta": 0.5,
        "warmup_epochs": 0,
    }
    assert "kl_loss" in json.loads((variational / "history.json").read_text())
    for folder in (plain, variational):
        config = json.loads((folder / "train.json").read_text())["config"]
        assert (config["corruption"], config["strength"]) == ("erase", 0.25)


def test_a_sweep_varies_separable_and_depthwise_layers_like_any_convolution():
    """Every convolution kind offers its own fields (filters only where it has them, the depth
    multiplier where it has one), and the short 'kernel' sets every convolution's kernel."""
    from cae.spec import Depthwise, SepConv

    spec = preset("classic").with_layers(
        encoder=(SepConv(16), *preset("classic").encoder[1:4], Depthwise(depth_multiplier=1))
    )
    fields = dict(varied_fields(spec))
    assert {"encoder.0.filters", "encoder.0.depth_multiplier", "encoder.4.kernel"} <= set(fields)
    assert "encoder.4.filters" not in fields and "encoder.4.depth_multiplier" in fields
    variants = expand(
        spec, TrainConfig(), [Axis("kernel", (5,)), Axis("encoder.4.depth_multiplier", (1, 2))]
    )
    assert [variant.ok for variant in variants] == [True, True]
    assert variants[1].spec.encoder[0].kernel == (5, 5) and variants[1].spec.encoder[4].kernel == (
        5,
        5,
    )
    assert variants[1].spec.encoder[4].depth_multiplier == 2
    assert variants[0].work < variants[1].work  # twice the code's channels: more work


def test_cli_sweep_refuses_a_bad_field_or_storage_in_one_line_before_tensorflow(tmp_path, capsys):
    """Checked before TensorFlow is imported (the refusal came after its 25 s import on a loaded
    machine); the CLI's own main, in this process."""
    for args, words in (
        (["--vary", "width=1,2"], "unknown field: use a dotted path"),
        (["--vary", "code=1", "--storage", str(tmp_path / "no" / "x.db")], "folder does not exist"),
    ):
        status, _, errors = cli(capsys, *SWEEP, *args, "--out-dir", str(tmp_path / "out"))
        (line,) = errors.strip().splitlines()
        assert status == 2 and words in line and "Received:" in line
        assert not (tmp_path / "out").exists()
