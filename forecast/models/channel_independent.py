"""Channel independence: every series of a window through one shared univariate net.

Each sensor x variable becomes its own univariate series (instance-normalised, optionally cut
into segments that form each step's features), so the net's size and what it learns do not
depend on how many columns a file has or how they are scaled: the same weights forecast a
column set they never saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from forecast.models.cells.checks import check_choice, check_positive
from forecast.models.compose import build
from forecast.models.revin import NORMS, instance_stats
from forecast.models.targets import target_positions

Factory = Callable[..., nn.Module]


class ChannelIndependent(nn.Module):
    """A shared univariate net per series.  x: (B, T, S, F) or (B, T, F) -> (B, horizon, ..., F_t).

    The inner net reads ``(N, T / segment, 1, segment)`` (N = B x series: one sensor whose
    features are the segment's values, one step per segment) and returns N x horizon values
    (e.g. ``(N, horizon, 1, 1)``); it is built with ``in_channels=segment``, ``out_channels=1``,
    ``n_sensors=1`` and ``horizon``, so per-sensor encoders compose with it.

    Args:
        in_channels: F, features per sensor.
        context: T; a multiple of ``segment``.
        horizon: forecast steps.
        net: partial of the univariate net (e.g. a SequenceForecaster with a biGRU backbone).
        n_sensors: S for sensor data (None: x is (B, T, F)).
        segment: steps per input feature vector (1: one value per step).
        instance_norm: one of :data:`forecast.models.revin.NORMS`.
        variables: input names; with ``targets``, selects the forecast features.
        targets: target names (must be inputs: each series forecasts itself).
    """

    target_index: Tensor  # a buffer, declared for the type checker

    def __init__(
        self,
        in_channels: int,
        context: int,
        horizon: int,
        net: Factory,
        n_sensors: int | None = None,
        segment: int = 1,
        instance_norm: str = "last",
        variables: Sequence[str] = (),
        targets: Sequence[str] = (),
    ) -> None:
        super().__init__()
        check_positive(segment, "segment")
        check_choice(instance_norm, NORMS, "instance_norm")
        if context % segment:
            raise ValueError(f"context {context} is not a multiple of segment {segment}")
        self.context, self.horizon, self.segment = context, horizon, segment
        self.instance_norm = instance_norm
        self.step_shape = (n_sensors, in_channels) if n_sensors else (in_channels,)
        self.series = math.prod(self.step_shape)
        self.inner = build(net, in_channels=segment, out_channels=1, n_sensors=1, horizon=horizon)
        index = target_positions(variables, targets)
        if index is None:
            raise ValueError(
                f"channel-independent nets forecast their own inputs: targets "
                f"{list(targets)} must be among the inputs {list(variables)}"
            )
        self.register_buffer(
            "target_index", torch.tensor(index, dtype=torch.long), persistent=False
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, *step_shape) -> (B, horizon, *step_shape) (targets only, for subsets)."""
        if tuple(x.shape[1:]) != (self.context, *self.step_shape):
            raise ValueError(
                f"expected x (B, {self.context}, {', '.join(map(str, self.step_shape))}), "
                f"got {tuple(x.shape)}"
            )
        b = x.shape[0]
        z = x.flatten(2).transpose(1, 2).reshape(b * self.series, self.context)  # (N, T)
        shift, scale = instance_stats(z, self.instance_norm)
        z = ((z - shift) / scale).unflatten(1, (-1, 1, self.segment))  # (N, T/w, 1, w)
        y = self.inner(z).reshape(b * self.series, self.horizon)  # (N, horizon)
        y = y * scale + shift
        y = y.reshape(b, self.series, self.horizon).transpose(1, 2).unflatten(2, self.step_shape)
        if self.target_index.numel():
            y = y.index_select(-1, self.target_index)
        return y  # (B, horizon, *step_shape)
