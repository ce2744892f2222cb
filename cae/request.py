"""What to train: one plain request (architecture, data recipe, training config, run name).

The Train page builds a :class:`TrainRequest`, the job manager hands it to the worker process as
JSON, and the CLI builds the same one from its arguments; the worker (or the CLI) loads the images
from the recipe itself. A request is validated once, when it is made. No TensorFlow here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cae.recipe import DataRecipe
from cae.spec import ArchitectureSpec
from cae.strategies import STRATEGIES
from cae.text import clean_name
from cae.training import TrainConfig

MAX_RUN_NAME = 80


@dataclass(frozen=True)
class TrainRequest:
    """One training to do; JSON both ways (:meth:`to_dict` / :meth:`from_dict`)."""

    spec: ArchitectureSpec
    data: DataRecipe
    config: TrainConfig
    name: str
    strategy: str = "default"  # a tf.distribute strategy name (cae.strategies.STRATEGIES)
    experiment: dict[str, Any] | None = None  # the sweep this run belongs to (cae.sweep), if any

    def __post_init__(self) -> None:
        for key, kind in (
            ("spec", ArchitectureSpec),
            ("data", DataRecipe),
            ("config", TrainConfig),
        ):
            value = getattr(self, key)
            if not isinstance(value, kind):
                raise ValueError(
                    f"a training request's {key} must be a {kind.__name__}. "
                    f"Received: {key}={type(value).__name__}"
                )
        if isinstance(self.name, str):  # no control or bidi characters, one line (cae.text)
            object.__setattr__(self, "name", clean_name(self.name))
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > MAX_RUN_NAME:
            raise ValueError(
                f"a run needs a name of 1 to {MAX_RUN_NAME} characters. Received: name={self.name!r}"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"strategy must be one of {', '.join(STRATEGIES)}. Received: strategy={self.strategy!r}"
            )
        if self.experiment is not None and (
            not isinstance(self.experiment, dict) or not isinstance(self.experiment.get("id"), str)
        ):
            raise ValueError(
                "a request's experiment must be a dict with an 'id'. "
                f"Received: experiment={self.experiment!r}"
            )
        from cae.preflight import preflight

        # before TensorFlow allocates: a layer that cannot be applied, the memory, the images
        shape = self.data.image_shape()
        check = preflight(self.spec, self.config, image_shape=shape, with_fixes=False)
        check.raise_first("design", "memory", "shape")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        data = {
            "spec": self.spec.to_dict(),
            "data": self.data.to_dict(),
            "config": self.config.to_dict(),
            "name": self.name,
            "strategy": self.strategy,
        }
        if self.experiment is not None:
            data["experiment"] = dict(self.experiment)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> TrainRequest:
        """A validated request from :meth:`to_dict` output."""
        if not isinstance(data, dict):
            raise ValueError(
                f"a training request must be a dict. Received: type={type(data).__name__}"
            )
        missing = [key for key in ("spec", "data", "config", "name") if key not in data]
        if missing:
            raise ValueError(
                f"a training request needs {', '.join(missing)}. Received: keys={sorted(data)}"
            )
        config = data["config"]
        if not isinstance(config, dict):
            raise ValueError(
                f"a training config must be a dict. Received: type={type(config).__name__}"
            )
        return cls(
            spec=ArchitectureSpec.from_dict(data["spec"]),
            data=DataRecipe.from_dict(data["data"]),
            config=TrainConfig.from_dict(config),
            name=data["name"],
            strategy=data.get("strategy", "default"),
            experiment=data.get("experiment"),
        )

    def to_json(self) -> str:
        """The request as one line of JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TrainRequest:
        """A validated request from :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))
