"""A registered model's backtest: a loaded pyfunc on held-out frames, scored by the evaluation.

Composition only: windows come from :mod:`forecast.data.offline`, the scores from
:mod:`forecast.evaluation.backtest` (re-exported here for the runs that call them).
"""

from __future__ import annotations

import numpy as np
from mlflow.pyfunc import PyFuncModel

from forecast.data.offline import Frames, HeldOut
from forecast.evaluation.backtest import BacktestResult, backtest, rolling_origins

__all__ = ["BacktestResult", "backtest", "backtest_held_out", "backtest_model", "rolling_origins"]


def backtest_model(
    model: PyFuncModel,
    values: Frames,
    origins: np.ndarray,
    horizon: int,
    channel_axis: int,
    truth: Frames | None = None,
    step: int = 1,
) -> BacktestResult:
    """Backtest a loaded pyfunc on ``origins`` of raw ``values`` (see :func:`backtest`).

    Contexts with gaps are handed to the model, which fills them as in training.
    """
    ctx = int(model.unwrap_python_model().metadata["context"])

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(x, params={"allow_missing": True}))

    return backtest(
        predict, values, origins, ctx, horizon, channel_axis, truth=truth,
        skip_incomplete=False, step=step,
    )  # fmt: skip


def backtest_held_out(
    model: PyFuncModel, data: HeldOut, n_origins: int = 8, context: int | None = None
) -> BacktestResult:
    """Backtest a loaded pyfunc on a data module's held-out frames (:func:`held_out`).

    Args:
        model: the loaded pyfunc.
        data: the held-out frames, with fixed origins or a range for rolling ones.
        n_origins: rolling origins over ``data.bounds`` when it has no fixed origins.
        context: the context origins leave room for (default: the model's; pass the longest of
            several models to score them on the same origins).
    """
    meta = model.unwrap_python_model().metadata
    horizon = int(meta["horizon"])
    origins = data.origins
    if origins is None:
        ctx = int(meta["context"]) if context is None else context
        origins = rolling_origins(data.bounds, ctx, horizon, n_origins, data.step)
    return backtest_model(
        model, data.values, origins, horizon, data.channel_axis, data.truth, data.step
    )
