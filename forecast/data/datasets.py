"""Adapters from a window index to tensors, one per data shape (the only xarray -> torch step).

Every item carries masks (True = observed): missing values are filled with 0 in normalised space
and flagged, so nothing downstream mistakes a fill for data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from forecast.data.normalize import Normalizer
from forecast.data.reader import FrameReader

Item = dict[str, torch.Tensor]


def _scale(
    raw: np.ndarray, offset: np.ndarray, inv_scale: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise, mask and fill one window; returns (values, mask) as torch tensors.

    ``raw`` may be a view of a loaded array, so the first operation allocates and the rest work
    in place on that copy (this path runs once per sample).
    """
    z = np.subtract(raw, offset, dtype=np.float32)
    z *= inv_scale  # in place: one window-sized buffer per sample, not two
    mask = np.isfinite(z)
    np.copyto(z, np.float32(0.0), where=~mask)
    return torch.from_numpy(z), torch.from_numpy(mask)


class WindowBatch(list[Item]):
    """Items of one batch that are views of already stacked tensors (``batch``).

    ``default_collate`` still sees a list of items (and copies them); :func:`collate_windows`
    hands over ``batch`` itself.
    """

    def __init__(self, batch: Item) -> None:
        n = len(batch["start"])
        super().__init__({k: v[b] for k, v in batch.items()} for b in range(n))
        self.batch = batch


def collate_windows(data: Any) -> Any:
    """DataLoader ``collate_fn``: a batch built by ``__getitems__`` passes through uncopied.

    Args:
        data: a :class:`WindowBatch` (from ``GridWindows.__getitems__``) or a list of items.

    Returns:
        The batch: a dict of tensors with a leading batch dim.
    """
    return data.batch if isinstance(data, WindowBatch) else default_collate(data)


