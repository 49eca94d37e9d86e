"""One-step recurrent net: per-step outputs (TBPTT, labelling) and autoregressive roll-out."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from forecast.models.recurrent import StackedRecurrent


class StepRNN(nn.Module):
    """A recurrent net with an output after every input step.

    Forecasting: the output at step t predicts step t+1 (``x_t + delta``), so the net trains
    one-step-ahead over long series with truncated BPTT, and ``forward`` rolls out ``horizon``
    steps feeding back its own predictions (or, with ``teacher_forcing``, the true values).
    Labelling (``n_classes``): the output at step t is the class logits of step t (synced
    sequence input and output); a bidirectional stack is allowed there, not for forecasting.

    ``x: (B, T, *rest)`` with rest ``(S, F)``, ``(C, H, W)`` or ``(F,)``; every step is flattened.

    Args:
        in_channels: features per sensor / channels per frame.
        horizon: forecast steps.
        hidden_size: recurrent units per direction.
        num_layers: depth.
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"``.
        n_sensors: S for sensor data.
        grid: (H, W) for gridded data.
        out_channels: must equal ``in_channels`` when forecasting (the roll-out feeds outputs back).
        n_classes: K for per-step labelling (None: forecasting).
        bidirectional: only with ``n_classes``.
        dropout: between layers.
    """

    def __init__(
        self,
        in_channels: int,
        horizon: int,
        hidden_size: int,
        num_layers: int = 1,
        cell: str = "lstm",
        n_sensors: int | None = None,
        grid: tuple[int, int] | None = None,
        out_channels: int | None = None,
        n_classes: int | None = None,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if n_classes is None and out_channels not in (None, in_channels):
            raise ValueError(
                f"StepRNN forecasting feeds its outputs back as inputs: out_channels must equal "
                f"in_channels, got {out_channels} and {in_channels}"
            )
        if n_classes is None and bidirectional:
            raise ValueError(
                "bidirectional: a forecasting StepRNN would read the future through its backward "
                "direction; use bidirectional only with n_classes (labelling)"
            )
        self.in_channels, self.horizon, self.n_classes = in_channels, horizon, n_classes
        self.gridded = grid is not None
        self.step_shape: tuple[int, ...] = (
            (in_channels, *grid)
            if grid
            else ((n_sensors, in_channels) if n_sensors else (in_channels,))
        )
        self.features = math.prod(self.step_shape)
        self.bidirectional = bidirectional
        self.rnn = StackedRecurrent(
            self.features, hidden_size, num_layers, cell, bidirectional, dropout
        )
        self.out = nn.Linear(self.rnn.output_size, n_classes or self.features)

    def _check(self, x: Tensor) -> None:
        if tuple(x.shape[2:]) != self.step_shape:
            raise ValueError(
                f"StepRNN: expected steps shaped {self.step_shape}, got x {tuple(x.shape)}"
            )

    def forward_sequence(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """x: (B, T, *rest) -> (per-step outputs (B, T, *rest) or (B, T, K), final state)."""
        self._check(x)
        h, state = self.rnn(x.flatten(2), state)
        o = self.out(h)  # (B, T, features or K)
        if self.n_classes is not None:
            return o, state
        return x + o.unflatten(2, self.step_shape), state

    def forward(
        self, x: Tensor, targets: Tensor | None = None, teacher_forcing: float = 0.0
    ) -> Tensor:
        """x: (B, T, *rest) -> (B, horizon, *rest) roll-out, or (B, T, K) labels.

        Args:
            x: the context.
            targets: (B, horizon, *rest) true future, used only with ``teacher_forcing > 0``.
            teacher_forcing: probability, per sample and step, of feeding the true previous
                value instead of the prediction (scheduled sampling).
        """
        out, state = self.forward_sequence(x)
        if self.n_classes is not None:
            return out
        if teacher_forcing > 0 and targets is None:
            raise ValueError("teacher_forcing > 0 needs `targets`, got None")
        prev = out[:, -1]
        preds = [prev]
        for k in range(1, self.horizon):
            inp = prev
            if targets is not None and teacher_forcing > 0:
                use = torch.rand(x.shape[0], device=x.device) < teacher_forcing
                use = use.view(-1, *([1] * (prev.dim() - 1)))
                inp = torch.where(use, targets[:, k - 1].to(prev.dtype), prev)
            step, state = self.forward_sequence(inp[:, None], state)
            prev = step[:, 0]
            preds.append(prev)
        return torch.stack(preds, dim=1)
