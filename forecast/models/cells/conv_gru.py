"""ConvGRU cell: the GRU with convolutional input-to-state and state-to-state transitions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from forecast.models.cells.checks import (
    check_dim,
    check_non_negative,
    check_odd_kernel,
    check_positive,
    check_rank,
    check_shape,
)


class ConvGRUCell(nn.Module):
    """One ConvGRU step, gate order (r, z, n) as torch.nn.GRU, with convolutions for the matmuls.

    r = σ(W_xr*x + b_xr + W_hr*h + b_hr), z = σ(W_xz*x + b_xz + W_hz*h + b_hz),
    n = tanh(W_xn*x + b_xn + r⊙(W_hn*h + b_hn))   (reset_after=True, torch's form), or
    n = tanh(W_xn*x + b_xn + W_hn*(r⊙h) + b_hn)   (reset_after=False, the lecture's form),
    h_t = (1 - z)⊙n + z⊙h_{t-1}   (the lecture's z is torch's 1 - z).

    Args:
        in_channels: channels C of the input x; 0 builds a cell with no input-to-state weights
            (only x=None steps; the input bias b_x stays, it still enters every gate).
        hidden_channels: channels Ch of the state h.
        kernel_size: odd kernel size of both convolutions ('same' padding keeps H, W).
        reset_after: apply r after the state convolution (one conv per step) instead of before
            (two convs per step).
    """

    def __init__(
        self, in_channels: int, hidden_channels: int, kernel_size: int = 3, reset_after: bool = True
    ) -> None:
        super().__init__()
        check_non_negative(in_channels, "in_channels")
        check_positive(hidden_channels, "hidden_channels")
        check_odd_kernel(kernel_size)
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        self.padding = kernel_size // 2
        self.reset_after = reset_after
        gates = 3 * hidden_channels
        self.weight_x = (
            nn.Parameter(torch.empty(gates, in_channels, kernel_size, kernel_size))
            if in_channels
            else None
        )
        self.weight_h = nn.Parameter(torch.empty(gates, hidden_channels, kernel_size, kernel_size))
        self.bias_x = nn.Parameter(torch.zeros(gates))
        self.bias_h = nn.Parameter(torch.zeros(gates))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(±1/sqrt(fan_in)) weights as nn.Conv2d, zero biases."""
        k2 = self.kernel_size**2
        for weight, fan_in in (
            (self.weight_x, self.in_channels),
            (self.weight_h, self.hidden_channels),
        ):
            if weight is None:
                continue
            bound = 1 / math.sqrt(fan_in * k2)
            nn.init.uniform_(weight, -bound, bound)
        nn.init.zeros_(self.bias_x)
        nn.init.zeros_(self.bias_h)

    def init_state(self, x: Tensor) -> Tensor:
        """Zero h (B, Ch, H, W) on x's device and dtype; x: (B, C, H, W) or (B, T, C, H, W)."""
        return x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[-2:])

    def project_input(self, x: Tensor) -> Tensor:
        """Input convolution of all gates (input bias included) for every step at once.

        Args:
            x: (B, T, C, H, W) sequence or (B, C, H, W) single step.

        Returns:
            (B, T, 3*Ch, H, W) or (B, 3*Ch, H, W).
        """
        if self.weight_x is None:
            raise ValueError(
                "project_input: this cell has in_channels=0 (no input weights); expected "
                f"x=None steps, got x of shape {tuple(x.shape)}"
            )
        fmt = (
            torch.channels_last
            if self.weight_h.is_contiguous(memory_format=torch.channels_last)
            and not self.weight_h.is_contiguous()
            else torch.contiguous_format
        )
        if x.dim() == 4:
            check_dim(x, 1, self.in_channels, "input channels")
            return F.conv2d(
                x.contiguous(memory_format=fmt), self.weight_x, self.bias_x, padding=self.padding
            )
        check_rank(x, 5, "(B, T, C, H, W)")
        check_dim(x, 2, self.in_channels, "input channels")
        flat = x.flatten(0, 1).contiguous(memory_format=fmt)  # (B*T, C, H, W)
        out = F.conv2d(flat, self.weight_x, self.bias_x, padding=self.padding)
        return out.unflatten(0, x.shape[:2])  # (B, T, 3*Ch, H, W)

    def step(self, xp: Tensor | None, state: Tensor | None) -> tuple[Tensor, Tensor]:
        """Recurrent part of one step.

        Args:
            xp: (B, 3*Ch, H, W) from `project_input`, or None for a step with no input.
            state: h (B, Ch, H, W); None means zeros (the state convolution is skipped).

        Returns:
            h_t (B, Ch, H, W) twice (output and state).
        """
        ch = self.hidden_channels
        if xp is None:
            if state is None:
                raise ValueError("step: expected an input projection or a state, got neither")
            xp = self.bias_x.view(1, -1, 1, 1).expand(state.shape[0], -1, *state.shape[-2:])
        if state is None:
            # h = 0: every state convolution reduces to its bias.
            hh = self.bias_h.view(1, -1, 1, 1)
            r, z = torch.sigmoid(xp[:, : 2 * ch] + hh[:, : 2 * ch]).chunk(2, dim=1)
            n = torch.tanh(
                xp[:, 2 * ch :] + (r * hh[:, 2 * ch :] if self.reset_after else hh[:, 2 * ch :])
            )
            h = n - z * n
            return h, h
        check_shape(state, (xp.shape[0], ch, *xp.shape[-2:]), "state h")
        if self.reset_after:
            hh = F.conv2d(state, self.weight_h, self.bias_h, padding=self.padding)
            r, z = torch.sigmoid(xp[:, : 2 * ch] + hh[:, : 2 * ch]).chunk(2, dim=1)
            n = torch.tanh(xp[:, 2 * ch :] + r * hh[:, 2 * ch :])
        else:
            rz = F.conv2d(
                state, self.weight_h[: 2 * ch], self.bias_h[: 2 * ch], padding=self.padding
            )
            r, z = torch.sigmoid(xp[:, : 2 * ch] + rz).chunk(2, dim=1)
            hn = F.conv2d(
                r * state, self.weight_h[2 * ch :], self.bias_h[2 * ch :], padding=self.padding
            )
            n = torch.tanh(xp[:, 2 * ch :] + hn)
        h = n + z * (state - n)
        return h, h

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One step. x: (B, C, H, W), h (B, Ch, H, W) -> h_t (B, Ch, H, W) and the state h_t."""
        check_rank(x, 4, "(B, C, H, W)")
        return self.step(self.project_input(x), state)