class GridWindows(Dataset[Item]):
    """Windows of gridded fields, optionally cut into spatial patches.

    Items: ``x (context, C, h, w)``, ``y (horizon, C, h, w)``, ``x_mask``/``y_mask`` (bool, same
    shapes), ``start ()`` int64, and with calendar covariates ``calendar (context, K)`` and
    ``calendar_y (horizon, K)``. Item ``i`` is window ``i // n_patches``, patch ``i % n_patches``.

    Args:
        reader: reads raw ``(T, C, H, W)`` windows.
        starts: window start rows (see :mod:`forecast.data.windows`).
        context: input steps.
        horizon: target steps.
        normalizer: per-channel scaling, applied per window.
        step: spacing of the steps inside a window.
        origins: ``(n_patches, 2)`` patch corners; None for the whole grid.
        patch: ``(h, w)`` patch size when ``origins`` is given.
        calendar: ``(T, K)`` covariates for every row, or None.
    """

    def __init__(
        self,
        reader: FrameReader,
        starts: np.ndarray,
        context: int,
        horizon: int,
        normalizer: Normalizer,
        step: int = 1,
        origins: np.ndarray | None = None,
        patch: tuple[int, int] | None = None,
        calendar: np.ndarray | None = None,
    ) -> None:
        self.reader = reader
        self.starts = np.asarray(starts, dtype=np.int64)
        self.context = context
        self.horizon = horizon
        self.normalizer = normalizer
        self.step = step
        self.origins = origins if origins is not None and patch is not None else None
        self.patch = patch
        self.calendar = calendar
        self.n_patches = 1 if self.origins is None else len(self.origins)
        c = len(normalizer.variables)
        self._offset = np.asarray(normalizer.offset, np.float32).reshape(1, c, 1, 1)
        self._inv = 1.0 / np.asarray(normalizer.scale, np.float32).reshape(1, c, 1, 1)

    def __len__(self) -> int:
        return len(self.starts) * self.n_patches

    def _rows(self, s: int) -> slice:
        return slice(s, s + self.step * (self.context + self.horizon), self.step)

    def __getitem__(self, i: int) -> Item:
        s = int(self.starts[i // self.n_patches])
        space: tuple[slice, ...] = ()
        if self.origins is not None and self.patch is not None:
            r, c = self.origins[i % self.n_patches]
            space = (slice(int(r), int(r) + self.patch[0]), slice(int(c), int(c) + self.patch[1]))
        raw = self.reader.read(self._rows(s), space)  # (L, C, h, w)
        z, mask = _scale(raw, self._offset, self._inv)
        x, y = z[: self.context], z[self.context :]
        x_mask, y_mask = mask[: self.context], mask[self.context :]
        item = {"x": x, "y": y, "x_mask": x_mask, "y_mask": y_mask, "start": torch.tensor(s)}
        if self.calendar is not None:
            cal = torch.from_numpy(self.calendar[self._rows(s)])
            item["calendar"], item["calendar_y"] = cal[: self.context], cal[self.context :]
        return item

    def __getitems__(self, indices: list[int]) -> WindowBatch:
        """A whole batch, each window normalised straight into its slot (see ``__getitem__``).

        Collating separate items holds every window twice (items, then the stacked batch);
        writing into the batch buffers keeps one window's temporaries at a time.

        Returns:
            A :class:`WindowBatch` whose ``batch`` holds ``x (B, context, C, h, w)``,
            ``y (B, horizon, C, h, w)``, masks, ``start (B,)`` and the calendar covariates
            when configured.
        """
        n, c = len(indices), len(self.normalizer.variables)
        space: tuple[int, ...] = (
            self.patch if self.origins is not None and self.patch else self.reader.space_shape
        )
        x = np.empty((n, self.context, c, *space), np.float32)
        y = np.empty((n, self.horizon, c, *space), np.float32)
        x_mask, y_mask = np.empty(x.shape, bool), np.empty(y.shape, bool)
        starts = np.empty(n, np.int64)
        for b, i in enumerate(indices):
            s = starts[b] = int(self.starts[i // self.n_patches])
            key: tuple[slice, ...] = ()
            if self.origins is not None and self.patch is not None:
                r, q = self.origins[i % self.n_patches]
                key = (slice(int(r), int(r) + self.patch[0]), slice(int(q), int(q) + self.patch[1]))
            raw = self.reader.read(self._rows(s), key)  # (L, C, h, w)
            for z, m, part in ((x, x_mask, raw[: self.context]), (y, y_mask, raw[self.context :])):
                np.subtract(part, self._offset, out=z[b])
                z[b] *= self._inv
                np.isfinite(z[b], out=m[b])
                np.copyto(z[b], np.float32(0.0), where=~m[b])
        batch = {
            "x": torch.from_numpy(x),
            "y": torch.from_numpy(y),
            "x_mask": torch.from_numpy(x_mask),
            "y_mask": torch.from_numpy(y_mask),
            "start": torch.from_numpy(starts),
        }
        if self.calendar is not None:
            cal = torch.from_numpy(np.stack([self.calendar[self._rows(int(s))] for s in starts]))
            batch["calendar"] = cal[:, : self.context].contiguous()
            batch["calendar_y"] = cal[:, self.context :].contiguous()
        return WindowBatch(batch)


class SensorWindows(Dataset[Item]):
    """Windows of sensor series.

    Items: ``x (context, S, F)``, ``y (horizon, S, F_out)``, ``x_mask``/``y_mask`` (bool, same
    shapes), ``start ()`` int64, and with calendar covariates ``calendar (context, K)`` and
    ``calendar_y (horizon, K)``.

    Args:
        reader: reads raw ``(T, C, S)`` windows of the union of inputs and targets.
        starts: window start rows.
        context: input steps.
        horizon: target steps.
        normalizer: per-variable scaling over the reader's variables.
        inputs: reader channel indices used as input features ``F``.
        targets: reader channel indices forecast ``F_out``.
        step: spacing of the steps inside a window.
        calendar: ``(T, K)`` covariates for every row, or None.
    """

    def __init__(
        self,
        reader: FrameReader,
        starts: np.ndarray,
        context: int,
        horizon: int,
        normalizer: Normalizer,
        inputs: list[int],
        targets: list[int],
        step: int = 1,
        calendar: np.ndarray | None = None,
    ) -> None:
        self.reader = reader
        self.starts = np.asarray(starts, dtype=np.int64)
        self.context = context
        self.horizon = horizon
        self.normalizer = normalizer
        self.inputs = list(inputs)
        self.targets = list(targets)
        self.step = step
        self.calendar = calendar
        c = len(normalizer.variables)
        self._offset = np.asarray(normalizer.offset, np.float32).reshape(1, 1, c)
        self._inv = 1.0 / np.asarray(normalizer.scale, np.float32).reshape(1, 1, c)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> Item:
        s = int(self.starts[i])
        rows = slice(s, s + self.step * (self.context + self.horizon), self.step)
        raw = self.reader.read(rows).transpose(0, 2, 1)  # (L, C, S) -> (L, S, C)
        z, mask = _scale(raw, self._offset, self._inv)
        x, x_mask = z[: self.context][..., self.inputs], mask[: self.context][..., self.inputs]
        y, y_mask = z[self.context :][..., self.targets], mask[self.context :][..., self.targets]
        item = {"x": x, "y": y, "x_mask": x_mask, "y_mask": y_mask, "start": torch.tensor(s)}
        if self.calendar is not None:
            cal = torch.from_numpy(self.calendar[rows])
            item["calendar"], item["calendar_y"] = cal[: self.context], cal[self.context :]
        return item


class PairedWindows(Dataset[Item]):
    """Sensor windows plus the gridded field over the same context steps.

    Items: everything of :class:`SensorWindows`, plus ``grid (context, C_g, H, W)`` and
    ``grid_mask``. Both adapters must share window starts (one time axis).
    """

    def __init__(self, sensors: SensorWindows, grid: GridWindows) -> None:
        if not np.array_equal(sensors.starts, grid.starts) or grid.n_patches != 1:
            raise ValueError("paired windows need the same starts and no grid patches")
        self.sensors = sensors
        self.grid = grid

    def __len__(self) -> int:
        return len(self.sensors)

    def __getitem__(self, i: int) -> Item:
        item = self.sensors[i]
        g = self.grid[i]
        item["grid"], item["grid_mask"] = g["x"], g["x_mask"]
        return item
