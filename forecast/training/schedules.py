"""Teacher-forcing ratio schedules for scheduled sampling (Bengio et al. 2015).

A schedule maps the global optimisation step to the probability that an autoregressive decoder is
fed the true previous value instead of its own prediction. The task evaluates it each step and
passes the ratio to the net's ``forward(..., teacher_forcing=ratio)``; nets never read a schedule.
"""

from __future__ import annotations

import math


def _check_ratio(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value}")


class ConstantRatio:
    """The same ratio at every step (0: free running, 1: full teacher forcing).

    Args:
        ratio: teacher-forcing probability.
    """

    def __init__(self, ratio: float = 0.0) -> None:
        _check_ratio(ratio, "ratio")
        self.ratio = ratio

    def __call__(self, step: int) -> float:
        """Ratio at global step ``step``."""
        return self.ratio


class LinearDecay:
    """Linear from ``start`` to ``end`` over ``steps`` steps, then ``end``.

    Args:
        start: ratio at step 0.
        end: ratio from step ``steps`` on.
        steps: length of the decay (> 0).
    """

    def __init__(self, start: float = 1.0, end: float = 0.0, steps: int = 1000) -> None:
        _check_ratio(start, "start")
        _check_ratio(end, "end")
        if steps <= 0:
            raise ValueError(f"steps: expected > 0, got {steps}")
        self.start, self.end, self.steps = start, end, steps

    def __call__(self, step: int) -> float:
        """Ratio at global step ``step``."""
        frac = min(max(step, 0) / self.steps, 1.0)
        return self.start + (self.end - self.start) * frac


class InverseSigmoidDecay:
    """``k / (k + exp(step / k))``: near 1 early, decaying to 0 (Bengio et al.'s inverse sigmoid).

    Args:
        k: speed (>= 1); larger keeps teacher forcing longer.
    """

    def __init__(self, k: float = 100.0) -> None:
        if k < 1.0:
            raise ValueError(f"k: expected >= 1, got {k}")
        self.k = k

    def __call__(self, step: int) -> float:
        """Ratio at global step ``step``."""
        z = max(step, 0) / self.k
        return 0.0 if z > 700 else self.k / (self.k + math.exp(z))


class ExponentialDecay:
    """``gamma ** step`` (0 < gamma <= 1).

    Args:
        gamma: decay per step.
    """

    def __init__(self, gamma: float = 0.999) -> None:
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma: expected 0 < gamma <= 1, got {gamma}")
        self.gamma = gamma

    def __call__(self, step: int) -> float:
        """Ratio at global step ``step``."""
        return float(self.gamma ** max(step, 0))
