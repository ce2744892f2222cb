"""Sweeps: one design and training config, up to three settings varied over lists of values.

A sweep is a list of :class:`Axis` (a field and its values); :func:`expand` takes their cartesian
product and applies each combination to the base spec and config, giving one :class:`Variant`
per combination, validated before anything trains (spec and config validation, then
``cae.preflight``: the shape check, the images' shape, the memory estimate): an invalid
combination carries its reason in ``problem``.

Fields are dotted paths into the spec or the config (``encoder.0.filters``, ``decoder.2.kernel``,
``config.batch_size``) or short names (:data:`SHORT_FIELDS`): ``kernel`` (every convolution's
kernel), ``code`` (the channels of the code: the filters of the encoder's last convolution),
``lr``, ``epochs``, ``noise``, ``batch``, and the objective: ``beta`` (0: a plain autoencoder,
above 0: a variational one with that KL weight), ``warmup`` (a variational design's KL warm-up,
in epochs), ``corruption`` (a denoiser's input corruption, or ``none``) and ``strength`` (0: clean
inputs). Values are integers, numbers, ``3x5`` for a pair, or
words (``relu``).

The Experiments page and ``python -m cae sweep`` both expand here (to show the plan and check it
before anything trains) and make the comparison rows with :func:`result_row` (the sweep.csv
columns, metric columns from ``cae.metrics.METRICS``); a sweep trains as a grid study of Optuna
(``cae.experiments``), each trial's combination made by :func:`make_variant`. No streamlit, and
no TensorFlow at import.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from cae.metrics import METRICS
from cae.preflight import preflight, training_work
from cae.spec import KINDS, LAYER_BY_NAME, ArchitectureSpec, describe_layer, kind_of
from cae.training import TrainConfig

if TYPE_CHECKING:  # pragma: no cover
    from cae.store import RunInfo

MAX_AXES = 3
MAX_VALUES = 12  # values of one axis
MAX_RUNS = 64  # combinations of one sweep
RATE_RUNS = 30  # the newest runs whose speed the estimate is measured from

SHORT_FIELDS: dict[str, str] = {
    "kernel": "the kernel size of every convolution (3, or 3x5)",
    "code": "the code's channels: the filters of the encoder's last convolution",
    "lr": "the learning rate",
    "epochs": "the number of epochs",
    "noise": "Gaussian input noise, its std (denoising; 0: none)",
    "batch": "the batch size",
    "beta": "the objective: 0 a plain autoencoder, above 0 a variational one with that KL weight",
    "warmup": "a variational design's KL warm-up, in epochs (0: the full weight from the start)",
    "corruption": "a denoiser's input corruption (gaussian, salt-pepper, erase) or none",
    "strength": "the input corruption's strength (0: clean inputs)",
}
"""The short field names and what each varies (the README lists them too)."""

_CONFIG_SHORT = {"lr": "learning_rate", "epochs": "epochs", "batch": "batch_size"}
_CORRUPTION_FIELDS = ("noise", "corruption", "strength")  # noise is corruption=gaussian + strength
_OBJECTIVE_FIELDS = ("beta", "warmup", "corruption", "strength")
# Applied first, in this order, whatever the axes' order: a strength sets the corruption beside it,
# a warm-up the variational design a beta beside it makes (see apply_values).
_APPLIED_FIRST = ("corruption", "beta")
_CONFIG_FIELDS = tuple(item.name for item in fields(TrainConfig))
_PATH_RE = re.compile(r"(encoder|decoder)\.(\d{1,3})\.([a-z_]+)")
_PAIR_RE = re.compile(r"(\d+)\s*[x×]\s*(\d+)")


class SweepError(ValueError):
    """A sweep that cannot be expanded (unknown field, bad value list); the message says which."""


@dataclass(frozen=True)
class Axis:
    """One varied setting: a field (dotted path or short name) and its values, in order."""

    field: str
    values: tuple[Any, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return {"field": self.field, "values": [_plain(value) for value in self.values]}

    @classmethod
    def from_dict(cls, data: Any) -> Axis:
        """An axis from :meth:`to_dict` output."""
        if not isinstance(data, dict) or not isinstance(data.get("values"), list):
            raise SweepError(f"an axis must be {{field, values}}. Received: {data!r}")
        return cls(str(data.get("field")), tuple(_unplain(v) for v in data["values"]))


@dataclass(frozen=True)
class Variant:
    """One combination of values: its spec and config, or why it cannot train."""

    index: int
    values: tuple[tuple[str, Any], ...]  # (field, value) per axis, in axis order
    spec: ArchitectureSpec | None
    config: TrainConfig | None
    problem: str | None
    params: int | None = None
    latent_shape: tuple[int, ...] | None = None
    compression: float | None = None
    work: float | None = None  # multiply-adds (and other values) per training image

    @property
    def ok(self) -> bool:
        """True when the combination can train."""
        return self.problem is None

    @property
    def workload(self) -> tuple[float, int] | None:
        """(work per image, epochs) of a run that can train, for the time estimate
        (``cae.preflight.estimate_sweep``); None for one that cannot."""
        if not self.ok or self.config is None:
            return None
        return (self.work or 0.0, self.config.epochs)

    @property
    def label(self) -> str:
        """``encoder.0.filters=16, kernel=5``: what this run varies, as plain text."""
        return ", ".join(f"{field}={format_value(value)}" for field, value in self.values)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _unplain(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def format_value(value: Any) -> str:
    """A value as typed: ``16``, ``0.001``, ``3x5``, ``relu``."""
    if isinstance(value, (list, tuple)):
        return "x".join(str(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def parse_value(text: str) -> Any:
    """``16`` -> 16, ``1e-3`` -> 0.001, ``3x5`` -> (3, 5), anything else stays a word."""
    text = text.strip()
    pair = _PAIR_RE.fullmatch(text)
    if pair:
        return (int(pair.group(1)), int(pair.group(2)))
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        raise SweepError(f"a value must be a finite number or a word. Received: {text!r}")
    return number


def parse_values(text: str, field: str = "values") -> tuple[Any, ...]:
    """``8, 16, 32`` -> (8, 16, 32): comma-separated values, no empty ones, no repeats, at most
    ``MAX_VALUES``."""
    parts = [part.strip() for part in str(text).split(",")]
    if not any(parts):
        raise SweepError(f"{field}: give at least one value, e.g. 8,16. Received: {text!r}")
    if not all(parts):
        raise SweepError(f"{field}: an empty value between commas. Received: {text!r}")
    values = tuple(parse_value(part) for part in parts)
    if len(set(map(format_value, values))) != len(values):
        raise SweepError(f"{field}: a value is given twice. Received: {text!r}")
    if len(values) > MAX_VALUES:
        raise SweepError(f"{field}: at most {MAX_VALUES} values. Received: {len(values)} values")
    return values


def parse_vary(text: str) -> Axis:
    """``FIELD=v1,v2,...`` (the CLI's ``--vary``) -> an :class:`Axis`."""
    field, sep, values = str(text).partition("=")
    if not sep or not field.strip():
        raise SweepError(f"--vary takes FIELD=v1,v2,... Received: {text!r}")
    return Axis(field.strip(), parse_values(values, field.strip()))


# ----------------------------------------------------------------------- fields of a spec


def varied_fields(spec: ArchitectureSpec) -> list[tuple[str, str]]:
    """The fields a sweep of ``spec`` can vary, as (field, description): each convolution's
    filters, kernel and depth multiplier (those its kind has), every kernel, the code's channels
    and the training settings."""
    choices: list[tuple[str, str]] = []
    for part in ("encoder", "decoder"):
        for index, layer in enumerate(getattr(spec, part)):
            if kind_of(layer).convolution:
                where = f"{part}[{index}] {describe_layer(layer)}"
                for name in ("filters", "kernel", "depth_multiplier"):
                    if hasattr(layer, name):
                        what = name.replace("_", " ")
                        choices.append((f"{part}.{index}.{name}", f"{what} of {where}"))
    choices.insert(0, ("kernel", SHORT_FIELDS["kernel"]))
    if _code_layer(spec) is not None:
        choices.insert(1, ("code", SHORT_FIELDS["code"]))
    choices += [(name, SHORT_FIELDS[name]) for name in ("lr", "epochs", "noise", "batch")]
    choices += [(name, SHORT_FIELDS[name]) for name in _OBJECTIVE_FIELDS]
    return choices


def _code_layer(spec: ArchitectureSpec) -> int | None:
    """The index of the encoder's last convolution (its filters are the code's channels), or
    None when a later layer fixes the channels otherwise (there is none)."""
    for index in range(len(spec.encoder) - 1, -1, -1):
        if kind_of(spec.encoder[index]).filters:
            return index
    return None


def check_field(field: str, spec: ArchitectureSpec) -> None:
    """SweepError unless ``field`` names something of ``spec`` or its config a sweep can set."""
    if field in SHORT_FIELDS:
        if field == "code" and _code_layer(spec) is None:
            raise SweepError(
                "code: the encoder has no convolution whose filters set the code's channels. "
                f"Received: field={field!r}"
            )
        return
    if field.startswith("config."):
        if field.removeprefix("config.") not in _CONFIG_FIELDS:
            raise SweepError(
                f"{field}: not a training setting; choose one of "
                f"{', '.join(_CONFIG_FIELDS)}. Received: field={field!r}"
            )
        return
    match = _PATH_RE.fullmatch(field)
    if not match:
        known = ", ".join(SHORT_FIELDS)
        raise SweepError(
            f"unknown field: use a dotted path such as encoder.0.filters, config.batch_size, or "
            f"one of {known}. Received: field={field!r}"
        )
    part, index, key = match.group(1), int(match.group(2)), match.group(3)
    layers = getattr(spec, part)
    if index >= len(layers):
        raise SweepError(
            f"{field}: the {part} has {len(layers)} layers (0 to {len(layers) - 1}). "
            f"Received: field={field!r}"
        )
    layer = layers[index]
    allowed = {item.name for item in fields(LAYER_BY_NAME[layer.type])}
    if key not in allowed:
        raise SweepError(
            f"{field}: a {layer.type} layer has no {key!r} (it has {', '.join(sorted(allowed))}). "
            f"Received: field={field!r}"
        )


def apply(spec: dict[str, Any], config: dict[str, Any], field: str, value: Any) -> None:
    """Set ``field`` to ``value`` in a spec dict and a config dict (both changed in place)."""
    value = _plain(value)
    if field == "kernel":
        for part in ("encoder", "decoder"):
            for layer in spec[part]:
                if KINDS[LAYER_BY_NAME[layer["type"]]].convolution:
                    layer["kernel"] = value
    elif field == "code":
        index = _code_layer(ArchitectureSpec.from_dict(spec))
        if index is None:
            raise SweepError(f"code: the encoder has no convolution. Received: value={value!r}")
        spec["encoder"][index]["filters"] = value
    elif field == "noise":  # Gaussian noise of this std (cae.corruption); 0: clean inputs
        config["corruption"] = "gaussian" if value else None
        config["strength"] = value
    elif field == "beta":  # applied before a warmup (see apply_values)
        _apply_beta(spec, value)
    elif field == "warmup":
        _apply_warmup(spec, value)
    elif field == "corruption":  # applied before a strength (see apply_values)
        _apply_corruption(config, value)
    elif field == "strength":  # 0: clean inputs; else the strength of the config's corruption
        if value == 0 and not isinstance(value, bool):
            config["corruption"] = None
        elif config.get("corruption") is None:
            raise SweepError(
                "strength: a strength needs a corruption kind; vary corruption too, or train "
                f"with one. Received: corruption=None, strength={value!r}"
            )
        config["strength"] = value
    elif field in _CONFIG_SHORT:
        config[_CONFIG_SHORT[field]] = value
    elif field.startswith("config."):
        config[field.removeprefix("config.")] = value
    else:
        part, index, key = field.split(".")
        spec[part][int(index)][key] = value


def _apply_beta(spec: dict[str, Any], value: Any) -> None:
    """0 makes the design plain; a number above 0 variational with that beta (keeping the
    base design's KL warm-up, if it is variational)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise SweepError(
            "beta: 0 for a plain autoencoder or a number above 0 for a variational one. "
            f"Received: beta={value!r}"
        )
    if value == 0:
        spec.pop("variational", None)
        return
    base = spec.get("variational") or {}
    spec["variational"] = {"beta": value, "warmup_epochs": base.get("warmup_epochs", 0)}


def _apply_warmup(spec: dict[str, Any], value: Any) -> None:
    """The KL warm-up (epochs) of the variational design; a plain one takes only 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SweepError(f"warmup: a whole number of epochs, 0 or more. Received: warmup={value!r}")
    variational = spec.get("variational")
    if variational is None:
        if value == 0:
            return
        raise SweepError(
            "warmup: a KL warm-up needs a variational design; vary beta too, or start from a "
            f"variational design. Received: variational=None, warmup={value!r}"
        )
    spec["variational"] = {**variational, "warmup_epochs": value}


def _apply_corruption(config: dict[str, Any], value: Any) -> None:
    """``none`` trains on clean inputs; a kind keeps the config's strength when it has one, else
    takes the kind's default."""
    from cae.corruption import CORRUPTION_NAMES, CORRUPTIONS_BY_NAME

    if value == "none":
        config["corruption"], config["strength"] = None, 0.0
        return
    if value not in CORRUPTIONS_BY_NAME:
        raise SweepError(
            f"corruption: one of {', '.join(CORRUPTION_NAMES)} or none. "
            f"Received: corruption={value!r}"
        )
    config["corruption"] = value
    if not config.get("strength"):
        config["strength"] = CORRUPTIONS_BY_NAME[value].default


def apply_values(
    spec: dict[str, Any], config: dict[str, Any], values: Sequence[tuple[str, Any]]
) -> None:
    """Apply one combination's (field, value) pairs with :func:`apply`: a ``corruption`` and a
    ``beta`` first, so that a ``strength`` beside the one sets that kind's strength, and a
    ``warmup`` beside the other the warm-up of the design it makes, whichever axis comes first."""

    def rank(item: tuple[str, Any]) -> int:
        return _APPLIED_FIRST.index(item[0]) if item[0] in _APPLIED_FIRST else len(_APPLIED_FIRST)

    for field, value in sorted(values, key=rank):
        apply(spec, config, field, value)


# ----------------------------------------------------------------------- expansion


def check_axes(axes: Sequence[Axis], spec: ArchitectureSpec) -> None:
    """SweepError unless there are 1 to MAX_AXES axes on distinct, known fields, each with values,
    and at most MAX_RUNS combinations."""
    if not axes:
        raise SweepError("vary at least one setting. Received: no fields")
    if len(axes) > MAX_AXES:
        raise SweepError(
            f"vary at most {MAX_AXES} settings. Received: {', '.join(a.field for a in axes)}"
        )
    names = [axis.field for axis in axes]
    for name in names:
        if names.count(name) > 1:
            raise SweepError(f"{name} is varied twice. Received: fields={names}")
    if "noise" in names and ("corruption" in names or "strength" in names):
        raise SweepError(
            "noise is Gaussian corruption with that strength: vary either noise, or corruption "
            f"and strength. Received: fields={names}"
        )
    for axis in axes:
        check_field(axis.field, spec)
        if not axis.values:
            raise SweepError(f"{axis.field}: give at least one value. Received: values=()")
    count = math.prod(len(axis.values) for axis in axes)
    if count > MAX_RUNS:
        raise SweepError(
            f"a sweep may have at most {MAX_RUNS} runs; use fewer values. Received: {count} "
            f"combinations ({' x '.join(str(len(a.values)) for a in axes)})"
        )


def expand(
    spec: ArchitectureSpec,
    config: TrainConfig,
    axes: Sequence[Axis],
    *,
    image_shape: Sequence[int] | None = None,
) -> list[Variant]:
    """Every combination of the axes' values applied to ``spec`` and ``config``, in order (the
    last axis varies fastest), each validated as a training would be (:func:`make_variant`)."""
    check_axes(axes, spec)
    return [
        make_variant(
            spec,
            config,
            index,
            tuple((axis.field, value) for axis, value in zip(axes, combination, strict=True)),
            image_shape=image_shape,
        )
        for index, combination in enumerate(itertools.product(*(axis.values for axis in axes)))
    ]


def make_variant(
    spec: ArchitectureSpec,
    config: TrainConfig,
    index: int,
    values: tuple[tuple[str, Any], ...],
    *,
    image_shape: Sequence[int] | None = None,
    num_train: int | None = None,
) -> Variant:
    """One combination's (field, value) pairs applied to ``spec`` and ``config`` and validated as
    a training would be: spec validation, shape check, the images' shape, the memory estimate,
    the config's limits and, given ``num_train``, enough images. An invalid one carries its
    reason in ``problem``."""
    from cae.shapes import compute_shapes

    spec_dict, config_dict = spec.to_dict(), config.to_dict()
    try:
        apply_values(spec_dict, config_dict, values)
        variant_spec = ArchitectureSpec.from_dict(spec_dict)
        variant_config = TrainConfig.from_dict(config_dict)
        check = preflight(
            variant_spec,
            variant_config,
            image_shape=image_shape,
            num_train=num_train,
            with_fixes=False,
        )
        check.raise_first("design", "mismatch", "shape", "memory", "images")
        report = compute_shapes(variant_spec, with_fixes=False)
    except (ValueError, TypeError) as error:
        return Variant(index, values, None, None, str(error) or type(error).__name__)
    return Variant(
        index,
        values,
        variant_spec,
        variant_config,
        None,
        params=report.total_params,
        latent_shape=tuple(report.latent_shape),
        compression=report.compression_ratio,
        work=training_work(report),
    )


def run_name(experiment: str, label: str) -> str:
    """A run's name: the experiment's name and what this run varies, at most 80 characters."""
    from cae.request import MAX_RUN_NAME

    return f"{experiment[: max(8, MAX_RUN_NAME - len(label) - 3)]} · {label}"[:MAX_RUN_NAME]


# ----------------------------------------------------------------------- earlier runs' speed


def rate_samples(runs: Sequence[RunInfo]) -> list[tuple[float, float]]:
    """(work, wall seconds) of the newest ``RATE_RUNS`` complete runs timed where trainings run
    now (``cae.store.timed_here``: this machine or the Ray cluster, not the shipped runs): their
    training images times epochs times ``training_work`` of their design, against their recorded
    wall time (what ``cae.preflight`` fits this machine's speed to)."""
    from cae.shapes import compute_shapes
    from cae.store import read_run_json, timed_here

    samples = []
    for run in [run for run in runs if run.ok]:
        if len(samples) >= RATE_RUNS:
            break
        try:
            train = read_run_json(run.path, "train")
            if not timed_here(train):
                continue  # trained elsewhere (a shipped run) or before runs said where
            outcome = train.get("outcome")
            outcome = outcome if isinstance(outcome, dict) else train  # older runs: flat keys
            spec = ArchitectureSpec.from_dict(read_run_json(run.path, "spec"))
            work = training_work(compute_shapes(spec, with_fixes=False))
        except (ValueError, OSError, TypeError, AttributeError):
            continue
        num_train, epochs = outcome.get("num_train"), outcome.get("epochs_completed")
        wall = run.metrics.get("wall_seconds")
        if (
            isinstance(num_train, int)
            and isinstance(epochs, int)
            and isinstance(wall, (int, float))
        ):
            samples.append((work * num_train * epochs, float(wall)))
    return samples


# ----------------------------------------------------------------------- results


def result_columns() -> list[str]:
    """The comparison's columns, in order (sweep.csv's header): metric columns from METRICS."""
    return [
        "index",
        "design",
        "params",
        "code",
        "code_size",
        "compression",
        "epochs",
        "train_seconds",
        *(metric.key for metric in METRICS),
        "run_id",
        "name",
    ]


def result_row(index: int, design: str, run: RunInfo) -> dict[str, Any]:
    """One comparison row of a saved run: what it varies, its size and its test metrics."""
    latent = tuple(run.latent_shape) if run.latent_shape else None
    code_size = math.prod(latent) if latent else None
    inputs = math.prod(run.input_shape) if run.input_shape else None
    row: dict[str, Any] = {
        "index": index,
        "design": design,
        "params": run.params,
        "code": "x".join(map(str, latent)) if latent else None,
        "code_size": code_size,
        "compression": round(inputs / code_size, 3) if inputs and code_size else None,
        "epochs": run.epochs,
        "train_seconds": run.metrics.get("wall_seconds"),
    }
    for metric in METRICS:
        value = run.metrics.get(metric.key)
        row[metric.key] = float(value) if isinstance(value, (int, float)) else None
    row["run_id"] = run.run_id
    row["name"] = run.name
    return row


DID_NOT_LEARN = "did not learn"
MAX_PCA_LINES = 4  # PCA scores drawn as lines on the parameters axis; more make one band


def did_not_learn(psnr: float | None, mean_psnr: float | None) -> bool:
    """True when a run's test PSNR does not beat the mean image's (the average training image
    shown for every input): it learned nothing an autoencoder is for. False when it does, or when
    either score is unknown (nothing to say)."""
    if not _finite(psnr) or not _finite(mean_psnr):
        return False
    return float(psnr) <= float(mean_psnr)


def mark_learning(rows: Sequence[dict[str, Any]], mean_psnr: float | None) -> list[dict[str, Any]]:
    """Copies of the comparison rows with ``did_not_learn`` (:func:`did_not_learn` against the
    mean image's PSNR of the same data)."""
    return [{**row, "did_not_learn": did_not_learn(row.get("psnr"), mean_psnr)} for row in rows]


def pca_gain(row: dict[str, Any], pca: dict[int, float]) -> float | None:
    """The run's test PSNR less PCA's with as many components as its code has values (dB), or
    None when either is unknown."""
    psnr, reference = row.get("psnr"), pca.get(row.get("code_size") or 0)
    if not _finite(psnr) or not _finite(reference):
        return None
    return float(psnr) - float(reference)


def best_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The run with the highest test PSNR (on a tie, the one with fewer parameters), or None."""
    scored = [row for row in rows if _finite(row.get("psnr"))]
    if not scored:
        return None
    return max(scored, key=lambda row: (float(row["psnr"]), -(row.get("params") or 0)))


def winner_sentence(
    rows: Sequence[dict[str, Any]], pca: dict[int, float], mean_psnr: float | None = None
) -> str | None:
    """One sentence that names the best run (what it varies) and why: its PSNR against PCA with
    the same number of code values, said honestly when PCA wins or when no run learned (no run
    above the mean image). None without a scored run. Plain text."""
    best = best_row(rows)
    if best is None:
        return None
    label = str(best.get("design") or best.get("name") or best.get("run_id") or "the best run")
    psnr = float(best["psnr"])
    if did_not_learn(psnr, mean_psnr):
        return (
            f"No run learned: the best, {label}, scores {psnr:.2f} dB, not above the mean "
            f"image's {mean_psnr:.2f} dB; train for more epochs or on more images."
        )
    gain = pca_gain(best, pca)
    if gain is None:
        return f"{label}: best PSNR, {psnr:.2f} dB (no PCA score to compare it with)."
    numbers = f"PCA with the same {best['code_size']:,} numbers"
    if abs(gain) < 0.05:
        return f"{label}: best PSNR, {psnr:.2f} dB, level with {numbers}."
    if gain > 0:
        return f"{label}: best PSNR, {psnr:.2f} dB, {gain:+.1f} dB over {numbers}."
    return f"Best: {label}, {psnr:.2f} dB, {-gain:.1f} dB below {numbers}."


def chart_baselines(
    pca: dict[int, float], mean_psnr: float | None, x_key: str = "params"
) -> list[dict[str, Any]]:
    """The baselines of the comparison chart (``cae.plots.sweep_scatter``), drawn where the runs
    are: PCA's score at each code size as a horizontal line (a band between the lowest and the
    highest when there are more than :data:`MAX_PCA_LINES`) on the parameters axis, or as points
    at their code size on the code-size axis; the mean image's as a line."""
    scores = sorted((int(k), float(v)) for k, v in pca.items() if _finite(v))
    found: list[dict[str, Any]] = []
    if scores and x_key == "code_size":
        found.append({"label": "PCA, as many components as the code", "points": scores})
    elif len(scores) > MAX_PCA_LINES:
        psnrs = [psnr for _, psnr in scores]
        found.append(
            {
                "label": f"PCA, {scores[0][0]:,} to {scores[-1][0]:,} values",
                "band": (min(psnrs), max(psnrs)),
                "kind": "pca",
            }
        )
    else:
        found += [
            {"label": f"PCA, {k:,} values", "psnr": psnr, "kind": "pca"} for k, psnr in scores
        ]
    if _finite(mean_psnr):
        found.append({"label": "mean image", "psnr": mean_psnr, "kind": "mean"})
    return found


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def rows_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as CSV text with :func:`result_columns` as header, and ``did_not_learn`` last
    when the rows were marked (:func:`mark_learning`: when the mean image could be scored)."""
    columns = result_columns()
    if any("did_not_learn" in row for row in rows):
        columns.append("did_not_learn")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in columns})
    return buffer.getvalue()


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison as a plain-text table (what ``cae sweep`` prints), with a ``learned`` column
    (:data:`DID_NOT_LEARN` or yes) when the rows were marked; names terminal-safe."""
    from cae.text import terminal_safe

    marked = any("did_not_learn" in row for row in rows)
    header = ["#", "design", "params", "code", "compression", "seconds"]
    header += [metric.label for metric in METRICS] + ["run"] + (["learned"] if marked else [])
    lines = [header]
    for row in rows:
        seconds = row.get("train_seconds")
        cells = [
            str(row.get("index", "")),
            terminal_safe(str(row.get("design", ""))),
            f"{row['params']:,}" if isinstance(row.get("params"), int) else "-",
            str(row.get("code") or "-"),
            f"{row['compression']:g}" if isinstance(row.get("compression"), float) else "-",
            f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "-",
            *(metric.format(row.get(metric.key)) for metric in METRICS),
            terminal_safe(str(row.get("run_id") or row.get("error") or "-")),
        ]
        if marked:
            cells.append(DID_NOT_LEARN if row.get("did_not_learn") else "yes")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines
    )
