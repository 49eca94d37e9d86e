"""Gradient clipping and the non-finite policy, applied inside the task (manual optimisation).

Lightning refuses ``Trainer(gradient_clip_val=...)`` under manual optimisation, so the task clips
here, between ``manual_backward`` and ``optimizer.step``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

CLIP_MODES = (None, "norm", "value")
NONFINITE_POLICIES = ("skip", "raise")


class NonFiniteError(FloatingPointError):
    """The loss or the gradients are NaN/inf and the policy says stop."""


def check_clip(mode: str | None, value: float) -> None:
    """Refuse an unknown clipping mode or a non-positive threshold."""
    if mode not in CLIP_MODES:
        raise ValueError(f"clip_mode: expected one of {CLIP_MODES}, got {mode!r}")
    if mode is not None and not value > 0:
        raise ValueError(f"clip_value: expected > 0 when clipping by {mode}, got {value}")


def check_policy(policy: str) -> None:
    """Refuse an unknown non-finite policy."""
    if policy not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite: expected one of {NONFINITE_POLICIES}, got {policy!r}")


def clip_gradients(params: Iterable[nn.Parameter], mode: str | None, value: float) -> Tensor:
    """Clip gradients in place; return the total L2 norm measured *before* clipping.

    Args:
        params: parameters whose ``.grad`` is set.
        mode: None (measure only), ``"norm"`` (rescale so the total norm is <= value) or
            ``"value"`` (clamp every element to [-value, value]).
        value: the threshold.

    Returns:
        Scalar tensor: the pre-clip global gradient norm (NaN/inf if a gradient is not finite).
    """
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    if mode == "norm":
        return nn.utils.clip_grad_norm_(grads, max_norm=value)
    total = nn.utils.clip_grad_norm_(grads, max_norm=float("inf"))
    if mode == "value":
        nn.utils.clip_grad_value_(grads, clip_value=value)
    return total
