"""Reference forecasts every model is judged against, usable as nets (no parameters)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from forecast.models.targets import target_positions

if TYPE_CHECKING:  # only for annotations: the nets do not depend on the data layer at runtime
    from forecast.data.spec import DataSpec
    from forecast.data.window_module import TargetSeries


def persistence(x: Tensor, horizon: int) -> Tensor:
    """The last input step repeated.  x: (B, T, C, ...) -> (B, horizon, C, ...)."""
    return x[:, -1:].expand(-1, horizon, *x.shape[2:])


def seasonal_naive(x: Tensor, horizon: int, period: int) -> Tensor:
    """The value one period earlier.  x: (B, T, ...) -> (B, horizon, ...); needs period <= T.

    Lead k (from 0) takes ``x[T - period + (k mod period)]``.
    """
    t = x.shape[1]
    if not 0 < period <= t:
        raise ValueError(f"seasonal naive: period {period} must be in [1, context {t}]")
    idx = torch.tensor([t - period + (k % period) for k in range(horizon)], device=x.device)
    return x.index_select(1, idx)


class Persistence(nn.Module):
    """Persistence as a net.  x: (B, T, ...) -> (B, horizon, ...).

    Args:
        horizon: forecast steps.
        grid: (H, W) for gridded data (adds image metrics in the task).
    """

    def __init__(self, horizon: int, grid: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.horizon, self.gridded = horizon, grid is not None

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, ...) -> (B, horizon, ...)."""
        return persistence(x, self.horizon).clone()


def season_steps(period_hours: float | None, step_hours: float | None) -> int:
    """A season given in hours as a whole number of the data's steps."""
    if period_hours is None or not step_hours:
        raise ValueError(
            "seasonal naive: give period (steps), or period_hours on data with a regular time "
            f"step (got period_hours {period_hours}, step_hours {step_hours})"
        )
    steps = period_hours / step_hours
    if abs(steps - round(steps)) > 1e-6 or round(steps) < 1:
        raise ValueError(
            f"seasonal naive: period_hours {period_hours} is not a whole number of "
            f"{step_hours} h steps"
        )
    return round(steps)


