"""A search space, declared in JSON: the ranges a search (``cae.search``) samples designs and
training settings from, the constraints a candidate must meet, and the sampler and pruner.

A space file::

    {
      "name": "mnist-49",
      "parameters": {
        "depth": 2,                         # down-sampling stages
        "convs_per_stage": [1, 2],          # a list: one of these values
        "filters": [16, 32, 48],            # the first stage's filters
        "growth": [1, 2],                   # filters multiplied by this at each later stage
        "kernel": [3, 5],
        "code_channels": 1,
        "learning_rate": {"low": 3e-4, "high": 3e-3, "log": true},   # a range
        "batch_size": [32, 64],
        "epochs": 40
      },
      "constraints": {"max_code_values": 49, "max_params": 400000},
      "sampler": {"name": "tpe", "seed": null, "n_startup_trials": 5},
      "pruner": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 2},
      "enqueue": [{"convs_per_stage": 2, "filters": 32, "growth": 2}]   # tried first
    }

A parameter is a fixed value, a list of values (one is chosen; a grid tries each) or a range
``{"low", "high"}`` (integers when both ends are, ``"log": true`` samples on a log scale,
``"step"`` a grid of steps). A design is ``depth`` stages of ``convs_per_stage`` convolutions
(``filters`` * ``growth`` ** stage filters, ``kernel`` x ``kernel``), each stage ending in a 2x2
max pool (``downsample: "pool"``) or with its last convolution strided by 2 (``"stride"``), then
the code: a convolution of ``code_channels`` filters; the decoder is the encoder's mirror
(``cae.shapes.mirror``). Every error is one line naming the field and the value received.
No TensorFlow and no Optuna at import (Optuna's distributions are made inside
:meth:`SearchSpace.distributions`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cae.spec import ACTIVATIONS, MAX_FILTERS, ArchitectureSpec, BatchNorm, Conv, Pool
from cae.training import LIMITS, LOSSES, LR_SCHEDULES, OPTIMIZERS, TrainConfig

EXAMPLE_SPACE = Path(__file__).resolve().parent / "_data" / "search-mnist-sample.json"
"""The shipped space: designs of at most 49 code values for the bundled sample (the Experiments
page's starting point and README's example)."""
MAX_SPACE_BYTES = 256 * 1024  # a space file is a few hundred bytes; refuse anything absurd


class SpaceError(ValueError):
    """A search space that cannot be used; the message names the field and the value received."""


@dataclass(frozen=True)
class ParamRule:
    """What one parameter may be: its kind (int, number, word, bool), limits and default."""

    kind: str  # "int", "float", "word", "bool"
    low: float | None = None
    high: float | None = None
    words: tuple[str, ...] = ()
    default: Any = None  # None: the training config's own value (training parameters)
    training: bool = False  # a TrainConfig setting rather than a part of the design
    help: str = ""


DECODERS = ("mirror", "compact")
"""How a candidate's decoder is made: ``mirror`` (``cae.shapes.mirror``: a convolution mirroring
the code's, then per stage up-sampling followed by its convolutions) or ``compact`` (as the wide
preset: per stage its convolutions at the lower resolution, then up-sampling; about half the
mirror's work for as good a loss per epoch, docs/benchmarks.md issue 27)."""

