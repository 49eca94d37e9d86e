"""Gradient norms and the non-finite policy, shared by automatic and manual (TBPTT) optimisation.

Clipping itself is Lightning's (``Trainer(gradient_clip_val=..., gradient_clip_algorithm=...)``
under automatic optimisation, ``LightningModule.clip_gradients`` under TBPTT): both unscale
mixed-precision gradients first, which a hand-written clip does not.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from forecast.errors import ForecastError

NONFINITE_POLICIES = ("skip", "raise")
CLIP_ALGORITHMS = ("norm", "value")


class NonFiniteError(ForecastError, FloatingPointError):
    """The loss or the gradients are NaN/inf and the policy says stop."""


class TrainingConfigError(ForecastError, ValueError):
    """A training option (policy, clipping, TBPTT lengths, threads) is out of range."""


def check_policy(policy: str) -> None:
    """Refuse an unknown non-finite policy."""
    if policy not in NONFINITE_POLICIES:
        raise TrainingConfigError(
            f"nonfinite: expected one of {NONFINITE_POLICIES}, got {policy!r}"
        )


def check_clip(value: float | None, algorithm: str | None) -> None:
    """Refuse an unknown clipping algorithm or a negative threshold (None or 0: no clipping)."""
    if algorithm is not None and algorithm not in CLIP_ALGORITHMS:
        raise TrainingConfigError(
            f"gradient_clip_algorithm: expected one of {CLIP_ALGORITHMS}, got {algorithm!r}"
        )
    if value is not None and not value >= 0:
        raise TrainingConfigError(f"gradient_clip_val: expected >= 0 or null, got {value}")


def total_grad_norm(params: Iterable[nn.Parameter]) -> Tensor:
    """Global L2 norm of every ``.grad`` (NaN/inf when a gradient is not finite; 0 when none)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return nn.utils.get_total_norm(grads).float()
