"""Window index math over the time axis: pure numpy, no torch, no xarray.

A window starting at ``s`` reads context steps ``[s, s + context)`` and target steps
``[s + context, s + context + horizon)``. A window belongs to a split only when all its targets fall
inside that split; its context may reach back into the previous split (as in the Informer protocol).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from forecast.errors import DataError

SPLITS = ("train", "val", "test")


def split_bounds(n_times: int, fractions: Sequence[float]) -> dict[str, tuple[int, int]]:
    """Chronological split of ``n_times`` steps by fractions.

    Args:
        n_times: length of the time axis.
        fractions: (train, val, test) fractions summing to at most 1.

    Returns:
        ``{split: (start, stop)}`` half-open index ranges, in time order.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise DataError(
            "split fractions must be three non-negative numbers summing to <= 1, "
            f"got {list(fractions)}"
        )
    edges = np.round(np.cumsum([0.0, *fractions]) * n_times).astype(int)
    return {name: (int(edges[i]), int(edges[i + 1])) for i, name in enumerate(SPLITS)}


def window_starts(
    bounds: tuple[int, int], context: int, horizon: int, stride: int = 1
) -> np.ndarray:
    """Start indices of every window whose targets lie inside ``bounds``.

    Args:
        bounds: the split's ``(start, stop)`` on the time axis.
        context: input steps.
        horizon: target steps.
        stride: steps between consecutive windows.

    Returns:
        int64 array of window starts (may be empty).
    """
    if context < 1 or horizon < 1 or stride < 1:
        raise DataError(
            f"context, horizon and stride must be >= 1, got {context}, {horizon}, {stride}"
        )
    lo, hi = bounds
    first = max(0, lo - context)
    last = hi - context - horizon  # inclusive
    if last < first:
        return np.zeros(0, dtype=np.int64)
    return np.arange(first, last + 1, stride, dtype=np.int64)