PARAMETERS: dict[str, ParamRule] = {
    "depth": ParamRule("int", 1, 6, default=2, help="down-sampling stages (each halves the side)"),
    "convs_per_stage": ParamRule("int", 1, 4, default=1, help="convolutions in each stage"),
    "filters": ParamRule("int", 1, MAX_FILTERS, default=16, help="the first stage's filters"),
    "growth": ParamRule("float", 1, 4, default=2, help="filters multiplied by this per stage"),
    "kernel": ParamRule("int", 1, 15, default=3, help="every convolution's kernel side"),
    "code_channels": ParamRule("int", 1, MAX_FILTERS, default=1, help="the code's channels"),
    "code_kernel": ParamRule("int", 1, 15, default=None, help="the code convolution's kernel"),
    "activation": ParamRule("word", words=ACTIVATIONS, default="relu", help="hidden layers'"),
    "code_activation": ParamRule("word", words=ACTIVATIONS, default="relu", help="the code's"),
    "downsample": ParamRule("word", words=("pool", "stride"), default="pool", help="how"),
    "batchnorm": ParamRule("bool", default=False, help="batch normalisation after each conv"),
    "decoder": ParamRule(
        "word",
        words=DECODERS,
        default="mirror",
        help="mirror: the encoder reversed (up-sampling, then the stage's convolutions); "
        "compact: each stage's convolutions at the lower resolution, then up-sampling",
    ),
    "learning_rate": ParamRule("float", *LIMITS["learning_rate"], training=True),
    "batch_size": ParamRule("int", 1, 4096, training=True),
    "epochs": ParamRule("int", *LIMITS["epochs"], training=True),
    "optimizer": ParamRule("word", words=OPTIMIZERS, training=True),
    "loss": ParamRule("word", words=LOSSES, training=True),
    "lr_schedule": ParamRule("word", words=LR_SCHEDULES, training=True),
}
"""Every parameter a space may set, with its limits; the design's have defaults, the training
settings default to the command's (or the server's) training config."""

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "halving", "none")
PRUNER_KEYS = {
    "median": ("n_startup_trials", "n_warmup_steps"),
    "hyperband": ("min_resource", "reduction_factor"),
    "halving": ("min_resource", "reduction_factor"),
}
"""Each pruner's settings in a space file: Optuna's ``MedianPruner``, ``HyperbandPruner`` (whose
``max_resource`` is the space's epochs) and ``SuccessiveHalvingPruner`` (``halving``: one
bracket of rungs at ``min_resource`` x ``reduction_factor``^k epochs)."""
CONSTRAINTS = ("max_code_values", "max_params")
SPACE_KEYS = ("name", "description", "parameters", "constraints", "sampler", "pruner", "enqueue")


def _fail(field_name: str, problem: str, value: Any) -> SpaceError:
    shown = json.dumps(value) if _jsonable(value) else repr(value)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    return SpaceError(f"{field_name}: {problem}. Received: {field_name}={shown}")


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_value(name: str, where: str, value: Any) -> Any:
    """``value`` checked against ``PARAMETERS[name]``; returns it (ints stay ints)."""
    rule = PARAMETERS[name]
    if rule.kind == "bool":
        if not isinstance(value, bool):
            raise _fail(where, "must be true or false", value)
        return value
    if rule.kind == "word":
        if value not in rule.words:
            raise _fail(where, f"must be one of {', '.join(rule.words)}", value)
        return value
    if rule.kind == "int":
        if not _is_int(value):
            raise _fail(where, "must be a whole number", value)
    elif not _is_number(value):
        raise _fail(where, "must be a number", value)
    if not rule.low <= value <= rule.high:  # type: ignore[operator]
        raise _fail(where, f"must be from {rule.low:g} to {rule.high:g}", value)
    return value


@dataclass(frozen=True)
class Param:
    """One parameter of a space: fixed (``value``), a list (``choices``) or a range."""

    name: str
    value: Any = None  # fixed
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def sampled(self) -> bool:
        """True when a search chooses this parameter (a list or a range)."""
        return self.choices is not None or self.low is not None

    @property
    def is_int(self) -> bool:
        """True for a range of whole numbers."""
        return (
            _is_int(self.low) and _is_int(self.high) and (self.step is None or _is_int(self.step))
        )

    def to_json(self) -> Any:
        """The parameter as written in a space file."""
        if self.choices is not None:
            return list(self.choices)
        if self.low is None:
            return self.value
        data: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            data["log"] = True
        if self.step is not None:
            data["step"] = self.step
        return data

    @classmethod
    def parse(cls, name: str, data: Any) -> Param:
        """A parameter from its JSON value, checked against ``PARAMETERS``."""
        where = f"parameters.{name}"
        if name not in PARAMETERS:
            raise _fail(
                "parameters", f"unknown parameter {name!r}; known: {', '.join(PARAMETERS)}", name
            )
        if isinstance(data, list):
            if not data:
                raise _fail(where, "a list needs at least one value", data)
            values = tuple(_check_value(name, f"{where}[{i}]", v) for i, v in enumerate(data))
            if len(set(map(json.dumps, values))) != len(values):
                raise _fail(where, "a value is given twice", data)
            return cls(name, choices=values)
        if isinstance(data, dict):
            unknown = sorted(set(map(str, data)) - {"low", "high", "log", "step"})
            if unknown:
                raise _fail(where, f"a range has low, high, log and step, not {unknown[0]!r}", data)
            if PARAMETERS[name].kind not in ("int", "float"):
                raise _fail(where, "only numbers take a range; give a list of values", data)
            if "low" not in data or "high" not in data:
                raise _fail(where, "a range needs low and high", data)
            low = _check_value(name, f"{where}.low", data["low"])
            high = _check_value(name, f"{where}.high", data["high"])
            if low > high:
                raise _fail(where, "low must not be above high", data)
            if PARAMETERS[name].kind == "int" and not (_is_int(low) and _is_int(high)):
                raise _fail(where, "low and high must be whole numbers", data)
            log = data.get("log", False)
            if not isinstance(log, bool):
                raise _fail(f"{where}.log", "must be true or false", log)
            if log and low <= 0:
                raise _fail(where, "a log range needs low above 0", data)
            step = data.get("step")
            if step is not None:
                if not _is_number(step) or step <= 0:
                    raise _fail(f"{where}.step", "must be a number above 0", step)
                if log:
                    raise _fail(where, "a range takes either log or step, not both", data)
                if PARAMETERS[name].kind == "int" and not _is_int(step):
                    raise _fail(f"{where}.step", "must be a whole number", step)
            return cls(name, low=low, high=high, log=log, step=step)
        return cls(name, value=_check_value(name, where, data))


