"""Adapters from arrays to tensors, one per data shape."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class GridWindows(Dataset[dict[str, torch.Tensor]]):
    """Windows of a gridded array ``(T, C, H, W)``.

    Each item is ``{"x": (context, C, H, W), "y": (horizon, C, H, W), "start": ()}`` in float32.

    Args:
        values: the (normalised) array, time first, channels second.
        starts: window start indices (see :func:`forecast.data.windows.window_starts`).
        context: input steps.
        horizon: target steps.
    """

    def __init__(self, values: np.ndarray, starts: np.ndarray, context: int, horizon: int) -> None:
        self.values = values
        self.starts = starts
        self.context = context
        self.horizon = horizon

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = int(self.starts[i])
        window = np.asarray(self.values[s : s + self.context + self.horizon], dtype=np.float32)
        x = torch.from_numpy(window[: self.context].copy())
        y = torch.from_numpy(window[self.context :].copy())
        return {"x": x, "y": y, "start": torch.tensor(s)}
