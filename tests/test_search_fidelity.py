"""Multi-fidelity searches (issue 27): the successive-halving and Hyperband pruners of a space
file, and the cosine learning-rate schedule a space (or any training) may use."""

from __future__ import annotations

import math

import pytest

from cae.search_space import SearchSpace, SpaceError
from tests.test_search import SHIPPED_SPACE
from tests.test_search import TINY as SEARCH_TINY

# the small designs of tests/test_search.py, trained for 9 epochs: room for rungs
TINY = {**SEARCH_TINY, "parameters": {**SEARCH_TINY["parameters"], "epochs": 9}}


@pytest.mark.parametrize("name", ["halving", "hyperband"])
def test_a_multi_fidelity_pruner_is_read_written_and_made(name):
    """The space's rungs (first rung's epochs, 1 in ``reduction_factor`` goes on) reach Optuna's
    pruner; Hyperband's largest budget is the space's epochs."""
    import optuna

    from cae.search import make_pruner

    space = SearchSpace.from_dict(
        {**TINY, "pruner": {"name": name, "min_resource": 2, "reduction_factor": 4}}
    )
    assert space.to_dict()["pruner"] == {"name": name, "min_resource": 2, "reduction_factor": 4}
    assert SearchSpace.from_dict(space.to_dict()) == space
    pruner = make_pruner(space)
    if name == "halving":
        assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)
        assert (pruner._min_resource, pruner._reduction_factor) == (2, 4)  # noqa: SLF001
    else:
        assert isinstance(pruner, optuna.pruners.HyperbandPruner)
        assert (pruner._min_resource, pruner._max_resource) == (2, 9)  # noqa: SLF001
        assert pruner._reduction_factor == 4  # noqa: SLF001


@pytest.mark.parametrize(
    ("pruner", "expected"),
    [
        ({"name": "halving", "min_resource": 0}, "pruner.min_resource=0"),
        ({"name": "hyperband", "reduction_factor": 1}, "pruner.reduction_factor=1"),
        ({"name": "halving", "n_warmup_steps": 2}, 'pruner="n_warmup_steps"'),
        ({"name": "median", "min_resource": 2}, 'pruner="min_resource"'),
    ],
)
def test_a_bad_pruner_setting_is_one_line_naming_it(pruner, expected):
    with pytest.raises(SpaceError) as error:
        SearchSpace.from_dict({**TINY, "pruner": pruner})
    message = str(error.value)
    assert "\n" not in message and expected in message, message


def test_successive_halving_stops_a_trial_worse_than_the_first_at_a_rung(tmp_path):
    """Through the search's own reporting (``report_epoch``): at the rung of 1 epoch, the first
    trial goes on; a second one whose validation loss is worse is stopped there, a better one
    goes on."""
    from cae.search import ask_candidate, finish_trial, open_study, report_epoch
    from cae.training import TrainConfig, TrainOutcome

    space = SearchSpace.from_dict(
        {**TINY, "pruner": {"name": "halving", "min_resource": 1, "reduction_factor": 3}}
    )
    study = open_study("rungs", space, root=tmp_path)
    config = TrainConfig(preview_count=0)
    trials = [ask_candidate(study, space, (28, 28, 1), config).number for _ in range(3)]
    assert report_epoch(study, trials[0], 1, 0.20, epochs=9) is False
    assert report_epoch(study, trials[1], 1, 0.30, epochs=9) is True
    assert report_epoch(study, trials[2], 1, 0.10, epochs=9) is False
    stopped = TrainOutcome(state="stopped", message="", epochs_completed=1, stopped=True)
    frozen = finish_trial(study, trials[1], stopped, pruned=True)
    assert frozen.user_attrs["reason"] == (
        "pruned after epoch 1: its validation loss was not among the best 1 in 3 of the trials "
        "at that rung"
    )


def test_the_shipped_space_is_a_multi_fidelity_search():
    """The shipped space trains its trials long enough for the designs that beat PCA by 5 dB
    and stops most early (successive halving), but not before 12 epochs: at a first rung of 4
    the deeper designs, which lead later, were all cut (docs/benchmarks.md)."""
    from cae.training import TrainConfig

    space = SearchSpace.load(SHIPPED_SPACE)
    assert space.pruner == "halving" and 12 <= space.pruner_min_resource <= 25
    values = space.values(dict(space.enqueue[0]))
    config = space.config(values, TrainConfig())
    assert config.epochs >= 100


def test_the_cosine_schedule_falls_from_the_rate_to_near_zero():
    from cae.training import cosine_rate

    rates = [cosine_rate(1e-3, epoch, 10) for epoch in range(10)]
    assert rates[0] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))
    assert rates[-1] == pytest.approx(0.5e-3 * (1 + math.cos(math.pi * 0.9)))


