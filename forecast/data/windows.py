"""Window index math over the time axis and the grid: pure numpy, no torch, no xarray.

A window starting at ``s`` with time step ``k`` reads context steps ``s, s+k, ..., s+k(context-1)``
and targets the next ``horizon`` steps on the same stride. A window belongs to a split only when all
its targets fall inside that split; its context may reach back into the previous split (the Informer
protocol does exactly this), so targets are never shared between splits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from forecast.errors import DataError

SPLITS = ("train", "val", "test")
SplitSpec = Sequence[float] | Mapping[str, Sequence[Any]]


def split_bounds(n_times: int, fractions: Sequence[float]) -> dict[str, tuple[int, int]]:
    """Chronological split of ``n_times`` steps by fractions.

    Args:
        n_times: length of the time axis.
        fractions: (train, val, test) fractions summing to at most 1.

    Returns:
        ``{split: (start, stop)}`` half-open index ranges, in time order.
    """
    fractions = [float(f) for f in fractions]
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise DataError(
            "split fractions must be three non-negative numbers summing to <= 1, "
            f"got {list(fractions)}"
        )
    edges = np.round(np.cumsum([0.0, *fractions]) * n_times).astype(int)
    return {name: (int(edges[i]), int(edges[i + 1])) for i, name in enumerate(SPLITS)}


def _split_time(name: str, value: Any, first: np.datetime64) -> np.datetime64:
    """A split bound as a time: a date, or ``+DURATION`` after the series' first time."""
    text = str(value)
    try:
        if text.startswith("+"):  # e.g. "+360D": the same protocol at any sampling rate
            return first + np.timedelta64(pd.Timedelta(text[1:]).to_timedelta64())
        return np.datetime64(text)
    except ValueError:
        raise DataError(
            f"split '{name}': bound {text!r} is neither a row, a date (2014-07-01) nor an offset "
            "from the first time (+360D)"
        ) from None


def resolve_splits(times: np.ndarray, splits: SplitSpec) -> dict[str, tuple[int, int]]:
    """Turn a split spec into index ranges on the time axis.

    Args:
        times: the time coordinate (datetime64 or integer), increasing.
        splits: three fractions ``[0.7, 0.15, 0.15]``; or ``{split: [start, stop]}`` with
            integer row indices (half-open, e.g. ``train: [0, 8640]``), date strings (inclusive
            start, exclusive stop, e.g. ``val: ["2014-01-01", "2014-07-01"]``) or offsets from
            the first time (``train: ["+0D", "+360D"]``: ETT's Informer protocol at any
            sampling rate, hourly or 15-minute, and on any file's dates).

    Returns:
        ``{split: (start, stop)}`` half-open index ranges; splits must not overlap.
    """
    n = len(times)
    if not isinstance(splits, Mapping):
        return split_bounds(n, list(splits))
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or not all(k in splits for k in SPLITS):
        raise DataError(f"splits must name exactly {list(SPLITS)}, got {sorted(splits)}")
    out: dict[str, tuple[int, int]] = {}
    for name in SPLITS:
        rng = list(splits[name])
        if len(rng) != 2:
            raise DataError(f"split '{name}' must be [start, stop], got {rng}")
        if all(isinstance(v, (int, np.integer)) for v in rng):
            lo, hi = int(rng[0]), int(rng[1])
        else:
            t = np.asarray(times)
            if not np.issubdtype(t.dtype, np.datetime64):
                raise DataError(f"split '{name}' uses dates {rng} but the time axis is {t.dtype}")
            bounds = [_split_time(name, v, t[0]) for v in rng]
            if str(rng[1]).startswith("+") and len(t) > 1 and bounds[1] > t[-1] + (t[-1] - t[-2]):
                # rows past the end are refused; so is an offset past the end (a short file)
                raise DataError(
                    f"split '{name}' ends {rng[1]} after the first time "
                    f"({pd.Timestamp(bounds[1])}), past the data's last time "
                    f"{pd.Timestamp(t[-1])}: the protocol needs a longer series"
                )
            lo, hi = (int(np.searchsorted(t, b, "left")) for b in bounds)
        if not 0 <= lo <= hi <= n:
            raise DataError(f"split '{name}' rows [{lo}, {hi}) do not fit a series of {n} steps")
        out[name] = (lo, hi)
    ordered = [out[s] for s in SPLITS]
    for (_, hi), (lo, _), a, b in zip(ordered, ordered[1:], SPLITS, SPLITS[1:], strict=False):
        if lo < hi:
            raise DataError(f"splits '{a}' and '{b}' overlap ({out[a]} vs {out[b]})")
    return out


