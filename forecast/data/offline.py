"""Offline reads of a data module: held-out windows for backtests, the latest window to forecast.

The one adapter between a data module and the offline jobs (promotion, batch forecasts,
evaluation). A series module's store is read through the DataModules' own
:class:`~forecast.data.reader.FrameReader`, never loaded whole: only the rows of the windows
asked for are read (the decoded-chunk cache is bounded by an eighth of ``memory_budget_mb``, as
in training). Frames come in the sample layout the served model reads: ``(T, C, H, W)`` for grids,
``(T, S, F)`` for sensors, raw (physical units, NaN where missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import xarray as xr

from forecast.data.datamodule import GridDataModule
from forecast.data.protocols import is_series
from forecast.data.reader import FrameReader
from forecast.data.schema import SENSOR, spatial_dims
from forecast.data.sensor_datamodule import SensorDataModule
from forecast.errors import DataError

# held-out sequences scored when the data are independent sequences (Moving MNIST)
MAX_SEQUENCES = 64


class Frames(Protocol):
    """Raw frames on one time axis, ``(T, ...)`` in the sample layout; a NumPy array is one."""

    def __len__(self) -> int:
        """Number of time steps."""
        ...

    def __getitem__(self, rows: slice, /) -> np.ndarray:
        """The frames at time ``rows`` (a slice, possibly strided)."""
        ...


class StoreFrames:
    """A series module's store as :class:`Frames`, read on demand through a ``FrameReader``.

    Args:
        reader: reads ``(T, C, *space)`` (never in memory whole: built with a zero budget).
        grid: gridded (channels on axis 1) or sensor (features last) layout.
    """

    def __init__(self, reader: FrameReader, grid: bool) -> None:
        self.reader, self.grid = reader, grid
        self.channel_axis = 1 if grid else 2

    def __len__(self) -> int:
        return self.reader.n_times

    def __getitem__(self, rows: slice, /) -> np.ndarray:
        raw = self.reader.read(rows)  # (T, C, *space)
        return raw if self.grid else raw.transpose(0, 2, 1)  # sensors: (T, C, S) -> (T, S, F)


class SequenceFrames:
    """Held-out sequences of a non-series module laid end to end as :class:`Frames`.

    Each sequence is ``length`` frames (context + horizon); a read stays inside one sequence
    and builds only that one, in physical units (the module's normaliser inverted).
    """

    def __init__(self, dataset: Any, normalizer: Any, n: int, length: int) -> None:
        self.dataset, self.normalizer, self.n, self.length = dataset, normalizer, n, length
        self.channel_axis = 1

    def __len__(self) -> int:
        return self.n * self.length

    def __getitem__(self, rows: slice, /) -> np.ndarray:
        start, stop, step = rows.indices(len(self))
        i, lo = divmod(start, self.length)
        if stop - i * self.length > self.length:
            raise DataError(f"rows {start}:{stop} reach across two held-out sequences")
        item = self.dataset[i]
        seq = np.concatenate([item["x"].numpy(), item["y"].numpy()])
        raw = self.normalizer.inverse(seq[lo : stop - i * self.length : step], axis=1)
        return np.asarray(raw, dtype=np.float32)


def store_frames(dm: GridDataModule | SensorDataModule, variables: list[str]) -> StoreFrames:
    """``variables`` of a grid or sensor module's store (its crop and time range) as frames.

    Raises:
        DataError: when the store lacks one of ``variables``.
    """
    ds = dm.dataset  # validated, lazily opened: metadata only
    absent = [v for v in variables if v not in ds.data_vars]
    if absent:
        raise DataError(
            f"the store lacks the model's variables {absent} (it has "
            f"{sorted(map(str, ds.data_vars))}); point data.source.path at a store with them"
        )
    cache_mb = dm.memory_budget_mb / 8  # the share training gives its chunk cache
    if isinstance(dm, GridDataModule):
        space = spatial_dims(ds, variables[0], dm.source.path)
        reader = FrameReader(dm.source, variables, space, dm.crop, 0.0, cache_mb)
        return StoreFrames(reader, grid=True)
    dm.bounds()  # a paired module works out its common time range here
    reader = FrameReader(dm.source, variables, (SENSOR,), dm.crop or None, 0.0, cache_mb)
    return StoreFrames(reader, False)


def _series(dm: object) -> GridDataModule | SensorDataModule:
    if isinstance(dm, GridDataModule | SensorDataModule):
        return dm
    raise DataError(
        f"data: {type(dm).__name__} offers no store reader for offline windows (grid and "
        "sensor modules do)"
    )


@dataclass(frozen=True)
class HeldOut:
    """What a backtest of a data module reads.

    Args:
        values: input frames.
        truth: target frames when the targets are other variables than the inputs, else None.
        channel_axis: axis of a frame array holding the variables.
        bounds: the held-out ``(start, stop)`` range rolling origins are drawn from.
        origins: fixed origins (one per held-out sequence), or None for rolling origins.
        step: rows between consecutive steps of a window (the module's ``step``).
    """

    values: Frames
    truth: Frames | None
    channel_axis: int
    bounds: tuple[int, int]
    origins: np.ndarray | None = None
    step: int = 1


def held_out(dm: object) -> HeldOut:
    """The held-out frames of a data module, read lazily (see the module docstring).

    A module of independent sequences (Moving MNIST) gives up to :data:`MAX_SEQUENCES` of its
    test sequences end to end with one origin after each context, so no window reaches across
    two sequences.
    """
    if not is_series(dm):
        seqs: Any = dm
        seqs.setup("test")
        test = seqs.datasets["test"]
        n, length = min(len(test), MAX_SEQUENCES), seqs.context + seqs.horizon
        frames = SequenceFrames(test, seqs.normalizer, n, length)
        origins = np.arange(n, dtype=np.int64) * length + seqs.context
        return HeldOut(frames, None, 1, seqs.bounds()["test"], origins)
    series = _series(dm)
    values = store_frames(series, list(series.variables))
    targets = series.targets if isinstance(series, SensorDataModule) else series.variables
    truth = None if targets == list(series.variables) else store_frames(series, targets)
    return HeldOut(values, truth, values.channel_axis, series.bounds()["test"], step=series.step)


def origin_windows(
    values: Frames,
    origins: np.ndarray,
    context: int,
    horizon: int,
    truth: Frames | None = None,
    step: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Contexts ``(n, context, ...)`` before and targets ``(n, horizon, ...)`` from each origin.

    An origin is the first forecast row; ``truth`` (default ``values``) gives the targets.
    """
    target = values if truth is None else truth
    x = np.stack([values[slice(t - step * context, t, step)] for t in origins])
    y = np.stack([target[slice(t, t + step * horizon, step)] for t in origins])
    return x.astype(np.float32, copy=False), y.astype(np.float32, copy=False)


def target_std(
    frames: Frames, origins: np.ndarray, horizon: int, channel_axis: int, step: int = 1
) -> np.ndarray:
    """Per-variable standard deviation of the targets at ``origins`` (NaN ignored; 1 if none).

    Returns:
        Shaped like one frame with every axis but ``channel_axis`` of size 1, so it divides a
        ``(T, ...)`` frame array; one target window is read at a time.
    """
    if len(origins) == 0:
        raise DataError("no backtest origin to scale the targets by")
    sums: list[np.ndarray] = []  # count, sum and sum of squares of (value - shift)
    shift = np.zeros(())
    for k, t in enumerate(origins):
        y = np.asarray(frames[slice(t, t + step * horizon, step)], dtype=np.float64)
        axes = tuple(i for i in range(y.ndim) if i != channel_axis)
        ok = np.isfinite(y)
        if k == 0:  # shifted sums keep the variance exact far from zero (e.g. kelvin)
            seen = np.maximum(ok.sum(axes, keepdims=True), 1)
            shift = np.where(ok, y, 0.0).sum(axes, keepdims=True) / seen
        d = np.where(ok, y - shift, 0.0)
        part = [ok.sum(axes, keepdims=True), d.sum(axes, keepdims=True)]
        part.append((d * d).sum(axes, keepdims=True))
        sums = part if k == 0 else [a + b for a, b in zip(sums, part, strict=True)]
    count, total, squares = sums
    n = np.maximum(count, 1)
    std = np.sqrt(np.maximum(squares / n - (total / n) ** 2, 0.0))
    return np.where((std > 0) & (count > 0), std, 1.0).astype(np.float32)


@dataclass(frozen=True)
class LatestWindow:
    """The last ``context`` steps of a series module, to issue a batch forecast from.

    Args:
        x: ``(context, C, H, W)`` or ``(context, S, F)`` float32, physical units, NaN = missing.
        times: ``(context,)`` the steps' times.
        space: the space dims (``("lat", "lon")`` or ``("sensor",)``).
        coords: their coordinates (cropped), reused by the forecast file.
        attrs: attributes of every variable of the store (units, names).
    """

    x: np.ndarray
    times: np.ndarray
    space: tuple[str, ...]
    coords: dict[str, xr.DataArray]
    attrs: dict[str, dict[str, Any]]

    @property
    def grid(self) -> bool:
        """Gridded (True) or sensor (False) layout."""
        return self.space != (SENSOR,)


def latest_window(dm: object, variables: list[str], context: int) -> LatestWindow:
    """The last ``context`` steps (at the module's ``step``) of ``variables``; only they are read.

    Raises:
        DataError: for a module of independent sequences (no latest time), a store shorter than
            the context, or one that lacks a variable.
    """
    if not is_series(dm):
        raise DataError(
            f"data: {type(dm).__name__} holds independent sequences, not one series with a "
            "latest time, so there is no latest window to forecast from; serve the model "
            "(python -m pipelines.serve) and send it the context frames instead"
        )
    series = _series(dm)
    frames = store_frames(series, variables)
    n, span = len(frames), series.step * (context - 1) + 1
    if n < span:
        raise DataError(f"the store has {n} time steps, the model needs {span}")
    rows = slice(n - span, n, series.step)
    ds = series.dataset
    if isinstance(series, GridDataModule):
        space: tuple[str, ...] = spatial_dims(ds, variables[0], series.source.path)
    else:
        space = (SENSOR,)
    ds = ds.isel({d: slice(a, b) for d, (a, b) in series.crop.items()})
    return LatestWindow(
        x=frames[rows],
        times=ds["time"].values[rows],
        space=space,
        coords={d: ds[d] for d in space if d in ds.coords},
        attrs={str(v): dict(ds[v].attrs) for v in ds.data_vars},
    )


def forecast_dataset(
    y: np.ndarray, window: LatestWindow, targets: list[str], model: str
) -> xr.Dataset:
    """Wrap one forecast in CF coordinates.

    Args:
        y: ``(horizon, C_out, H, W)`` or ``(horizon, S, F_out)`` in physical units.
        window: the context window the forecast was issued from (its coords are reused).
        targets: output variable names.
        model: the model reference, recorded as an attribute.

    Returns:
        Dims ``(time, lead_time, lat, lon)`` or ``(time, lead_time, sensor)``, where ``time`` is
        the issue time (the last observed step) and ``valid_time = time + lead_time``.
    """
    times = pd.DatetimeIndex(window.times)
    if len(times) < 2:
        raise DataError("cannot infer the time step from a context of one step")
    step = times[-1] - times[-2]
    issue = times[-1]
    lead = pd.to_timedelta(np.arange(1, y.shape[0] + 1) * step)
    data = {}
    for i, name in enumerate(targets):
        field = y[:, i] if window.grid else y[..., i]
        attrs = window.attrs.get(name, {})
        data[name] = (("time", "lead_time", *window.space), field[None], attrs)
    coords: dict[str, Any] = dict(window.coords)
    coords["time"] = ("time", [issue], {"standard_name": "forecast_reference_time"})
    coords["lead_time"] = ("lead_time", lead, {"standard_name": "forecast_period"})
    coords["valid_time"] = (("time", "lead_time"), (issue + lead).values[None])
    ds = xr.Dataset(data, coords=coords)
    ds["valid_time"].attrs["standard_name"] = "time"
    ds.attrs.update({"Conventions": "CF-1.8", "source": model, "title": "forecast"})
    return ds
