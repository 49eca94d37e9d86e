"""ConvLSTM cell (Shi et al. 2015): one time step, convolutional input- and state-to-state."""

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

ConvLSTMState = tuple[Tensor, Tensor]


class ConvLSTMCell(nn.Module):
    """One ConvLSTM step: gates from `W_x * x + W_h * h (+ w_c ⊙ C) + b`, gate order (i, f, g, o).

    i = σ(W_xi*x + W_hi*h + w_ci⊙C_{t-1} + b_i), f = σ(W_xf*x + W_hf*h + w_cf⊙C_{t-1} + b_f),
    g = tanh(W_xc*x + W_hc*h + b_c), C_t = f⊙C_{t-1} + i⊙g,
    o = σ(W_xo*x + W_ho*h + w_co⊙C_t + b_o), h_t = o⊙tanh(C_t).

    The step is split so that a sequence layer can run `project_input` (the input convolution of all
    four gates) once over every time step, and `step` does one convolution of `h` for all gates.
    Shi et al. learn one peephole weight per channel and pixel; a cell must not know the grid size,
    so the peephole weights here are per channel, shape (Ch, 1, 1), broadcast over space.

    Args:
        in_channels: channels C of the input x; 0 builds a cell with no input-to-state weights
            (a forecaster that only ever steps with x=None; unused weights would break DDP's
            unused-parameter check).
        hidden_channels: channels Ch of the state h and C.
        kernel_size: odd kernel size of both convolutions ('same' padding keeps H, W).
        peephole: add the Hadamard terms w_c ⊙ C to the i, f (C_{t-1}) and o (C_t) gates.
        forget_bias: initial bias of the forget gate (1.0 keeps early gradients flowing).
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int = 3,
        peephole: bool = False,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        check_non_negative(in_channels, "in_channels")
        check_positive(hidden_channels, "hidden_channels")
        check_odd_kernel(kernel_size)
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        self.padding = kernel_size // 2
        gates = 4 * hidden_channels
        self.weight_x = (
            nn.Parameter(torch.empty(gates, in_channels, kernel_size, kernel_size))
            if in_channels
            else None
        )
        self.weight_h = nn.Parameter(torch.empty(gates, hidden_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(gates))
        # (3, Ch, 1, 1): peepholes of the i, f and o gates, one weight per channel.
        self.weight_c = nn.Parameter(torch.empty(3, hidden_channels, 1, 1)) if peephole else None
        self.reset_parameters(forget_bias)

    @property
    def peephole(self) -> bool:
        """Whether the gates read the cell state."""
        return self.weight_c is not None

    def reset_parameters(self, forget_bias: float = 1.0) -> None:
        """Uniform(±1/sqrt(fan_in)) weights as nn.Conv2d; zero bias except the forget gate."""
        k2 = self.kernel_size**2
        if self.weight_x is not None:
            bound_x = 1 / math.sqrt(self.in_channels * k2)
            nn.init.uniform_(self.weight_x, -bound_x, bound_x)
        bound_h = 1 / math.sqrt(self.hidden_channels * k2)
        nn.init.uniform_(self.weight_h, -bound_h, bound_h)
        with torch.no_grad():
            self.bias.zero_()
            self.bias[self.hidden_channels : 2 * self.hidden_channels] = forget_bias
        if self.weight_c is not None:
            nn.init.uniform_(self.weight_c, -bound_h, bound_h)

    def init_state(self, x: Tensor) -> ConvLSTMState:
        """Zero (h, C), each (B, Ch, H, W), like x: (B, C, H, W) or (B, T, C, H, W)."""
        b, (height, width) = x.shape[0], x.shape[-2:]
        zeros = x.new_zeros(b, self.hidden_channels, height, width)
        return zeros, zeros.clone()

    def _memory_format(self) -> torch.memory_format:
        # Follow the weights: after `.to(memory_format=torch.channels_last)` inputs go NHWC too.
        if self.weight_h.is_contiguous(memory_format=torch.channels_last) and not (
            self.weight_h.is_contiguous()
        ):
            return torch.channels_last
        return torch.contiguous_format

    def project_input(self, x: Tensor) -> Tensor:
        """Input convolution of all gates (bias included) for every step at once.

        Args:
            x: (B, T, C, H, W) sequence or (B, C, H, W) single step.

        Returns:
            (B, T, 4*Ch, H, W) or (B, 4*Ch, H, W): pre-activations to hand to `step`.
        """
        if self.weight_x is None:
            raise ValueError(
                "project_input: this cell has in_channels=0 (no input weights); expected "
                f"x=None steps, got x of shape {tuple(x.shape)}"
            )
        if x.dim() == 4:
            check_dim(x, 1, self.in_channels, "input channels")
            x = x.contiguous(memory_format=self._memory_format())
            return F.conv2d(x, self.weight_x, self.bias, padding=self.padding)
        check_rank(x, 5, "(B, T, C, H, W)")
        check_dim(x, 2, self.in_channels, "input channels")
        b, t = x.shape[:2]
        flat = x.flatten(0, 1).contiguous(memory_format=self._memory_format())  # (B*T, C, H, W)
        out = F.conv2d(flat, self.weight_x, self.bias, padding=self.padding)
        return out.unflatten(0, (b, t))  # (B, T, 4*Ch, H, W)

    def _check_state(self, state: ConvLSTMState, ref: Tensor) -> None:
        if not isinstance(state, tuple | list) or len(state) != 2:
            raise ValueError(f"state: expected a pair (h, C), got {type(state).__name__}")
        shape = (ref.shape[0], self.hidden_channels, *ref.shape[-2:])
        check_shape(state[0], shape, "state h")
        check_shape(state[1], shape, "state C")

    def step(self, xp: Tensor | None, state: ConvLSTMState | None) -> tuple[Tensor, ConvLSTMState]:
        """Recurrent part of one step: one convolution of h for all gates, then the update.

        Args:
            xp: (B, 4*Ch, H, W) from `project_input`, or None for a step with no input (the
                forecaster of Shi et al.: only the state-to-state term and the bias).
            state: (h, C), each (B, Ch, H, W); None means zeros (the h convolution is skipped).

        Returns:
            h_t (B, Ch, H, W) and the new state (h_t, C_t). Under autocast, h_t comes in the
            convolutions' dtype (bf16) and C_t in the weights' dtype (fp32): the cell state
            accumulates over every step, and rounding it to bf16's 8 bits each step would drift.
        """
        if state is None:
            if xp is None:
                raise ValueError("step: expected an input projection or a state, got neither")
            gates, c_prev = xp, None
        else:
            h_prev, c_prev = state
            self._check_state(state, xp if xp is not None else h_prev)
            # One conv for all four gates; the bias rides on it only when there is no input term.
            hh = F.conv2d(
                h_prev, self.weight_h, None if xp is not None else self.bias, padding=self.padding
            )
            gates = hh if xp is None else xp + hh
        i, f, g, o = gates.chunk(4, dim=1)
        if self.weight_c is not None and c_prev is not None:
            i = i + self.weight_c[0] * c_prev
            f = f + self.weight_c[1] * c_prev
        g = torch.tanh(g)
        if c_prev is None:
            c = (torch.sigmoid(i) * g).to(self.weight_h.dtype)
        else:  # a bf16 gate times an fp32 C_{t-1} gives an fp32 C_t
            c = torch.addcmul(torch.sigmoid(f) * c_prev, torch.sigmoid(i), g)
        if self.weight_c is not None:
            o = o + self.weight_c[2] * c
        h = (torch.sigmoid(o) * torch.tanh(c)).to(gates.dtype)
        return h, (h, c)

    def forward(
        self, x: Tensor, state: ConvLSTMState | None = None
    ) -> tuple[Tensor, ConvLSTMState]:
        """One step. x: (B, C, H, W), state (h, C) each (B, Ch, H, W) -> h (B, Ch, H, W), (h, C)."""
        check_rank(x, 4, "(B, C, H, W)")
        return self.step(self.project_input(x), state)
