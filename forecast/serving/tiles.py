"""Forecast a whole grid with a net that was trained on (and may only read) spatial patches.

The grid is covered by patch-sized tiles; where the grid is not a multiple of the patch, the last
row/column of tiles is shifted back to the edge, and overlapping forecasts are averaged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Net = Callable[[Tensor], Tensor]


def tile_starts(size: int, patch: int) -> list[int]:
    """Start indices of patch-long tiles covering ``[0, size)``; the last one ends at ``size``.

    Args:
        size: the grid's extent along one axis.
        patch: the tile extent (the training patch).

    Returns:
        Sorted starts, ``0`` first and ``size - patch`` last.
    """
    if patch < 1 or size < patch:
        raise ValueError(f"a grid axis of {size} cannot be tiled by patches of {patch}")
    starts = list(range(0, size - patch + 1, patch))
    if starts[-1] + patch < size:
        starts.append(size - patch)
    return starts


def forecast_tiled(net: Net, x: Tensor, patch: tuple[int, int], max_batch: int = 256) -> Tensor:
    """Run ``net`` on patch-sized tiles of ``x`` and stitch the forecasts back together.

    Args:
        net: ``(N, T, C, ph, pw) -> (N, horizon, C_out, ph, pw)``.
        x: ``(B, T, C, H, W)``, ``H >= ph`` and ``W >= pw``.
        patch: ``(ph, pw)``, the patch the net was trained on.
        max_batch: tiles (times samples) per ``net`` call, to bound memory.

    Returns:
        ``(B, horizon, C_out, H, W)``; cells covered by several tiles get their mean.
    """
    if x.dim() != 5:
        raise ValueError(f"expected x shaped (B, T, C, H, W), got {tuple(x.shape)}")
    b, _, _, h, w = x.shape
    ph, pw = patch
    corners = [(r, c) for r in tile_starts(h, ph) for c in tile_starts(w, pw)]
    tiles = torch.stack([x[..., r : r + ph, c : c + pw] for r, c in corners])
    flat = tiles.flatten(0, 1)  # (n * B, T, C, ph, pw), tile-major
    y = torch.cat([net(flat[i : i + max_batch]) for i in range(0, len(flat), max_batch)])
    y = y.unflatten(0, (len(corners), b))  # (n, B, horizon, C_out, ph, pw)
    out = y.new_zeros((b, *y.shape[2:4], h, w))
    count = y.new_zeros((h, w))
    for k, (r, c) in enumerate(corners):
        out[..., r : r + ph, c : c + pw] += y[k]
        count[r : r + ph, c : c + pw] += 1
    return out / count