class SeasonalNaive(nn.Module):
    """Seasonal naive as a net.  x: (B, T, ...) -> (B, horizon, ...).

    Sensor targets may be a subset of the inputs (Beijing: PM2.5 of 11 variables); the
    forecast then holds the target features only, as the task's persistence does.

    Args:
        horizon: forecast steps.
        period: season length in steps (e.g. 4 for a daily cycle at 6-hourly steps); or None
            with ``period_hours``.
        context: T, to refuse a period longer than the context at build time.
        grid: (H, W) for gridded data.
        variables: input names (sensor data: to find the targets among the features).
        targets: target names; empty or equal to ``variables``: every input is a target.
        period_hours: the season in hours (24: a day), turned into steps with ``step_hours``,
            so one config serves hourly and 15-minute files alike.
        step_hours: hours between steps (the run passes the data's).
    """

    target_index: Tensor  # a buffer, declared for the type checker

    def __init__(
        self,
        horizon: int,
        period: int | None = None,
        context: int = 0,
        grid: tuple[int, int] | None = None,
        variables: Sequence[str] = (),
        targets: Sequence[str] = (),
        period_hours: float | None = None,
        step_hours: float | None = None,
    ) -> None:
        super().__init__()
        if period is None:
            period = season_steps(period_hours, step_hours)
        if not 0 < period <= context:
            raise ValueError(f"period: expected 1 <= period <= context {context}, got {period}")
        self.horizon, self.period, self.gridded = horizon, period, grid is not None
        index = target_positions(variables, targets)
        if index is None:
            absent = [t for t in targets if t not in variables]
            raise ValueError(f"targets {absent} are not among the inputs {list(variables)}")
        # empty: the inputs are the targets (also read by the task's persistence)
        self.register_buffer(
            "target_index", torch.tensor(index, dtype=torch.long), persistent=False
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, ..., F) -> (B, horizon, ..., F_out) (features last for sensor data)."""
        if self.target_index.numel():
            x = x.index_select(-1, self.target_index)
        return seasonal_naive(x, self.horizon, self.period)


def climatology_keys(times: np.ndarray, by_day_of_year: bool) -> np.ndarray:
    """Group key per time: day of year (0..365) or month x hour of day (0..287)."""
    t = pd.DatetimeIndex(times)
    if by_day_of_year:
        return (t.dayofyear.to_numpy() - 1).astype(np.int64)
    return ((t.month.to_numpy() - 1) * 24 + t.hour.to_numpy()).astype(np.int64)


class Climatology(nn.Module):
    """Mean of the training split by calendar key, looked up for each target time.

    The key is month x hour of day, or day of year when the training split spans more than a
    year. Keys never seen in training fall back to the training mean. ``forward`` needs the
    batch's ``start`` (window start row) to know the target times.

    Args:
        table: (n_keys, ...) mean per key.
        keys: (N,) key of every row of the store's time axis.
        context: input steps.
        horizon: forecast steps.
        step: rows between consecutive steps of a window.
    """

    table: Tensor  # buffers, declared for the type checker
    keys: Tensor
    target_index: Tensor

    def __init__(
        self, table: Tensor, keys: Tensor, context: int, horizon: int, step: int = 1
    ) -> None:
        super().__init__()
        self.register_buffer("table", table)
        self.register_buffer("keys", keys.long())
        # where each target sits among the inputs, for the task's persistence reference
        # (sensor targets may be a subset of the inputs); empty = the inputs are the targets
        self.register_buffer("target_index", torch.zeros(0, dtype=torch.long), persistent=False)
        self.context, self.horizon, self.step = context, horizon, step

    @classmethod
    def fit(
        cls,
        values: np.ndarray,
        times: np.ndarray,
        train: tuple[int, int],
        context: int,
        horizon: int,
        step: int = 1,
    ) -> Climatology:
        """Build from the whole (normalised) series ``values (N, ...)`` and ``times (N,)``.

        Args:
            values: every row of the store, in the units the model predicts; NaN = missing.
            times: datetime64 per row.
            train: ``(lo, hi)`` rows of the training split; only they enter the means.
            context: input steps.
            horizon: forecast steps.
            step: rows between window steps.
        """
        if len(values) != len(times):
            raise ValueError(f"climatology: {len(values)} rows of values but {len(times)} times")
        lo, hi = train
        span = pd.Timestamp(times[hi - 1]) - pd.Timestamp(times[lo])
        by_doy = span > pd.Timedelta(days=366)
        keys = climatology_keys(times, by_doy)
        n_keys = 366 if by_doy else 12 * 24
        v = np.asarray(values[lo:hi], dtype=np.float64)
        ok = np.isfinite(v)
        sums = np.zeros((n_keys, *v.shape[1:]))
        counts = np.zeros_like(sums)
        np.add.at(sums, keys[lo:hi], np.where(ok, v, 0.0))
        np.add.at(counts, keys[lo:hi], ok)
        overall = np.where(ok, v, 0.0).sum(0) / np.maximum(ok.sum(0), 1)
        table = np.where(counts > 0, sums / np.maximum(counts, 1), overall)
        return cls(
            torch.from_numpy(table.astype(np.float32)),
            torch.from_numpy(keys),
            context,
            horizon,
            step,
        )

    @classmethod
    def fit_baseline(cls, series: TargetSeries, spec: DataSpec) -> Climatology:
        """The run's hook: fit on the training rows of the data module's target series.

        Args:
            series: normalised targets ``(N, ...)``, times, training rows and window step.
            spec: the run's shapes (context and horizon are taken from it).
        """
        # targets sit on axis 1 of a grid (N, C, H, W), last on sensors (N, S, F_out)
        gridded = spec.grid is not None and spec.n_sensors is None
        n_targets = series.values.shape[1 if gridded else -1]
        if n_targets != spec.out_channels:
            raise ValueError(
                f"climatology: the spec expects {spec.out_channels} target variables, the "
                f"series {series.values.shape} holds {n_targets}"
            )
        net = cls.fit(
            series.values, series.times, series.train, spec.context, spec.horizon, series.step
        )
        inputs, targets = list(spec.variables), list(spec.targets)
        if targets != inputs and all(t in inputs for t in targets):
            net.target_index = torch.tensor([inputs.index(t) for t in targets], dtype=torch.long)
        return net

    def forward(self, x: Tensor, start: Tensor) -> Tensor:
        """x: (B, T, ...), start: (B,) window start rows -> (B, horizon, ...)."""
        offsets = torch.arange(self.horizon, device=x.device) + self.context
        rows = start.long()[:, None] + self.step * offsets  # (B, horizon)
        if int(rows.max()) >= len(self.keys):
            raise ValueError(
                f"climatology: target row {int(rows.max())} is past the {len(self.keys)} rows "
                "it was fitted on"
            )
        return self.table[self.keys[rows]].to(x.dtype)