@dataclass(frozen=True)
class SearchSpace:
    """A search space: parameters, constraints, sampler and pruner (plain data, JSON both ways)."""

    parameters: tuple[Param, ...]
    name: str = "search"
    description: str = ""
    max_code_values: int | None = None
    max_params: int | None = None
    sampler: str = "tpe"
    sampler_seed: int | None = None
    n_startup_trials: int = 5  # of the TPE sampler: random trials before it models
    pruner: str = "median"
    pruner_startup_trials: int = 2  # trials finished before the median pruner prunes
    pruner_warmup_steps: int = 1  # epochs of a trial before it may be pruned
    pruner_min_resource: int = 1  # hyperband, halving: the epochs of the first rung
    pruner_reduction_factor: int = 3  # hyperband, halving: 1 in this many goes on at a rung
    enqueue: tuple[dict[str, Any], ...] = ()  # points tried first (Optuna's enqueue_trial)
    by_name: dict[str, Param] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {p.name: p for p in self.parameters})
        if self.sampler == "grid":
            ranged = [p.name for p in self.parameters if p.low is not None]
            if ranged:
                raise _fail(
                    f"parameters.{ranged[0]}",
                    "a grid tries lists of values; give a list, not a range",
                    self.by_name[ranged[0]].to_json(),
                )

    # ------------------------------------------------------------------ reading

    @classmethod
    def from_dict(cls, data: Any) -> SearchSpace:
        """A validated space from its JSON object."""
        if not isinstance(data, dict):
            raise _fail("space", "a search space is a JSON object", type(data).__name__)
        unknown = sorted(set(map(str, data)) - set(SPACE_KEYS))
        if unknown:
            raise _fail(
                "space", f"unknown key {unknown[0]!r}; known: {', '.join(SPACE_KEYS)}", unknown[0]
            )
        name = data.get("name", "search")
        if not isinstance(name, str) or not name.strip() or len(name) > 60:
            raise _fail("name", "must be a text of 1 to 60 characters", name)
        description = data.get("description", "")
        if not isinstance(description, str):
            raise _fail("description", "must be a text", description)
        raw = data.get("parameters")
        if not isinstance(raw, dict) or not raw:
            raise _fail("parameters", "must be an object of at least one parameter", raw)
        params = tuple(Param.parse(str(key), value) for key, value in raw.items())
        values: dict[str, Any] = {"name": name.strip(), "description": description}
        values.update(_constraints(data.get("constraints", {})))
        values.update(_choice("sampler", data.get("sampler", {})))
        values.update(_choice("pruner", data.get("pruner", {})))
        if not any(p.sampled for p in params):
            raise _fail("parameters", "nothing to search: give at least one list or range", raw)
        values["enqueue"] = _enqueue(data.get("enqueue", []), {p.name: p for p in params})
        return cls(params, **values)

    @classmethod
    def from_json(cls, text: str) -> SearchSpace:
        """A validated space from JSON text."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpaceError(
                f"space: not valid JSON ({error.msg} at line {error.lineno}, column "
                f"{error.colno}). Received: {text[:60]!r}"
            ) from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> SearchSpace:
        """A validated space from a JSON file."""
        path = Path(path)
        try:
            size = path.stat().st_size
            if size > MAX_SPACE_BYTES:
                raise SpaceError(
                    f"space: a space file is at most {MAX_SPACE_BYTES:,} bytes. "
                    f"Received: {size:,} bytes"
                )
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise SpaceError(
                f"cannot read the space file: {error}. Received: space={str(path)!r}"
            ) from None
        return cls.from_json(text)

    def expected_epochs(self, epochs: int) -> float:
        """The epochs a trial of ``epochs`` trains on average under this space's pruner, for
        the estimate a search is admitted on: successive halving lets 1 in ``reduction_factor``
        trials past each rung (``min_resource`` x ``reduction_factor``^k epochs); Hyperband is
        the mean of its brackets' halving, each starting at a rung of its own; the median
        pruner and none are counted whole (an upper bound: what they cut is not known ahead)."""
        if self.pruner not in ("halving", "hyperband") or epochs <= self.pruner_min_resource:
            return float(epochs)
        factor = self.pruner_reduction_factor

        def halving(first: int) -> float:
            total, survive, start, rung = 0.0, 1.0, 0, first
            while start < epochs:
                end = min(rung, epochs)
                total += survive * (end - start)
                survive, start, rung = survive / factor, end, rung * factor
            return total

        if self.pruner == "halving":
            return halving(self.pruner_min_resource)
        firsts = [self.pruner_min_resource]
        while firsts[-1] * factor <= epochs:
            firsts.append(firsts[-1] * factor)
        return sum(halving(first) for first in firsts) / len(firsts)

    def to_dict(self) -> dict[str, Any]:
        """The space as written in a space file (``from_dict`` reads it back)."""
        constraints = {
            key: getattr(self, key) for key in CONSTRAINTS if getattr(self, key) is not None
        }
        sampler: dict[str, Any] = {"name": self.sampler, "seed": self.sampler_seed}
        if self.sampler == "tpe":
            sampler["n_startup_trials"] = self.n_startup_trials
        pruner: dict[str, Any] = {"name": self.pruner}
        if self.pruner == "median":
            pruner.update(
                n_startup_trials=self.pruner_startup_trials,
                n_warmup_steps=self.pruner_warmup_steps,
            )
        elif self.pruner in ("hyperband", "halving"):
            pruner.update(
                min_resource=self.pruner_min_resource,
                reduction_factor=self.pruner_reduction_factor,
            )
        data: dict[str, Any] = {"name": self.name}
        if self.description:
            data["description"] = self.description
        data["parameters"] = {p.name: p.to_json() for p in self.parameters}
        data.update(constraints=constraints, sampler=sampler, pruner=pruner)
        if self.enqueue:
            data["enqueue"] = [dict(point) for point in self.enqueue]
        return data

    def with_fixed(self, **values: Any) -> SearchSpace:
        """The space with these parameters fixed (a command's ``--epochs 1`` overrides the
        file's range); None values are ignored."""
        given = {key: value for key, value in values.items() if value is not None}
        if not given:
            return self
        params = [p for p in self.parameters if p.name not in given]
        params += [Param.parse(key, value) for key, value in given.items()]
        data = self.to_dict()
        data["parameters"] = {p.name: p.to_json() for p in params}
        sampled = {p.name for p in params if p.sampled}
        points = [{k: v for k, v in point.items() if k in sampled} for point in self.enqueue]
        data["enqueue"] = [point for point in points if point]
        return SearchSpace.from_dict(data)

    # ------------------------------------------------------------------ sampling

    @property
    def sampled(self) -> tuple[Param, ...]:
        """The parameters a search chooses, in the file's order."""
        return tuple(p for p in self.parameters if p.sampled)

    def distributions(self) -> dict[str, Any]:
        """Optuna's distribution of each sampled parameter (for ``study.ask``)."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        found: dict[str, Any] = {}
        for p in self.sampled:
            if p.choices is not None:
                found[p.name] = CategoricalDistribution(p.choices)
            elif p.is_int:
                found[p.name] = IntDistribution(
                    int(p.low),
                    int(p.high),
                    log=p.log,
                    step=int(p.step or 1),  # type: ignore[arg-type]
                )
            else:
                found[p.name] = FloatDistribution(
                    float(p.low),
                    float(p.high),
                    log=p.log,
                    step=p.step,  # type: ignore[arg-type]
                )
        return found

    def grid(self) -> dict[str, list[Any]]:
        """Each sampled parameter's values, for Optuna's ``GridSampler``."""
        return {p.name: list(p.choices or ()) for p in self.sampled}

    def grid_size(self) -> int:
        """How many points the grid has (1 when nothing is listed)."""
        return math.prod(len(p.choices or ()) for p in self.sampled)

    def values(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """Every parameter's value for one candidate: the sampled ones, the fixed ones and the
        design's defaults (training settings left out of the space are not listed)."""
        found = {
            name: rule.default
            for name, rule in PARAMETERS.items()
            if not rule.training and rule.default is not None
        }
        found.update({p.name: p.value for p in self.parameters if not p.sampled})
        found.update(sampled)
        if found.get("code_kernel") is None:
            found["code_kernel"] = found["kernel"]
        return found

    def may_stride_one_tap(self) -> bool:
        """True when a candidate may stride a 1-tap kernel (``kernel`` 1 with ``downsample``
        "stride"), which oneDNN cannot train (``cae.onednn``): the command line then trains
        with oneDNN off."""

        def can(name: str, wanted: Any) -> bool:
            p = self.by_name.get(name)
            if p is None:
                return PARAMETERS[name].default == wanted
            if p.choices is not None:
                return wanted in p.choices
            if p.low is not None:
                return p.low <= wanted <= p.high  # type: ignore[operator]
            return p.value == wanted

        return can("kernel", 1) and can("downsample", "stride")

    # ------------------------------------------------------------------ candidates

    def design(
        self, values: dict[str, Any], input_shape: Sequence[int], name: str = "search"
    ) -> ArchitectureSpec:
        """The architecture of one candidate's values (from :meth:`values`) for images of
        ``input_shape``: the stages, the code convolution and the mirrored decoder. ValueError
        (ShapeError) when the spec or its mirror is refused."""
        from cae.shapes import mirror

        shape = tuple(int(n) for n in input_shape)
        activation = values["activation"]
        kernel = (int(values["kernel"]),) * 2
        encoder: list[Any] = []
        for stage in range(int(values["depth"])):
            width = max(1, min(MAX_FILTERS, round(values["filters"] * values["growth"] ** stage)))
            for index in range(int(values["convs_per_stage"])):
                last = index == int(values["convs_per_stage"]) - 1
                strides = (2, 2) if values["downsample"] == "stride" and last else (1, 1)
                encoder.append(Conv(width, kernel, strides, "same", activation))
                if values["batchnorm"]:
                    encoder.append(BatchNorm())
            if values["downsample"] == "pool":
                encoder.append(Pool("max", (2, 2)))
        code_kernel = (int(values["code_kernel"]),) * 2
        encoder.append(
            Conv(int(values["code_channels"]), code_kernel, activation=values["code_activation"])
        )
        if values.get("decoder", "mirror") == "compact":
            decoder = _compact_decoder(values, tuple(encoder), shape)
        else:
            decoder = mirror(tuple(encoder), shape)  # type: ignore[arg-type]
        return ArchitectureSpec(name[:60], shape, tuple(encoder), decoder)  # type: ignore[arg-type]

    def config(self, values: dict[str, Any], base: TrainConfig) -> TrainConfig:
        """The training config of one candidate: ``base`` with the space's training settings."""
        settings = {
            name: values[name]
            for name, rule in PARAMETERS.items()
            if rule.training and name in values
        }
        return replace(base, **settings).validate()


def _compact_decoder(
    values: dict[str, Any], encoder: tuple[Any, ...], shape: tuple[int, ...]
) -> tuple[Any, ...]:
    """The ``compact`` decoder: per stage, deepest first, its convolutions (the stage's width)
    then 2x2 nearest up-sampling; a crop (or padding) of what the rounding added, and a 3x3
    sigmoid convolution to the images' channels, as the wide preset."""
    from cae.shapes import compute_shapes
    from cae.spec import Crop, Pad, Upsample

    kernel = (int(values["kernel"]),) * 2
    layers: list[Any] = []
    for stage in reversed(range(int(values["depth"]))):
        width = max(1, min(MAX_FILTERS, round(values["filters"] * values["growth"] ** stage)))
        for _ in range(int(values["convs_per_stage"])):
            layers.append(Conv(width, kernel, (1, 1), "same", values["activation"]))
            if values["batchnorm"]:
                layers.append(BatchNorm())
        layers.append(Upsample((2, 2)))
    last = Conv(int(shape[2]), (3, 3), activation="sigmoid")
    probe = ArchitectureSpec("compact", shape, encoder, (*layers, last))  # type: ignore[arg-type]
    out_h, out_w, _ = compute_shapes(probe, with_fixes=False).output_shape
    d_h, d_w = out_h - shape[0], out_w - shape[1]
    if d_h > 0 or d_w > 0:
        h, w = max(d_h, 0), max(d_w, 0)
        layers.append(Crop(((h // 2, h - h // 2), (w // 2, w - w // 2))))
    if d_h < 0 or d_w < 0:
        h, w = max(-d_h, 0), max(-d_w, 0)
        layers.append(Pad(((h // 2, h - h // 2), (w // 2, w - w // 2))))
    return (*layers, last)


def _int_field(where: str, value: Any, low: int, high: int) -> int:
    if not _is_int(value) or not low <= value <= high:
        raise _fail(where, f"must be a whole number from {low:,} to {high:,}", value)
    return value


def _constraints(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _fail("constraints", "must be an object", data)
    unknown = sorted(set(map(str, data)) - set(CONSTRAINTS))
    if unknown:
        raise _fail(
            "constraints",
            f"unknown constraint {unknown[0]!r}; known: {', '.join(CONSTRAINTS)}",
            unknown[0],
        )
    found = {}
    for key in CONSTRAINTS:
        if data.get(key) is not None:
            found[key] = _int_field(f"constraints.{key}", data[key], 1, 10**9)
    return found


_CHOICES: dict[str, tuple[tuple[str, ...], str, dict[str, tuple[str, int, int]]]] = {
    "sampler": (
        SAMPLERS,
        "tpe",
        {
            "seed": ("sampler_seed", 0, 2**31 - 1),
            "n_startup_trials": ("n_startup_trials", 0, 10_000),
        },
    ),
    "pruner": (
        PRUNERS,
        "median",
        {
            "n_startup_trials": ("pruner_startup_trials", 0, 10_000),
            "n_warmup_steps": ("pruner_warmup_steps", 0, 10_000),
            "min_resource": ("pruner_min_resource", 1, int(LIMITS["epochs"][1])),
            "reduction_factor": ("pruner_reduction_factor", 2, 100),
        },
    ),
}
"""The space's ``sampler`` and ``pruner`` blocks: their names, default name, and each setting's
field of :class:`SearchSpace` with its lowest and highest value (whole numbers; null: the
default). A pruner takes only its own settings (:data:`PRUNER_KEYS`)."""


def _choice(block: str, data: Any) -> dict[str, Any]:
    """The :class:`SearchSpace` fields of a ``sampler`` or ``pruner`` block (:data:`_CHOICES`):
    a name, or an object of its name and settings."""
    names, default, settings = _CHOICES[block]
    if isinstance(data, str):
        data = {"name": data}
    if not isinstance(data, dict):
        raise _fail(block, "must be a name or an object", data)
    name = data.get("name", default)
    if name not in names:
        raise _fail(f"{block}.name", f"must be one of {', '.join(map(str, names))}", name)
    allowed = set(PRUNER_KEYS.get(name, ())) if block == "pruner" else set(settings)
    unknown = sorted(set(map(str, data)) - {"name", *allowed})
    if unknown:
        whose = f" for the {name} pruner" if block == "pruner" else ""
        raise _fail(block, f"unknown key {unknown[0]!r}{whose}", unknown[0])
    found: dict[str, Any] = {block: name}
    for key, (field_name, low, high) in settings.items():
        if data.get(key) is not None:
            found[field_name] = _int_field(f"{block}.{key}", data[key], low, high)
    return found


def _enqueue(data: Any, params: dict[str, Param]) -> tuple[dict[str, Any], ...]:
    """The points a new study tries first: each a dict of sampled parameters and values within
    their list or range."""
    if not isinstance(data, list) or len(data) > 100:
        raise _fail("enqueue", "must be a list of at most 100 points (objects)", data)
    points = []
    for index, point in enumerate(data):
        where = f"enqueue[{index}]"
        if not isinstance(point, dict) or not point:
            raise _fail(where, "a point is an object of parameter values", point)
        for key, value in point.items():
            param = params.get(key)
            if param is None or not param.sampled:
                raise _fail(f"{where}.{key}", "not a list or range of the parameters", value)
            _check_value(key, f"{where}.{key}", value)
            inside = (
                value in param.choices
                if param.choices is not None
                else param.low <= value <= param.high  # type: ignore[operator]
            )
            if not inside:
                raise _fail(f"{where}.{key}", "outside the parameter's list or range", value)
        points.append(dict(point))
    return tuple(points)
