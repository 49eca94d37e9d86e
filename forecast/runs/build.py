"""Building a run's net and its task's metric options from the data, with no tracking imports.

Kept apart from :mod:`forecast.runs.train` so that a benchmark or a device script can build
exactly the net and task a run would, where MLflow is not installed.
"""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any

import torch

from forecast.data.spec import DataSpec
from forecast.errors import ConfigError
from forecast.evaluation.errors import latitude_weights


def _net_kwargs(partial: Any, spec: DataSpec) -> dict[str, Any]:
    """DataSpec fields the net's constructor asks for (a net takes only what it needs)."""
    params = inspect.signature(partial.func).parameters
    return {f.name: getattr(spec, f.name) for f in fields(spec) if f.name in params}


def build_net(
    partial: Any, spec: DataSpec, dm: Any, key: str = "model.net"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The net of a config partial, and the DataSpec fields it was built with.

    A net class with a ``fit_baseline(series, spec, **options)`` classmethod (a fitted baseline
    such as climatology) is fitted on the data module's training split instead of constructed;
    the data module is set up first (its normaliser is fitted on the training split there).
    ``key`` names the partial's config key in the error raised when it does not fit the data.
    """
    kwargs = _net_kwargs(partial, spec)
    fit = getattr(partial.func, "fit_baseline", None)
    if fit is None:
        try:
            return partial(**kwargs), kwargs
        except ValueError as e:  # arguments that do not fit the data (e.g. a patch vs the grid)
            raise ConfigError(f"{key}: {e}") from e
    dm.setup("fit")
    return fit(dm.target_series(), spec, **partial.keywords), kwargs


def metric_options(dm: Any, spec: DataSpec) -> dict[str, Any]:
    """Latitude weights and physical-unit scales for the task's metrics (fitted normaliser)."""
    dm.setup("fit")  # fits the normaliser on the training split (Lightning's call is then a no-op)
    norm = getattr(dm, "normalizer", None)
    targets = list(spec.targets or spec.variables)
    scale = None
    if norm is not None and targets and set(targets) <= set(norm.variables):
        scale = list(norm.subset(targets).scale)
    weights = latitude_weights(spec.lat).tolist() if spec.lat else None
    return {"lat_weights": weights, "target_scale": scale, "target_names": targets}
