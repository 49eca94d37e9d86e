"""LightningDataModule for gridded fields (the sensor and paired ones: ``sensor_datamodule.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import xarray as xr

from forecast.data.calendar import CALENDAR_FEATURES
from forecast.data.datasets import GridWindows
from forecast.data.reader import FrameReader, Source
from forecast.data.schema import check_variables, spatial_dims
from forecast.data.sources import fingerprint
from forecast.data.spec import DataSpec, step_hours
from forecast.data.window_module import WindowDataModule
from forecast.data.windows import SPLITS, SplitSpec, patch_origins
from forecast.errors import DataError

__all__ = ["GridDataModule", "WindowDataModule"]


class GridDataModule(WindowDataModule):
    """Gridded fields ``(time, lat, lon)`` to windows ``x: (B, T, C, H, W)``, ``y: (B, T_out, ..)``.

    Args:
        source: where the data come from (:mod:`forecast.data.sources`).
        variables: data variables used as channels, in order.
        crop: optional index ranges per spatial dim, e.g. ``{lat: [0, 16]}``.
        patch: optional ``[h, w]`` patches tiling the (cropped) grid; every patch is a sample.
        patch_stride: ``[sh, sw]`` between patches (default: the patch size).
        **common: the arguments of :class:`WindowDataModule` (context, horizon, splits, ...).
    """

    def __init__(
        self,
        source: Source,
        variables: list[str],
        context: int,
        horizon: int,
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
        crop: dict[str, Sequence[int]] | None = None,
        patch: Sequence[int] | None = None,
        patch_stride: Sequence[int] | None = None,
    ) -> None:
        super().__init__(
            context, horizon, splits, stride, step, batch_size, num_workers, pin_memory,
            normalization, max_missing, calendar, memory_budget_mb, seed,
        )  # fmt: skip
        self.source = source
        self.variables = list(variables)
        self.crop = {k: (int(v[0]), int(v[1])) for k, v in (crop or {}).items()}
        self.patch = (int(patch[0]), int(patch[1])) if patch else None
        self.patch_stride = tuple(int(s) for s in patch_stride) if patch_stride else None
        self._ds: xr.Dataset | None = None

    @property
    def dataset(self) -> xr.Dataset:
        """The opened source, checked against the grid schema (lazy: metadata only)."""
        if self._ds is None:
            ds = self.source.open()
            check_variables(ds, self.variables, None, self.source.path)
            dims = {spatial_dims(ds, v, self.source.path) for v in self.variables}
            if len(dims) > 1:
                raise DataError(f"{self.source.path}: variables mix spatial dims {sorted(dims)}")
            self._space = dims.pop()
            self._ds = self._checked(self.source, self.variables, ("time", *self._space), ds)
        return self._ds

    def _grid(self) -> tuple[int, int]:
        ds = self.dataset
        hw = [self.crop.get(d, (0, int(ds.sizes[d]))) for d in self._space]
        return (hw[0][1] - hw[0][0], hw[1][1] - hw[1][0])

    def _target_view(self) -> tuple[xr.Dataset, list[str], int]:
        """The cropped grid; every variable is a target, channels on axis 1."""
        ds = self.dataset.isel({d: slice(a, b) for d, (a, b) in self.crop.items()})
        return ds, self.variables, 1

    def describe(self) -> DataSpec:
        """Shapes for building the net, from metadata only."""
        return DataSpec(
            in_channels=len(self.variables),
            out_channels=len(self.variables),
            context=self.context,
            horizon=self.horizon,
            grid=self.patch or self._grid(),
            variables=tuple(self.variables),
            targets=tuple(self.variables),
            calendar_features=len(CALENDAR_FEATURES) if self.calendar else 0,
            full_grid=self._grid() if self.patch else None,
            lat=None if self.patch else self._latitudes(),
            step_hours=step_hours(self.dataset["time"].values, self.step),
        )

    def _latitudes(self) -> tuple[float, ...] | None:
        """Latitude of each (cropped) grid row, when the rows are latitudes."""
        ds, _, _ = self._target_view()
        if self._space[0] != "lat" or "lat" not in ds.coords:
            return None
        return tuple(float(v) for v in ds["lat"].values)

    def fingerprint(self) -> str:
        """Data version: path plus a hash of coordinates and attributes."""
        return fingerprint(self.dataset, self.source.path)

    def bounds(self) -> dict[str, tuple[int, int]]:
        """Chronological split ranges on the time axis."""
        return self._bounds(self.dataset)

    def setup(self, stage: str | None = None) -> None:
        """Fit the normaliser on train (one streamed pass) and build the three window sets."""
        if self.datasets:
            return
        ds = self.dataset
        reader = FrameReader(
            self.source, self.variables, self._space, self.crop, self.memory_budget_mb
        )
        bounds = self.bounds()
        scan, self.normalizer = self._fit(reader, bounds)
        self.input_normalizer = self.normalizer
        starts = self._starts(reader, scan.missing, bounds)
        origins = patch_origins(self._grid(), self.patch, self.patch_stride)
        cal = self._calendar(ds, self.source.path)
        for split in SPLITS:
            self.datasets[split] = GridWindows(
                reader, starts[split], self.context, self.horizon, self.normalizer, self.step,
                origins, self.patch, cal,
            )  # fmt: skip
