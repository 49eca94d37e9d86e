"""DataModules for sensor series ``(time, sensor)`` and for sensors paired with a gridded field."""

from __future__ import annotations

import numpy as np
import xarray as xr

from forecast.data.calendar import CALENDAR_FEATURES
from forecast.data.datasets import GridWindows, PairedWindows, SensorWindows
from forecast.data.normalize import Normalizer
from forecast.data.reader import FrameReader, Source
from forecast.data.schema import SENSOR, check_variables, spatial_dims
from forecast.data.sources import fingerprint
from forecast.data.spec import DataSpec, step_hours
from forecast.data.window_module import WindowDataModule
from forecast.data.windows import SPLITS, SplitSpec
from forecast.errors import DataError


class SensorDataModule(WindowDataModule):
    """Sensor series to windows ``x: (B, T, S, F)``, ``y: (B, T_out, S, F_out)`` with masks.

    Args:
        source: opens a dataset whose variables have dims ``("time", "sensor")``.
        variables: input features ``F``, in order.
        targets: forecast variables ``F_out`` (default: ``variables``); may include variables
            that are not inputs.
        context, horizon, splits, stride, step, batch_size, num_workers, pin_memory,
        normalization, max_missing, calendar, memory_budget_mb, seed: see
            :class:`~forecast.data.datamodule.WindowDataModule`.
    """

    def __init__(
        self,
        source: Source,
        variables: list[str],
        context: int,
        horizon: int,
        targets: list[str] | None = None,
        splits: SplitSpec = (0.7, 0.15, 0.15),
        stride: int = 1,
        step: int = 1,
        batch_size: int = 16,
        num_workers: int = 0,
        pin_memory: bool = False,
        normalization: str = "zscore",
        max_missing: float = 0.5,
        calendar: bool = False,
        memory_budget_mb: float = 1024.0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            context, horizon, splits, stride, step, batch_size, num_workers, pin_memory,
            normalization, max_missing, calendar, memory_budget_mb, seed,
        )  # fmt: skip
        self.source = source
        self.variables = list(variables)
        self.targets = list(targets) if targets else list(variables)
        # the reader reads inputs then any target that is not an input
        self.read_vars = self.variables + [t for t in self.targets if t not in self.variables]
        self._ds: xr.Dataset | None = None
        self._time_crop: tuple[int, int] | None = None

    @property
    def dataset(self) -> xr.Dataset:
        """The opened source, checked against the sensor schema."""
        if self._ds is None:
            self._ds = self._checked(self.source, self.read_vars, ("time", SENSOR))
        return self._ds

    @property
    def crop(self) -> dict[str, tuple[int, int]]:
        """Index ranges read of the store, as ``GridDataModule.crop``.

        ``{"time": (lo, hi)}`` once a paired module has found its common range (after
        :meth:`bounds`), else ``{}``.
        """
        return {"time": self._time_crop} if self._time_crop else {}

    def _coords(self) -> tuple[tuple[float, float], ...] | None:
        ds = self.dataset
        for a, b in (("lat", "lon"), ("y", "x")):
            if a in ds.coords and b in ds.coords and ds[a].dims == (SENSOR,):
                return tuple(
                    (float(p), float(q)) for p, q in zip(ds[a].values, ds[b].values, strict=True)
                )
        return None

    def describe(self) -> DataSpec:
        """Shapes for building the net, from metadata only."""
        return DataSpec(
            in_channels=len(self.variables),
            out_channels=len(self.targets),
            context=self.context,
            horizon=self.horizon,
            n_sensors=int(self.dataset.sizes[SENSOR]),
            variables=tuple(self.variables),
            targets=tuple(self.targets),
            calendar_features=len(CALENDAR_FEATURES) if self.calendar else 0,
            sensor_coords=self._coords(),
            step_hours=step_hours(self.dataset["time"].values, self.step),
        )

    def fingerprint(self) -> str:
        """Data version: path plus a hash of coordinates and attributes."""
        return fingerprint(self.dataset, self.source.path)

    def bounds(self) -> dict[str, tuple[int, int]]:
        """Chronological split ranges on the time axis."""
        return self._bounds(self._timed(self.dataset))

    def _timed(self, ds: xr.Dataset) -> xr.Dataset:
        if self._time_crop is None:
            return ds
        return ds.isel(time=slice(*self._time_crop))

    def _target_view(self) -> tuple[xr.Dataset, list[str], int]:
        """The (time-cropped) sensor table; targets stacked as features on axis 2."""
        _ = self.bounds()  # a paired module works out its common time range here
        return self._timed(self.dataset), self.targets, 2

    def _sensor_windows(self) -> tuple[dict[str, np.ndarray], dict[str, SensorWindows]]:
        reader = FrameReader(
            self.source, self.read_vars, (SENSOR,), self.crop or None, self.memory_budget_mb
        )
        bounds = self.bounds()
        scan, norm = self._fit(reader, bounds)
        # the target normaliser is what serving inverts forecasts with
        self.input_normalizer: Normalizer = norm
        self.normalizer = norm.subset(self.targets)
        targets = [self.read_vars.index(v) for v in self.targets]
        starts = self._starts(reader, scan.missing, bounds, targets)
        cal = self._calendar(self._timed(self.dataset), self.source.path)
        inputs = [self.read_vars.index(v) for v in self.variables]
        sets = {
            split: SensorWindows(
                reader,
                starts[split],
                self.context,
                self.horizon,
                norm,
                inputs,
                targets,
                self.step,
                cal,
            )  # fmt: skip
            for split in SPLITS
        }
        return starts, sets

    def setup(self, stage: str | None = None) -> None:
        """Fit the normaliser on train (one streamed pass) and build the three window sets."""
        if self.datasets:
            return
        _, sets = self._sensor_windows()
        self.datasets.update(sets)


