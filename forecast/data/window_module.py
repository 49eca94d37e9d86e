"""The shared part of the windowed DataModules: splits, window filtering, normaliser, loaders.

Under DDP, Lightning swaps each loader's sampler for a ``DistributedSampler`` (the Trainer's default
``use_distributed_sampler=True``), so every rank reads only its own shard of window indices; with
lazy reading that also means each rank reads only its own windows from disk. Validation and test
shards are unpadded (:mod:`forecast.data.sharding`), so no window is scored twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as L
import torch
import xarray as xr
from torch.utils.data import DataLoader, Dataset

from forecast.data.calendar import calendar_features
from forecast.data.datasets import collate_windows
from forecast.data.normalize import Normalizer
from forecast.data.reader import FrameReader, Source
from forecast.data.schema import check_length, validate
from forecast.data.sharding import evaluation_sampler
from forecast.data.windows import SPLITS, SplitSpec, resolve_splits, window_missing, window_starts
from forecast.errors import DataError
from forecast.training.threads import one_thread_worker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetSeries:
    """The normalised targets of every row, for baselines fitted on the training split.

    Args:
        values: ``(N, C, H, W)`` gridded or ``(N, S, F_out)`` sensor targets, in the units the
            nets predict (normalised); NaN = missing.
        times: ``(N,)`` datetime64, the row times (the rows a batch's ``start`` counts).
        train: ``(lo, hi)`` rows of the training split.
        step: rows between consecutive steps of a window.
    """

    values: np.ndarray
    times: np.ndarray
    train: tuple[int, int]
    step: int


class WindowDataModule(L.LightningDataModule):
    """Shared plumbing: splits, window filtering by missing fraction, normaliser, loaders.

    Args:
        context: input steps.
        horizon: forecast steps.
        splits: three fractions, or ``{split: [start, stop]}`` rows or dates
            (see :func:`forecast.data.windows.resolve_splits`).
        stride: steps between training windows (val/test always use 1).
        step: spacing of the time steps inside a window.
        batch_size: windows per batch.
        num_workers: loader worker processes.
        pin_memory: pin host memory for faster GPU copies.
        normalization: ``"zscore"`` or ``"minmax"``, fitted on the training split only.
        max_missing: windows missing a larger fraction of values are skipped and counted.
        calendar: add hour/day-of-year sin/cos covariates to every batch.
        memory_budget_mb: load a store whole only when it fits; else read windows lazily.
        seed: seeds the training loader's shuffling.
    """

    def __init__(
        self,
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
    ) -> None:
        super().__init__()
        if not 0.0 <= max_missing <= 1.0:
            raise DataError(f"max_missing must be in [0, 1], got {max_missing}")
        if normalization not in ("zscore", "minmax"):
            raise DataError(f"normalization must be 'zscore' or 'minmax', got '{normalization}'")
        self.context, self.horizon = int(context), int(horizon)
        self.splits = splits
        self.stride, self.step = int(stride), int(step)
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.normalization = normalization
        self.max_missing = float(max_missing)
        self.calendar = bool(calendar)
        self.memory_budget_mb = float(memory_budget_mb)
        self.seed = int(seed)
        self.normalizer: Normalizer | None = None
        self.datasets: dict[str, Dataset[dict[str, torch.Tensor]]] = {}
        self.skipped: dict[str, int] = {}

    @property
    def window_length(self) -> int:
        """Time rows one window spans, first context step to last target."""
        return self.step * (self.context + self.horizon - 1) + 1

    def _checked(
        self,
        source: Source,
        variables: list[str],
        dims: tuple[str, ...] | None,
        ds: xr.Dataset | None = None,
    ) -> xr.Dataset:
        ds = validate(source.open() if ds is None else ds, variables, dims, source.path)
        check_length(int(ds.sizes["time"]), self.window_length, source.path, variables[0])
        return ds

    def _bounds(self, ds: xr.Dataset) -> dict[str, tuple[int, int]]:
        return resolve_splits(ds["time"].values, self.splits)

    def _calendar(self, ds: xr.Dataset, path: str) -> np.ndarray | None:
        return calendar_features(ds["time"].values, path) if self.calendar else None

    def _starts(
        self,
        reader: FrameReader,
        missing: np.ndarray,
        bounds: dict[str, tuple[int, int]],
        targets: list[int] | None = None,
    ) -> dict[str, np.ndarray]:
        """Window starts per split, without windows that are too sparse to use.

        A window is skipped (and counted in ``self.skipped``) when it misses more than
        ``max_missing`` of its values, or when all its target values (channels ``targets``,
        default all) are missing: there would be nothing to score.
        """
        path, n_space = reader.source.path, int(np.prod(reader.space_shape, dtype=int))
        length = self.context + self.horizon
        out: dict[str, np.ndarray] = {}
        for split in SPLITS:
            stride = self.stride if split == "train" else 1
            starts = window_starts(bounds[split], self.context, self.horizon, stride, self.step)
            if len(starts) == 0:
                raise DataError(
                    f"{path}: split '{split}' rows {bounds[split]} hold no window of context "
                    f"{self.context} + horizon {self.horizon} (step {self.step}); the split comes "
                    "out empty: widen it in `splits` or shorten the window"
                )
            per_var = np.stack(
                [
                    window_missing(missing[:, c], starts, length, self.step)
                    for c in range(missing.shape[1])
                ],
                axis=1,
            )  # (n_windows, C)
            frac = per_var.sum(axis=1) / (length * n_space * missing.shape[1])
            if self.max_missing >= 1.0 and np.any(frac >= 1.0):
                w = int(np.argmax(frac >= 1.0))
                raise DataError(
                    f"{path}: the window starting at row {int(starts[w])} (split '{split}') is "
                    f"entirely NaN in variables {reader.variables}; set `max_missing` below 1 to "
                    "skip such windows, or fill the gap in the data"
                )
            tcols = missing[:, targets] if targets is not None else missing
            t_miss = window_missing(
                tcols.sum(axis=1), starts + self.step * self.context, self.horizon, self.step
            )
            no_target = t_miss >= self.horizon * n_space * tcols.shape[1]
            keep = (frac <= self.max_missing) & ~no_target
            self.skipped[split] = int((~keep).sum())
            if not keep.any():
                raise DataError(
                    f"{path}: all {len(starts)} windows of split '{split}' miss more than "
                    f"max_missing={self.max_missing} of their values (variables "
                    f"{reader.variables}); the split comes out empty: raise `max_missing` or "
                    "choose other splits"
                )
            out[split] = starts[keep]
            if self.skipped[split]:
                log.info(
                    "%s: split '%s' skips %d of %d windows (missing > %.2f or no observed target)",
                    path, split, self.skipped[split], len(starts), self.max_missing,
                )  # fmt: skip
        return out

    def _target_view(self) -> tuple[xr.Dataset, list[str], int]:
        """The (cropped) store the windows read, the target variables and their stacking axis."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its target series")

    def target_series(self) -> TargetSeries:
        """Normalised targets of every row and the time axis (call after :meth:`setup`).

        The whole target series is loaded, so it must fit ``memory_budget_mb``; spatial patches
        are refused (the series is the whole grid, a patch sample is not).

        Raises:
            RuntimeError: before :meth:`setup` (no fitted normaliser yet).
            DataError: when the series is larger than the memory budget, or with patches.
        """
        if self.normalizer is None:
            raise RuntimeError("call setup() before target_series(): it fits the normaliser")
        patch = getattr(self, "patch", None)
        if patch:
            raise DataError(
                f"target series: samples are {patch} patches but the series is the whole "
                "grid; train this baseline without `patch`"
            )
        ds, targets, axis = self._target_view()
        cells = int(np.prod([ds[targets[0]].sizes[d] for d in ds[targets[0]].dims]))
        need_mb = cells * len(targets) * 4 / 2**20
        if need_mb > self.memory_budget_mb:
            raise DataError(
                f"target series: {targets} need {need_mb:.1f} MB in memory, more than "
                f"memory_budget_mb={self.memory_budget_mb:g}; raise the budget or crop the data"
            )
        raw = np.stack([ds[v].values for v in targets], axis=axis).astype(np.float32)
        norm = self.normalizer.subset(targets)
        return TargetSeries(
            values=norm.transform(raw, axis=axis),
            times=ds["time"].values,
            train=self.bounds()["train"],  # type: ignore[attr-defined]
            step=self.step,
        )

    def use_normalizer(self, normalizer: Normalizer) -> None:
        """Reuse a saved normaliser instead of fitting one (evaluation, serving, fine-tuning).

        Call before :meth:`setup`. It must cover every variable read (for sensor data: the
        inputs and the targets, i.e. the run's ``input_normalizer``).
        """
        if self.datasets:
            raise RuntimeError("use_normalizer() must come before setup()")
        self._fixed_normalizer: Normalizer | None = normalizer

    def _fit(self, reader: FrameReader, bounds: dict[str, tuple[int, int]]) -> Any:
        scan = reader.scan(bounds["train"])  # the missing counts are needed either way
        fixed = getattr(self, "_fixed_normalizer", None)
        if fixed is not None:
            absent = [v for v in reader.variables if v not in fixed.variables]
            if absent:
                raise DataError(
                    f"{reader.source.path}: the given normaliser has no statistics for {absent} "
                    f"(it covers {list(fixed.variables)}); save the run's input_normalizer"
                )
            return scan, fixed.subset(reader.variables)
        norm = Normalizer.from_stats(
            reader.variables, self.normalization, scan.mean, scan.std, scan.vmin, scan.vmax
        )
        return scan, norm

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"call setup() before asking for the '{split}' loader")
        shuffle = split == "train"
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=None if shuffle else evaluation_sampler(self.datasets[split]),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=one_thread_worker if self.num_workers > 0 else None,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            collate_fn=collate_windows,  # grid windows arrive batched (__getitems__)
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training windows."""
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        """Validation windows in time order."""
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        """Held-out test windows in time order."""
        return self._loader("test")