def test_a_bad_schedule_names_itself():
    from cae.training import TrainConfig

    with pytest.raises(ValueError, match=r"Received: lr_schedule='step'"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(SpaceError, match=r"parameters.lr_schedule\[1\]"):
        SearchSpace.from_dict(
            {**TINY, "parameters": {**TINY["parameters"], "lr_schedule": ["cosine", "step"]}}
        )
    assert TrainConfig.from_dict({"epochs": 2}).lr_schedule == "constant"  # older records


def test_a_cosine_training_ends_with_the_scheduled_rate(tmp_path):
    """A real 3-epoch training with the cosine schedule: the optimizer's rate at the end is the
    last epoch's rate of the schedule, and the run trains (a finite validation PSNR)."""
    from cae.datasets import load_dataset
    from cae.spec import preset
    from cae.training import TrainConfig, cosine_rate, train

    data = load_dataset("mnist-sample", limit=128, seed=0)
    config = TrainConfig(
        epochs=3, batch_size=32, learning_rate=2e-3, lr_schedule="cosine", preview_count=0
    )
    result = train(preset("classic"), data, config, tensorboard=False)
    rate = float(result.built.autoencoder.optimizer.learning_rate.numpy())
    assert rate == pytest.approx(cosine_rate(2e-3, 2, 3), rel=1e-5)
    assert math.isfinite(result.validation_metrics["psnr"])


def test_the_compact_decoder_is_the_wide_presets_and_fits_odd_sizes():
    """``decoder: compact`` makes the wide preset from its point of the shipped space; with
    three stages (28 -> 14 -> 7 -> 4, up to 32) a crop brings the output back to 28x28."""
    from cae.shapes import compute_shapes
    from cae.spec import preset

    space = SearchSpace.load(SHIPPED_SPACE)
    values = space.values(dict(space.enqueue[0]))
    wide = preset("wide")
    design = space.design(values, (28, 28, 1))
    assert (design.encoder, design.decoder) == (wide.encoder, wide.decoder)
    deeper = space.design({**values, "depth": 3, "code_channels": 3}, (28, 28, 1))
    report = compute_shapes(deeper, with_fixes=False)
    assert report.matches and tuple(report.output_shape) == (28, 28, 1)
    assert [layer.type for layer in deeper.decoder][-2:] == ["crop", "conv"]
    mirrored = space.design({**values, "decoder": "mirror"}, (28, 28, 1))
    assert mirrored.decoder != wide.decoder  # the default stays the mirror


def test_a_trials_expected_epochs_follow_its_pruner_and_the_shipped_search_fits_the_caps():
    """A search is admitted on its trials' expected epochs: with successive halving (rungs 1, 3,
    9; 1 in 3 goes on) a 9-epoch trial trains 1 + 2/3 + 6/9 epochs on average, Hyperband the mean
    of its brackets', the median pruner the whole 9. So the page's default, 10 trials of the
    shipped space (100-epoch trials, most cut at 12 epochs), fits a student's 4-hour cap even at
    the rough speed of a machine with no timed run (counted whole, it took 11.7 h: refused)."""
    import dataclasses

    from cae.datasets import dataset_status
    from cae.experiments import ExperimentCapError, check_caps
    from cae.preflight import fit_speed, training_seconds, training_work
    from cae.shapes import compute_shapes
    from cae.spec import preset

    space = dataclasses.replace(
        SearchSpace.from_dict({**TINY, "pruner": {"name": "halving", "min_resource": 1}}),
        pruner_reduction_factor=3,
    )
    assert space.expected_epochs(9) == pytest.approx(1 + 2 / 3 + 6 / 9)
    assert dataclasses.replace(space, pruner="hyperband").expected_epochs(9) == pytest.approx(
        ((1 + 2 / 3 + 6 / 9) + (3 + 6 / 3) + 9) / 3
    )
    assert dataclasses.replace(space, pruner="median").expected_epochs(9) == 9
    assert dataclasses.replace(space, pruner="none").expected_epochs(9) == 9

    shipped = SearchSpace.load(SHIPPED_SPACE)
    num_train = int(dataset_status("mnist-sample").num_train * 0.9)
    work = training_work(compute_shapes(preset("wide"), with_fixes=False))
    speed = fit_speed([])  # no run timed here yet: the rough guess
    per_trial = training_seconds(work, num_train, shipped.expected_epochs(100), speed)
    check_caps(10, 10 * per_trial, 0, 0.0)  # admitted
    with pytest.raises(ExperimentCapError, match="estimated hours"):
        check_caps(10, 10 * training_seconds(work, num_train, 100, speed), 0, 0.0)
