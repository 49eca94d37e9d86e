"""Reference forecasts every model is judged against."""

from __future__ import annotations

from torch import Tensor


def persistence(x: Tensor, horizon: int) -> Tensor:
    """The last input step repeated.  x: (B, T, C, ...) -> (B, horizon, C, ...)."""
    return x[:, -1:].expand(-1, horizon, *x.shape[2:])
