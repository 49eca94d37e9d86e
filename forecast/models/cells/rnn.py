"""Vanilla RNN cell: s_t = f(U x_t + W s_{t-1} + b), f = tanh or ReLU (the lecture's equation)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from forecast.models.cells.checks import check_choice, check_dim, check_positive, check_rank


class RNNCell(nn.Module):
    """One vanilla RNN step, split into the input projection U x + b and the recurrent step.

    Args:
        input_size: features F of x.
        hidden_size: size H of the state s.
        nonlinearity: "tanh" or "relu".
    """

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh") -> None:
        super().__init__()
        check_positive(input_size, "input_size")
        check_positive(hidden_size, "hidden_size")
        check_choice(nonlinearity, ("tanh", "relu"), "nonlinearity")
        self.input_size, self.hidden_size, self.nonlinearity = input_size, hidden_size, nonlinearity
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))  # U
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))  # W
        self.bias = nn.Parameter(torch.empty(hidden_size))  # b
        bound = 1 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def init_state(
        self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """Zero state s_0 of shape (B, H)."""
        return torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)

    def project_input(self, x: Tensor) -> Tensor:
        """U x + b for all steps at once. x: (B, T, F) or (B, F) -> (B, T, H) or (B, H)."""
        check_dim(x, -1, self.input_size, "input features")
        return torch.nn.functional.linear(x, self.weight_ih, self.bias)

    def step(self, xp: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        """One step. xp: (B, H) from `project_input`; state s_{t-1} (B, H) or None (zeros).

        Returns:
            s_t (B, H) twice (output and state).
        """
        if state is None:
            pre = xp
        else:
            check_rank(state, 2, "(B, H)", "state")
            if tuple(state.shape) != (xp.shape[0], self.hidden_size):
                raise ValueError(
                    f"state: expected shape {(xp.shape[0], self.hidden_size)}, "
                    f"got {tuple(state.shape)}"
                )
            pre = torch.addmm(xp, state, self.weight_hh.t())  # fused: xp + s W^T
        s = torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)
        return s, s

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One step. x: (B, F), state (B, H) -> s_t (B, H) and the state s_t."""
        check_rank(x, 2, "(B, F)")
        return self.step(self.project_input(x), state)
