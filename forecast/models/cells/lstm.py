"""LSTM cell with optional diagonal peepholes and a coupled input-forget gate."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from forecast.models.cells.checks import check_dim, check_positive, check_rank, check_shape

LSTMState = tuple[Tensor, Tensor]


class LSTMCell(nn.Module):
    """One LSTM step, split into the input projection and the recurrent step.

    Gate blocks of the pre-activation, in order: (i, f, g, o), or (f, g, o) when coupled.
    i = σ(W_i·[h, x] + w_i⊙C_{t-1} + b_i), f = σ(W_f·[h, x] + w_f⊙C_{t-1} + b_f),
    g = tanh(W_C·[h, x] + b_C), C_t = f⊙C_{t-1} + i⊙g   (coupled: i = 1 - f),
    o = σ(W_o·[h, x] + w_o⊙C_t + b_o), h_t = o⊙tanh(C_t).
    Peepholes are diagonal (one weight per unit); the w terms exist only with `peephole=True`.
    `W·[h, x]` is held as two matrices, weight_ih (G*H, F) and weight_hh (G*H, H), so the input
    part runs for all steps at once and the step is one fused addmm for all gates.

    Args:
        input_size: features F of x.
        hidden_size: size H of h and C.
        peephole: let the gates read the cell state.
        coupled: replace the input gate by 1 - f.
        forget_bias: initial forget-gate bias.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        peephole: bool = False,
        coupled: bool = False,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        check_positive(input_size, "input_size")
        check_positive(hidden_size, "hidden_size")
        self.input_size, self.hidden_size, self.coupled = input_size, hidden_size, coupled
        self.n_gates = 3 if coupled else 4
        gh = self.n_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gh, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gh, hidden_size))
        self.bias = nn.Parameter(torch.empty(gh))
        # (n_gates - 1, H): peepholes of (i, f, o), or (f, o) when coupled.
        self.weight_c = (
            nn.Parameter(torch.empty(self.n_gates - 1, hidden_size)) if peephole else None
        )
        self.reset_parameters(forget_bias)

    @property
    def peephole(self) -> bool:
        """Whether the gates read the cell state."""
        return self.weight_c is not None

    @property
    def forget_index(self) -> int:
        """Index of the forget-gate block among the gate blocks."""
        return 0 if self.coupled else 1

    def reset_parameters(self, forget_bias: float = 1.0) -> None:
        """Uniform(±1/sqrt(H)) as torch.nn.LSTM; the forget-gate bias set to `forget_bias`."""
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)
        h, k = self.hidden_size, self.forget_index
        with torch.no_grad():
            self.bias[k * h : (k + 1) * h] = forget_bias

    def init_state(
        self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> LSTMState:
        """Zero (h, C), each (B, H)."""
        zeros = torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return zeros, zeros.clone()

    def project_input(self, x: Tensor) -> Tensor:
        """W_x x + b of all gates, all steps at once. x: (B, T, F) or (B, F) -> (..., G*H)."""
        check_dim(x, -1, self.input_size, "input features")
        return torch.nn.functional.linear(x, self.weight_ih, self.bias)

    def step(self, xp: Tensor, state: LSTMState | None) -> tuple[Tensor, LSTMState]:
        """One step. xp: (B, G*H) from `project_input`; state (h, C) each (B, H), or None (zeros).

        Returns:
            h_t (B, H) and the new state (h_t, C_t).
        """
        h_size = self.hidden_size
        if state is None:
            gates, c_prev = xp, None
        else:
            if not isinstance(state, tuple | list) or len(state) != 2:
                raise ValueError(f"state: expected a pair (h, C), got {type(state).__name__}")
            shape = (xp.shape[0], h_size)
            check_shape(state[0], shape, "state h")
            check_shape(state[1], shape, "state C")
            h_prev, c_prev = state
            gates = torch.addmm(xp, h_prev, self.weight_hh.t())  # one matmul for all gates
        blocks = list(gates.split(h_size, dim=1))
        wc = self.weight_c
        if wc is not None and c_prev is not None:
            for k in range(self.n_gates - 2):  # i and f (or f alone) read C_{t-1}
                blocks[k] = torch.addcmul(blocks[k], wc[k], c_prev)
        if self.coupled:
            f_pre, g_pre, o_pre = blocks
            f, g = torch.sigmoid(f_pre), torch.tanh(g_pre)
            c = g - f * g if c_prev is None else torch.addcmul(g, f, c_prev - g)
        else:
            i_pre, f_pre, g_pre, o_pre = blocks
            i, f, g = torch.sigmoid(i_pre), torch.sigmoid(f_pre), torch.tanh(g_pre)
            c = i * g if c_prev is None else torch.addcmul(f * c_prev, i, g)
        if wc is not None:
            o_pre = torch.addcmul(o_pre, wc[-1], c)  # the output gate reads the new C_t
        h = torch.sigmoid(o_pre) * torch.tanh(c)
        return h, (h, c)

    def forward(self, x: Tensor, state: LSTMState | None = None) -> tuple[Tensor, LSTMState]:
        """One step. x: (B, F), state (h, C) each (B, H) -> h_t (B, H) and (h_t, C_t)."""
        check_rank(x, 2, "(B, F)")
        return self.step(self.project_input(x), state)
