"""Rolling-origin backtest: forecast from several origins in the held-out range, score them all.

An origin ``t0`` is the first forecast step: a model reads ``values[t0 - context : t0]`` and is
scored on ``values[t0 : t0 + horizon]``. Two models are compared on the same origins, so one lucky
window cannot decide a promotion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from forecast.errors import DataError

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class BacktestResult:
    """Scores of one model over all origins.

    Args:
        score: RMSE over origins, leads, variables and space, each variable divided by its
            standard deviation over the evaluated range (so units do not mix).
        rmse_per_lead: the same per lead time, shape (horizon,).
        rmse_per_origin: the same per origin, shape (n_origins,).
        origins: the origins used, shape (n_origins,).
    """

    score: float
    rmse_per_lead: np.ndarray
    rmse_per_origin: np.ndarray
    origins: np.ndarray


def rolling_origins(
    bounds: tuple[int, int], context: int, horizon: int, n_origins: int
) -> np.ndarray:
    """``n_origins`` evenly spaced origins whose targets fall inside ``bounds``.

    Args:
        bounds: held-out ``(start, stop)`` on the time axis.
        context: the longest context any compared model reads (origins leave room for it).
        horizon: forecast steps scored.
        n_origins: how many origins (fewer when the range is short).

    Returns:
        Sorted unique int64 origins.
    """
    if n_origins < 1:
        raise DataError(f"backtest needs n_origins >= 1, got {n_origins}")
    lo, hi = bounds
    first, last = max(lo, context), hi - horizon
    if last < first:
        raise DataError(
            f"held-out range {bounds} is too short for a backtest with context {context} "
            f"and horizon {horizon}"
        )
    return np.unique(np.linspace(first, last, n_origins).round().astype(np.int64))


def backtest(
    predict: Predict,
    values: np.ndarray,
    origins: np.ndarray,
    context: int,
    horizon: int,
    channel_axis: int,
    max_batch: int = 32,
    truth: np.ndarray | None = None,
    skip_incomplete: bool = True,
) -> BacktestResult:
    """Forecast from every origin with ``predict`` and score against ``values``.

    Args:
        predict: raw ``(B, context, ...)`` -> raw ``(B, >= horizon, ...)``, e.g. a pyfunc's.
        values: raw data ``(T, ...)`` with the sample layout after the time axis, e.g.
            ``(T, C, H, W)`` or ``(T, S, F)``.
        origins: forecast origins (see :func:`rolling_origins`).
        context: steps the model reads.
        horizon: steps scored (the first ``horizon`` of the model's output).
        channel_axis: axis of ``values`` that holds the variables.
        max_batch: origins per ``predict`` call.
        truth: raw target values ``(T, ...)`` when the model forecasts other variables than it
            reads (default: ``values``).
        skip_incomplete: skip origins whose context holds a NaN (for a ``predict`` that refuses
            missing inputs); False hands them to ``predict``.

    Returns:
        The :class:`BacktestResult`; NaN targets are ignored.
    """
    if origins.min() < context or origins.max() + horizon > len(values):
        raise DataError(
            f"origins {origins.min()}..{origins.max()} need context {context} and horizon "
            f"{horizon} inside the {len(values)} time steps"
        )
    if skip_incomplete:
        complete = [bool(np.isfinite(values[t - context : t]).all()) for t in origins]
        origins = origins[np.asarray(complete, dtype=bool)]
    if len(origins) == 0:
        raise DataError("every backtest origin has a missing value (NaN) in its context")
    target = values if truth is None else truth
    reduce = tuple(i for i in range(values.ndim) if i != channel_axis)
    span = target[origins.min() : origins.max() + horizon]
    std = np.nanstd(span, axis=reduce, keepdims=True)
    std = np.where(std > 0, std, 1.0)
    sq, count = [], []
    for i in range(0, len(origins), max_batch):
        chunk = origins[i : i + max_batch]
        x = np.stack([values[t - context : t] for t in chunk]).astype(np.float32)
        truth_k = np.stack([target[t : t + horizon] for t in chunk])
        pred = np.asarray(predict(x))[:, :horizon]
        if pred.shape != truth_k.shape:
            raise DataError(f"forecast shape {pred.shape} does not match truth {truth_k.shape}")
        err = ((pred - truth_k) / std[None]) ** 2  # (n, horizon, ...)
        valid = np.isfinite(err)
        axes = tuple(range(2, err.ndim))
        sq.append(np.where(valid, err, 0.0).sum(axis=axes))
        count.append(valid.sum(axis=axes))
    s, n = np.concatenate(sq), np.concatenate(count)  # (n_origins, horizon)
    return BacktestResult(
        score=float(np.sqrt(s.sum() / max(n.sum(), 1))),
        rmse_per_lead=np.sqrt(s.sum(0) / np.maximum(n.sum(0), 1)),
        rmse_per_origin=np.sqrt(s.sum(1) / np.maximum(n.sum(1), 1)),
        origins=origins,
    )
