"""LightningDataModules: thin wrappers that build datasets from a source, one loader helper."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import lightning.pytorch as L
import numpy as np
import xarray as xr
from torch.utils.data import DataLoader

from forecast.data.datasets import GridWindows
from forecast.data.normalize import Normalizer
from forecast.data.sources import fingerprint
from forecast.data.spec import DataSpec
from forecast.data.windows import split_bounds, window_starts
from forecast.errors import DataError

GRID_DIMS = ("time", "lat", "lon")


class Source(Protocol):
    """Anything that opens an ``xr.Dataset`` in the project schema."""

    path: str

    def open(self) -> xr.Dataset: ...


class GridDataModule(L.LightningDataModule):
    """Gridded fields ``(time, lat, lon)`` to windows ``x: (B, T, C, H, W)``, ``y: (B, T_out, ..)``.

    Args:
        source: where the data come from (:mod:`forecast.data.sources`).
        variables: data variables used as channels, in order.
        context: input steps.
        horizon: forecast steps.
        splits: chronological (train, val, test) fractions.
        stride: steps between training windows.
        batch_size: windows per batch.
        num_workers: loader worker processes.
        normalization: ``"zscore"`` or ``"minmax"``, fitted on the training split.
    """

    def __init__(
        self,
        source: Source,
        variables: list[str],
        context: int,
        horizon: int,
        splits: Sequence[float] = (0.7, 0.15, 0.15),
        stride: int = 1,
        batch_size: int = 16,
        num_workers: int = 0,
        normalization: str = "zscore",
    ) -> None:
        super().__init__()
        self.source = source
        self.variables = list(variables)
        self.context = context
        self.horizon = horizon
        self.splits = tuple(splits)
        self.stride = stride
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.normalization = normalization
        self._ds: xr.Dataset | None = None
        self.normalizer: Normalizer | None = None
        self.datasets: dict[str, GridWindows] = {}

    @property
    def dataset(self) -> xr.Dataset:
        """The opened source, checked against the grid schema."""
        if self._ds is None:
            ds = self.source.open()
            missing = [v for v in self.variables if v not in ds.data_vars]
            if missing:
                raise DataError(
                    f"{self.source.path}: variables {missing} not found; "
                    f"available: {sorted(map(str, ds.data_vars))}"
                )
            for v in self.variables:
                if tuple(ds[v].dims) != GRID_DIMS:
                    raise DataError(
                        f"{self.source.path}: variable '{v}' has dims {tuple(ds[v].dims)}, "
                        f"expected {GRID_DIMS} (map names with the source's `rename`)"
                    )
            self._ds = ds[self.variables]
        return self._ds

    def describe(self) -> DataSpec:
        """Shapes for building the net, from metadata only."""
        ds = self.dataset
        return DataSpec(
            in_channels=len(self.variables),
            out_channels=len(self.variables),
            context=self.context,
            horizon=self.horizon,
            grid=(ds.sizes["lat"], ds.sizes["lon"]),
            variables=tuple(self.variables),
        )

    def fingerprint(self) -> str:
        """Data version: path plus a hash of coordinates and attributes."""
        return fingerprint(self.dataset, self.source.path)

    def bounds(self) -> dict[str, tuple[int, int]]:
        """Chronological split ranges on the time axis."""
        return split_bounds(self.dataset.sizes["time"], self.splits)

    def setup(self, stage: str | None = None) -> None:
        """Load the array, fit the normaliser on train, build the three window sets."""
        if self.datasets:
            return
        ds = self.dataset
        values = np.stack([ds[v].values for v in self.variables], axis=1).astype(np.float32)
        bounds = self.bounds()
        lo, hi = bounds["train"]
        self.normalizer = Normalizer.fit(values[lo:hi], self.variables, self.normalization)
        values = self.normalizer.transform(values).astype(np.float32)
        for split, b in bounds.items():
            stride = self.stride if split == "train" else 1
            starts = window_starts(b, self.context, self.horizon, stride)
            if len(starts) == 0:
                raise DataError(
                    f"{self.source.path}: split '{split}' {b} has no window of "
                    f"context {self.context} + horizon {self.horizon}; use more data or"
                    " other splits"
                )
            self.datasets[split] = GridWindows(values, starts, self.context, self.horizon)

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training windows."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation windows in time order."""
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        """Held-out test windows in time order."""
        return self._loader("test")
