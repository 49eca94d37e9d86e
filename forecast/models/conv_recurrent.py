"""Stacked convolutional recurrent layers (ConvLSTM / ConvGRU) over (B, T, C, H, W) sequences."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from forecast.models.cells.checks import (
    check_choice,
    check_dim,
    check_non_negative,
    check_positive,
    check_rank,
)
from forecast.models.cells.conv_gru import ConvGRUCell
from forecast.models.cells.conv_lstm import ConvLSTMCell


class ConvRecurrentStack(nn.Module):
    """Layers of ConvLSTM or ConvGRU cells; layer l reads the output sequence of layer l-1.

    Each layer runs its input convolution for all time steps in one call, then loops over time
    with one state convolution per step. With `norm_groups > 0`, a GroupNorm normalises each
    layer's output sequence before the next layer reads it (per frame, so it never sees the grid
    size and costs one call per layer, not per step).

    Args:
        in_channels: channels C of the input frames; 0 means the stack only runs with x=None
            (its first layer then owns no input-to-state weights).
        hidden_channels: state channels per layer, e.g. [64, 64].
        kernel_size: odd kernel size of every convolution.
        cell: "lstm" (ConvLSTM) or "gru" (ConvGRU).
        peephole: ConvLSTM peepholes (per-channel Hadamard terms); only with cell="lstm".
        norm_groups: groups of the GroupNorm between layers; 0 turns it off.
        forget_bias: initial forget-gate bias of the ConvLSTM cells.
        channels_last: store the convolution weights NHWC, so that the cells run their
            convolutions NHWC (the tensor-core layout on GPU). Off by default: on this CPU
            (2 shared cores, no AMX) it measured 4-26% slower in fp32 and no faster in bf16.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: list[int],
        kernel_size: int = 3,
        cell: str = "lstm",
        peephole: bool = False,
        norm_groups: int = 0,
        forget_bias: float = 1.0,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        # a list while a diagnostic records the last layer's h at every step, else None
        self.probe: list[Tensor] | None = None
        check_choice(cell, ("lstm", "gru"), "cell")
        if len(hidden_channels) == 0:
            raise ValueError("hidden_channels: expected at least one layer, got an empty list")
        if peephole and cell != "lstm":
            raise ValueError(f"peephole: only the lstm cell has peepholes, got cell={cell!r}")
        if norm_groups < 0:
            raise ValueError(f"norm_groups: expected >= 0, got {norm_groups}")
        check_non_negative(in_channels, "in_channels")
        self.in_channels = in_channels
        self.hidden_channels = list(hidden_channels)
        self.cell_type = cell
        sizes = [in_channels, *hidden_channels]
        cells: list[nn.Module] = []
        for c_in, c_h in zip(sizes[:-1], sizes[1:], strict=True):
            check_positive(c_h, "hidden_channels[i]")
            if cell == "lstm":
                cells.append(ConvLSTMCell(c_in, c_h, kernel_size, peephole, forget_bias))
            else:
                cells.append(ConvGRUCell(c_in, c_h, kernel_size))
        self.cells = nn.ModuleList(cells)
        norms: list[nn.Module] = []
        for c_h in hidden_channels[:-1]:
            if norm_groups and c_h % norm_groups:
                raise ValueError(
                    f"norm_groups: expected a divisor of every hidden size, got {norm_groups} "
                    f"for {c_h} channels"
                )
            norms.append(nn.GroupNorm(norm_groups, c_h) if norm_groups else nn.Identity())
        self.norms = nn.ModuleList(norms)
        if channels_last:
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    @property
    def out_channels(self) -> int:
        """Channels of the last layer's output."""
        return self.hidden_channels[-1]

    def forward(
        self, x: Tensor | None, states: list[Any] | None = None, steps: int | None = None
    ) -> tuple[Tensor, list[Any]]:
        """Run every layer over the sequence.

        Args:
            x: (B, T, C, H, W) input sequence, or None to run `steps` steps with no input
                (layer 0 then has no input-to-state term; `states` must be given).
            states: one state per layer (ConvLSTM: (h, C); ConvGRU: h; each (B, Ch_l, H, W)),
                e.g. an encoder's final states; None starts from zeros.
            steps: number of steps when x is None; must match T otherwise.

        Returns:
            (B, T, C_last, H, W) outputs of the last layer, and the final state of every layer.
        """
        if states is not None and len(states) != len(self.cells):
            raise ValueError(f"states: expected {len(self.cells)} layer states, got {len(states)}")
        if x is None:
            if states is None or steps is None:
                raise ValueError(
                    "x=None: expected both `states` and `steps`, got "
                    f"states={'None' if states is None else 'given'}, steps={steps}"
                )
            check_positive(steps, "steps")
            t_len = steps
        else:
            if self.in_channels == 0:
                raise ValueError(
                    "x: this stack has in_channels=0 (no input weights); expected x=None, got "
                    f"shape {tuple(x.shape)}"
                )
            check_rank(x, 5, "(B, T, C, H, W)")
            check_dim(x, 2, self.in_channels, "input channels")
            t_len = x.shape[1]
            if steps is not None and steps != t_len:
                raise ValueError(f"steps: expected {t_len} (the length of x) or None, got {steps}")
        finals: list[Any] = []
        seq: Tensor | None = x
        cell: Any  # a ModuleList item: a Module to a type checker
        for layer, cell in enumerate(self.cells):
            state = None if states is None else states[layer]
            xp = None if seq is None else cell.project_input(seq)  # (B, T, G*Ch, H, W)
            # unbind, not xp[:, t]: each indexing op's backward would zero-fill and add into a
            # full (B, T, G*Ch, H, W) gradient, T times (~14% of a bf16 ConvLSTM step here);
            # unbind's backward stacks the T step gradients once.
            xps = (None,) * t_len if xp is None else xp.unbind(1)
            outs = []
            for t in range(t_len):
                h, state = cell.step(xps[t], state)
                outs.append(h)
                if self.probe is not None and layer == len(self.cells) - 1:
                    self.probe.append(h)  # gradient-flow diagnostic (training/gradient_flow.py)
            seq = torch.stack(outs, dim=1)  # (B, T, Ch, H, W)
            if layer < len(self.norms) and not isinstance(self.norms[layer], nn.Identity):
                seq = self.norms[layer](seq.flatten(0, 1)).unflatten(0, seq.shape[:2])
            finals.append(state)
        assert seq is not None
        return seq, finals