class PairedDataModule(SensorDataModule):
    """Sensors plus a gridded field on one time axis (for hybrid nets).

    Batches are those of :class:`SensorDataModule` plus ``grid (B, T, C_g, H, W)`` and
    ``grid_mask``. Both stores are cut to their common time range; each sensor's nearest grid cell
    is reported in ``DataSpec.sensor_cells``. A window's missing fraction is judged on the sensors.

    Args:
        source: sensor source (needs ``lat``/``lon`` or ``y``/``x`` coordinates on ``sensor``).
        grid_source: gridded source on the same time step.
        grid_variables: gridded channels ``C_g``.
        variables, targets, context, horizon, ...: see :class:`SensorDataModule`.
        grid_normalization: normalisation of the grid channels (fitted on train only).
    """

    def __init__(
        self,
        source: Source,
        grid_source: Source,
        grid_variables: list[str],
        variables: list[str],
        context: int,
        horizon: int,
        targets: list[str] | None = None,
        splits: SplitSpec = (0.7, 0.15, 0.15),
        stride: int = 1,
        step: int = 1,
        batch_size: int = 16,
        num_workers: int = 0,
        pin_memory: bool = False,
        normalization: str = "zscore",
        grid_normalization: str = "zscore",
        max_missing: float = 0.5,
        calendar: bool = False,
        memory_budget_mb: float = 1024.0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            source, variables, context, horizon, targets, splits, stride, step, batch_size,
            num_workers, pin_memory, normalization, max_missing, calendar, memory_budget_mb, seed,
        )  # fmt: skip
        self.grid_source = grid_source
        self.grid_variables = list(grid_variables)
        self.grid_normalization = grid_normalization
        self.grid_normalizer: Normalizer | None = None
        self._grid_ds: xr.Dataset | None = None

    @property
    def grid_dataset(self) -> xr.Dataset:
        """The opened grid, checked, with the common time range worked out."""
        if self._grid_ds is None:
            ds = self.grid_source.open()
            check_variables(ds, self.grid_variables, None, self.grid_source.path)
            self._space = spatial_dims(ds, self.grid_variables[0], self.grid_source.path)
            self._grid_ds = self._checked(
                self.grid_source, self.grid_variables, ("time", *self._space), ds
            )
            self._align(self._grid_ds)
        return self._grid_ds

    def _align(self, grid: xr.Dataset) -> None:
        ts, tg = self.dataset["time"].values, grid["time"].values
        lo, hi = max(ts[0], tg[0]), min(ts[-1], tg[-1])
        s0, s1 = np.searchsorted(ts, lo), np.searchsorted(ts, hi, "right")
        g0, g1 = np.searchsorted(tg, lo), np.searchsorted(tg, hi, "right")
        if s1 - s0 != g1 - g0 or not np.array_equal(ts[s0:s1], tg[g0:g1]):
            raise DataError(
                f"{self.source.path} and {self.grid_source.path}: sensor and grid time axes do "
                f"not coincide on their common range [{lo}, {hi}]; resample both onto one step"
            )
        if s1 - s0 < self.window_length:
            raise DataError(
                f"{self.source.path} and {self.grid_source.path}: they overlap on {s1 - s0} "
                f"time steps, fewer than one window ({self.window_length})"
            )
        self._time_crop = (int(s0), int(s1))
        self._grid_crop = (int(g0), int(g1))

    def _cells(self) -> tuple[tuple[int, int], ...]:
        coords, grid = self._coords(), self.grid_dataset
        if coords is None:
            raise DataError(
                f"{self.source.path}: paired data need sensor coordinates ('lat'/'lon' or 'y'/'x' "
                "on the 'sensor' dim); add them to the sensor table"
            )
        a, b = (grid[d].values for d in self._space)
        return tuple((int(np.abs(a - p).argmin()), int(np.abs(b - q).argmin())) for p, q in coords)

    def describe(self) -> DataSpec:
        """Sensor shapes plus the grid's channels, size and each sensor's cell."""
        grid = self.grid_dataset
        base = super().describe()
        return DataSpec(
            **{
                **base.__dict__,
                "grid": (int(grid.sizes[self._space[0]]), int(grid.sizes[self._space[1]])),
                "grid_channels": len(self.grid_variables),
                "sensor_cells": self._cells(),
            }
        )

    def bounds(self) -> dict[str, tuple[int, int]]:
        """Split ranges on the common time axis of sensors and grid."""
        _ = self.grid_dataset  # works out the common range first
        return super().bounds()

    def fingerprint(self) -> str:
        """Data version of both stores."""
        return (
            fingerprint(self.dataset, self.source.path)[:8]
            + fingerprint(self.grid_dataset, self.grid_source.path)[:8]
        )

    def setup(self, stage: str | None = None) -> None:
        """Sensor windows as in the parent, plus grid windows on the same starts."""
        if self.datasets:
            return
        _ = self.grid_dataset  # sets the common time range
        starts, sets = self._sensor_windows()
        reader = FrameReader(
            self.grid_source, self.grid_variables, self._space, {"time": self._grid_crop},
            self.memory_budget_mb,
        )  # fmt: skip
        scan = reader.scan(self.bounds()["train"])
        self.grid_normalizer = Normalizer.from_stats(
            self.grid_variables, self.grid_normalization, scan.mean, scan.std, scan.vmin, scan.vmax
        )
        for split in SPLITS:
            grid = GridWindows(
                reader, starts[split], self.context, self.horizon, self.grid_normalizer, self.step
            )
            self.datasets[split] = PairedWindows(sets[split], grid)
