"""Rolling-origin backtest: forecast from several origins in the held-out range, score them all.

An origin ``t0`` is the first forecast step: a model reads the ``context`` steps before ``t0``
and is scored on the ``horizon`` steps from ``t0``. Two models are compared on the same origins,
so one lucky window cannot decide a promotion. Windows come from the offline adapter
(:mod:`forecast.data.offline`); errors are accumulated by the training metrics' own
:class:`~forecast.evaluation.errors.LeadErrors`, so ``rmse`` means the same offline and in training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from forecast.data.offline import Frames, origin_windows, target_std
from forecast.errors import DataError
from forecast.evaluation.errors import LeadErrors

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class BacktestResult:
    """Scores of one model over all origins.

    Args:
        score: RMSE over origins, leads, variables and space, each variable divided by its
            standard deviation over the scored targets (so units do not mix).
        rmse_per_lead: the same per lead time, shape (horizon,).
        rmse_per_origin: the same per origin, shape (n_origins,).
        origins: the origins used, shape (n_origins,).
    """

    score: float
    rmse_per_lead: np.ndarray
    rmse_per_origin: np.ndarray
    origins: np.ndarray

    def to_dataset(self) -> xr.Dataset:
        """The scores as an ``xr.Dataset`` with ``lead`` (1..horizon) and ``origin`` dims."""
        leads = np.arange(1, len(self.rmse_per_lead) + 1)
        return xr.Dataset(
            {
                "rmse": ((), self.score),
                "rmse_per_lead": (("lead",), self.rmse_per_lead),
                "rmse_per_origin": (("origin",), self.rmse_per_origin),
            },
            coords={"lead": leads, "origin": self.origins},
        )


def rolling_origins(
    bounds: tuple[int, int], context: int, horizon: int, n_origins: int, step: int = 1
) -> np.ndarray:
    """``n_origins`` evenly spaced origins whose targets fall inside ``bounds``.

    Args:
        bounds: held-out ``(start, stop)`` on the time axis.
        context: the longest context any compared model reads (origins leave room for it).
        horizon: forecast steps scored.
        n_origins: how many origins (fewer when the range is short).
        step: rows between consecutive steps of a window.

    Returns:
        Sorted unique int64 origins.
    """
    if n_origins < 1:
        raise DataError(f"backtest needs n_origins >= 1, got {n_origins}")
    lo, hi = bounds
    first, last = max(lo, step * context), hi - step * (horizon - 1) - 1
    if last < first:
        raise DataError(
            f"held-out range {bounds} is too short for a backtest with context {context} "
            f"and horizon {horizon}"
        )
    return np.unique(np.linspace(first, last, n_origins).round().astype(np.int64))


def _rmse(errors: LeadErrors) -> tuple[float, np.ndarray]:
    out = errors.compute()
    per_lead = [float(out[f"rmse_lead{k + 1}"]) for k in range(errors.horizon)]
    return float(out["rmse"]), np.asarray(per_lead)


def backtest(
    predict: Predict,
    values: Frames,
    origins: np.ndarray,
    context: int,
    horizon: int,
    channel_axis: int,
    max_batch: int = 32,
    truth: Frames | None = None,
    skip_incomplete: bool = True,
    step: int = 1,
) -> BacktestResult:
    """Forecast from every origin with ``predict`` and score against ``values``.

    Args:
        predict: raw ``(B, context, ...)`` -> raw ``(B, >= horizon, ...)``, e.g. a pyfunc's.
        values: raw frames ``(T, ...)`` with the sample layout after the time axis, e.g.
            ``(T, C, H, W)`` or ``(T, S, F)``: an array or lazy frames (only windows are read).
        origins: forecast origins (see :func:`rolling_origins`).
        context: steps the model reads.
        horizon: steps scored (the first ``horizon`` of the model's output).
        channel_axis: axis of a frame array that holds the variables.
        max_batch: origins per ``predict`` call.
        truth: raw target frames when the model forecasts other variables than it reads
            (default: ``values``).
        skip_incomplete: skip origins whose context holds a NaN (for a ``predict`` that refuses
            missing inputs); False hands them to ``predict``.
        step: rows between consecutive steps of a window.

    Returns:
        The :class:`BacktestResult`. NaN targets are ignored; a NaN forecast of an observed
        target makes the score NaN (it cannot win a promotion).
    """
    origins = np.asarray(origins, dtype=np.int64)
    if origins.min() < step * context or origins.max() + step * (horizon - 1) >= len(values):
        raise DataError(
            f"origins {origins.min()}..{origins.max()} need context {context} and horizon "
            f"{horizon} inside the {len(values)} time steps"
        )
    if skip_incomplete:
        complete = [
            bool(np.isfinite(values[slice(t - step * context, t, step)]).all()) for t in origins
        ]
        origins = origins[np.asarray(complete, dtype=bool)]
    if len(origins) == 0:
        raise DataError("every backtest origin has a missing value (NaN) in its context")
    target = values if truth is None else truth
    std = target_std(target, origins, horizon, channel_axis, step)[None]  # (1, 1, ...)
    # one process scores alone (rank 0 after a DDP fit): the sums are never gathered across ranks
    total = LeadErrors(horizon, 1, sync_on_compute=False)
    per_origin = [LeadErrors(horizon, 1, sync_on_compute=False) for _ in origins]
    for i in range(0, len(origins), max_batch):
        chunk = origins[i : i + max_batch]
        x, y = origin_windows(values, chunk, context, horizon, truth, step)
        pred = np.asarray(predict(x))[:, :horizon]
        if pred.shape != y.shape:
            raise DataError(f"forecast shape {pred.shape} does not match truth {y.shape}")
        p, t = torch.from_numpy(pred / std), torch.from_numpy(y / std)
        total.update(p, t)
        for j in range(len(chunk)):
            per_origin[i + j].update(p[j : j + 1], t[j : j + 1])
    score, per_lead = _rmse(total)
    return BacktestResult(
        score=score,
        rmse_per_lead=per_lead,
        rmse_per_origin=np.asarray([_rmse(m)[0] for m in per_origin]),
        origins=origins,
    )
