"""GRU cell in torch's form (reset after the hidden matmul) or the lecture's (reset before)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from forecast.models.cells.checks import check_dim, check_positive, check_rank, check_shape


class GRUCell(nn.Module):
    """One GRU step, gate order (r, z, n) as torch.nn.GRU; the gates read [h_{t-1}, x_t].

    r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn))   (reset_after=True, torch / cuDNN form), or
    n = tanh(W_in x + b_in + W_hn (r⊙h) + b_hn)   (reset_after=False, the lecture's form),
    h_t = (1 - z)⊙n + z⊙h_{t-1}   (the lecture's update gate is torch's 1 - z).

    Args:
        input_size: features F of x.
        hidden_size: size H of h.
        reset_after: where the reset gate acts (see above).
    """

    def __init__(self, input_size: int, hidden_size: int, reset_after: bool = True) -> None:
        super().__init__()
        check_positive(input_size, "input_size")
        check_positive(hidden_size, "hidden_size")
        self.input_size, self.hidden_size, self.reset_after = input_size, hidden_size, reset_after
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size))
        bound = 1 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def init_state(
        self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """Zero h of shape (B, H)."""
        return torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)

    def project_input(self, x: Tensor) -> Tensor:
        """W_i x + b_i of all gates, all steps at once. x: (B, T, F) or (B, F) -> (..., 3H)."""
        check_dim(x, -1, self.input_size, "input features")
        return F.linear(x, self.weight_ih, self.bias_ih)

    def step(self, xp: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        """One step. xp: (B, 3H) from `project_input`; state h (B, H) or None (zeros).

        Returns:
            h_t (B, H) twice (output and state).
        """
        hs = self.hidden_size
        if state is None:
            h_prev = xp.new_zeros(xp.shape[0], hs)
        else:
            check_rank(state, 2, "(B, H)", "state")
            check_shape(state, (xp.shape[0], hs), "state h")
            h_prev = state
        if self.reset_after:
            hh = torch.addmm(self.bias_hh, h_prev, self.weight_hh.t())  # one matmul, all gates
            r, z = torch.sigmoid(xp[:, : 2 * hs] + hh[:, : 2 * hs]).chunk(2, dim=1)
            n = torch.tanh(torch.addcmul(xp[:, 2 * hs :], r, hh[:, 2 * hs :]))
        else:
            rz = torch.addmm(
                xp[:, : 2 * hs] + self.bias_hh[: 2 * hs], h_prev, self.weight_hh[: 2 * hs].t()
            )
            r, z = torch.sigmoid(rz).chunk(2, dim=1)
            n = torch.tanh(
                torch.addmm(
                    xp[:, 2 * hs :] + self.bias_hh[2 * hs :],
                    r * h_prev,
                    self.weight_hh[2 * hs :].t(),
                )
            )
        h = torch.addcmul(n, z, h_prev - n)
        return h, h

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One step. x: (B, F), h (B, H) -> h_t (B, H) and the state h_t."""
        check_rank(x, 2, "(B, F)")
        return self.step(self.project_input(x), state)