def window_starts(
    bounds: tuple[int, int], context: int, horizon: int, stride: int = 1, step: int = 1
) -> np.ndarray:
    """Start indices of every window whose targets lie inside ``bounds``.

    Args:
        bounds: the split's ``(start, stop)`` on the time axis.
        context: input steps.
        horizon: target steps.
        stride: steps between consecutive window starts.
        step: spacing of the steps inside a window (2 reads every other time step).

    Returns:
        int64 array of window starts (may be empty).
    """
    if min(context, horizon, stride, step) < 1:
        raise DataError(
            "context, horizon, stride and step must be >= 1, got "
            f"{context}, {horizon}, {stride}, {step}"
        )
    lo, hi = bounds
    # first target index s + step*context must be >= lo; last one s + step*(context+horizon-1) < hi
    first = max(0, lo - step * context)
    last = hi - 1 - step * (context + horizon - 1)
    if last < first:
        return np.zeros(0, dtype=np.int64)
    return np.arange(first, last + 1, stride, dtype=np.int64)


def target_rows(starts: np.ndarray, context: int, horizon: int, step: int = 1) -> np.ndarray:
    """Time indices of every window's targets, ``(n_windows, horizon)``."""
    offs = step * (context + np.arange(horizon))
    return starts[:, None] + offs[None, :]


def window_missing(
    missing_per_step: np.ndarray, starts: np.ndarray, length: int, step: int = 1
) -> np.ndarray:
    """Missing values per window from per-step counts.

    Args:
        missing_per_step: missing values at each time step, ``(T,)``.
        starts: window starts.
        length: steps per window (context + horizon).
        step: spacing of the steps inside a window.

    Returns:
        Missing values per window, ``(n_windows,)``.
    """
    if step == 1:
        c = np.concatenate([[0], np.cumsum(missing_per_step, dtype=np.int64)])
        return c[starts + length] - c[starts]
    rows = starts[:, None] + step * np.arange(length)[None, :]
    return missing_per_step[rows].sum(axis=1)


def patch_origins(
    shape: tuple[int, int], patch: Sequence[int] | None, stride: Sequence[int] | None = None
) -> np.ndarray:
    """Top-left corners of spatial patches tiling a grid (the last partial row/column dropped).

    Args:
        shape: ``(H, W)`` of the (cropped) grid.
        patch: ``(h, w)`` patch size, or None for the whole grid.
        stride: ``(sh, sw)`` between patches; defaults to the patch size (no overlap).

    Returns:
        ``(n_patches, 2)`` int64 origins.
    """
    if patch is None:
        return np.zeros((1, 2), dtype=np.int64)
    ph, pw = (int(p) for p in patch)
    sh, sw = (int(s) for s in (stride or (ph, pw)))
    if not (0 < ph <= shape[0] and 0 < pw <= shape[1]) or min(sh, sw) < 1:
        raise DataError(f"patch {list(patch)} / stride {stride} does not fit a grid of {shape}")
    ii, jj = np.meshgrid(
        np.arange(0, shape[0] - ph + 1, sh), np.arange(0, shape[1] - pw + 1, sw), indexing="ij"
    )
    return np.stack([ii.ravel(), jj.ravel()], axis=1).astype(np.int64)
