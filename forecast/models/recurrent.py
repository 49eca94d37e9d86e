"""Stacked, optionally bidirectional recurrent layers over (B, T, F) sequences (LSTM, GRU, RNN)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from forecast.models.cells.checks import check_choice, check_dim, check_positive, check_rank
from forecast.models.cells.gru import GRUCell
from forecast.models.cells.lstm import LSTMCell
from forecast.models.cells.lstm_scan import lstm_scan_directions
from forecast.models.cells.rnn import RNNCell

State = Any  # LSTM: (h, C) each (L*D, B, H); GRU/RNN: h (L*D, B, H); index = layer * D + direction


class StackedRecurrent(nn.Module):
    """Deep, optionally bidirectional LSTM / GRU / vanilla RNN (the lecture's deep bi-RNN wiring).

    Each direction of layer l reads both directions of layer l-1 (their concatenation, i.e.
    U^{ff} s^f + U^{fb} s^b); the backward direction reads s_{t+1} of its own layer. Dropout and
    the optional LayerNorm act on each layer's output before the next layer reads it.

    Two implementations behind one interface (and one state layout, torch's):
    - a standard configuration (LSTM without peephole/coupling, GRU in torch's form, RNN) runs on
      torch.nn.LSTM/GRU/RNN (cuDNN on GPU); with a norm, one torch module per layer;
    - otherwise the custom cells: peephole/coupled LSTMs through `lstm_scan_directions`
      (hand-written BPTT, no per-step autograd nodes, both directions in one time loop), the
      lecture-form GRU through a step loop.
    `impl="cells"` forces the custom cells (used to check them against torch), `impl="torch"`
    insists on torch's modules.

    Args:
        input_size: features F of x.
        hidden_size: units H per direction.
        num_layers: depth L.
        cell: "lstm", "gru" or "rnn".
        bidirectional: add a backward direction per layer (D = 2).
        dropout: dropout probability between layers.
        norm: None or "layer" (LayerNorm between layers).
        peephole: LSTM diagonal peepholes.
        coupled: LSTM coupled input-forget gate.
        nonlinearity: "tanh" or "relu" (vanilla RNN).
        reset_after: GRU reset gate after the hidden matmul (torch's form) or before (lecture's).
        forget_bias: initial LSTM forget-gate bias (the sum of torch's two biases).
        batch_first: x is (B, T, F) if True, else (T, B, F).
        impl: "auto", "torch" or "cells".
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        norm: str | None = None,
        peephole: bool = False,
        coupled: bool = False,
        nonlinearity: str = "tanh",
        reset_after: bool = True,
        forget_bias: float = 1.0,
        batch_first: bool = True,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        # a list while a diagnostic records the last layer's forward h at every step, else None
        self.probe: list[Tensor] | None = None
        check_positive(input_size, "input_size")
        check_positive(hidden_size, "hidden_size")
        check_positive(num_layers, "num_layers")
        check_choice(cell, ("lstm", "gru", "rnn"), "cell")
        check_choice(norm, (None, "layer"), "norm")
        check_choice(nonlinearity, ("tanh", "relu"), "nonlinearity")
        check_choice(impl, ("auto", "torch", "cells"), "impl")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout}")
        if (peephole or coupled) and cell != "lstm":
            raise ValueError(f"peephole/coupled: only for cell='lstm', got cell={cell!r}")
        standard = not (peephole or coupled) and (cell != "gru" or reset_after)
        if impl == "torch" and not standard:
            raise ValueError(
                "impl='torch': expected a standard cell (no peephole/coupling, "
                f"GRU reset_after), got peephole={peephole}, coupled={coupled}, "
                f"reset_after={reset_after}"
            )
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.cell, self.batch_first = cell, batch_first
        self.num_directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.num_directions
        self.use_torch = standard and impl != "cells"
        sizes = [input_size] + [self.output_size] * (num_layers - 1)
        self.torch_layers = nn.ModuleList()
        self.cell_layers = nn.ModuleList()
        if self.use_torch:
            # One multi-layer module when nothing sits between layers, else one per layer.
            groups = [(input_size, num_layers)] if norm is None else [(s, 1) for s in sizes]
            for size, depth in groups:
                self.torch_layers.append(
                    self._torch_module(
                        size,
                        depth,
                        dropout if norm is None else 0.0,
                        bidirectional,
                        nonlinearity,
                        forget_bias,
                    )
                )
        else:
            for size in sizes:
                self.cell_layers.append(
                    nn.ModuleList(
                        self._cell(size, peephole, coupled, nonlinearity, reset_after, forget_bias)
                        for _ in range(self.num_directions)
                    )
                )
        self.norms = nn.ModuleList(
            nn.LayerNorm(self.output_size) if norm == "layer" else nn.Identity()
            for _ in range(num_layers - 1)
        )
        self.dropout = nn.Dropout(dropout)

    def _torch_module(
        self,
        size: int,
        depth: int,
        dropout: float,
        bidirectional: bool,
        nonlinearity: str,
        forget_bias: float,
    ) -> nn.Module:
        common = dict(
            num_layers=depth,
            batch_first=self.batch_first,
            dropout=dropout,
            bidirectional=bidirectional,
        )
        if self.cell == "lstm":
            module: nn.Module = nn.LSTM(size, self.hidden_size, **common)
            h = self.hidden_size
            with torch.no_grad():
                for name, p in module.named_parameters():
                    if name.startswith("bias_ih"):
                        p[h : 2 * h] = forget_bias  # torch adds bias_ih and bias_hh
                    elif name.startswith("bias_hh"):
                        p[h : 2 * h] = 0.0
            return module
        if self.cell == "gru":
            return nn.GRU(size, self.hidden_size, **common)
        return nn.RNN(size, self.hidden_size, nonlinearity=nonlinearity, **common)

    def _cell(
        self,
        size: int,
        peephole: bool,
        coupled: bool,
        nonlinearity: str,
        reset_after: bool,
        forget_bias: float,
    ) -> nn.Module:
        if self.cell == "lstm":
            return LSTMCell(size, self.hidden_size, peephole, coupled, forget_bias)
        if self.cell == "gru":
            return GRUCell(size, self.hidden_size, reset_after)
        return RNNCell(size, self.hidden_size, nonlinearity)

    def _check_state(self, state: State, batch: int) -> None:
        shape = (self.num_layers * self.num_directions, batch, self.hidden_size)
        parts = state if self.cell == "lstm" else (state,)
        if self.cell == "lstm" and (not isinstance(state, tuple | list) or len(state) != 2):
            raise ValueError(f"state: expected a pair (h, C) for an LSTM, got {type(state)}")
        for part in parts:
            if not isinstance(part, Tensor) or tuple(part.shape) != shape:
                got = tuple(part.shape) if isinstance(part, Tensor) else type(part).__name__
                raise ValueError(f"state: expected shape {shape} (L*D, B, H), got {got}")

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x: (B, T, F) -> out (B, T, output_size) and the final state (carry it for TBPTT).

        With batch_first=False x is (T, B, F) and out (T, B, output_size). The state is
        (h, C) for an LSTM and h otherwise, each (num_layers * D, B, H) as in torch.
        """
        check_rank(x, 3, "(B, T, F)" if self.batch_first else "(T, B, F)")
        check_dim(x, 2, self.input_size, "input features")
        if x.shape[1 if self.batch_first else 0] == 0:
            raise ValueError(f"x: expected at least one time step, got shape {tuple(x.shape)}")
        batch = x.shape[0 if self.batch_first else 1]
        if state is not None:
            self._check_state(state, batch)
        if self.use_torch:
            return self._forward_torch(x, state)
        x_tm = x.transpose(0, 1) if self.batch_first else x  # (T, B, F)
        out, final = self._forward_cells(x_tm, state)
        return (out.transpose(0, 1) if self.batch_first else out), final

    def _slice(self, state: State | None, lo: int, hi: int) -> State | None:
        if state is None:
            return None
        if self.cell == "lstm":
            return state[0][lo:hi], state[1][lo:hi]
        return state[lo:hi]

    def _join(self, finals: list[State]) -> State:
        if self.cell == "lstm":
            return torch.cat([f[0] for f in finals]), torch.cat([f[1] for f in finals])
        return torch.cat(finals)

    def _forward_torch(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        d = self.num_directions
        if len(self.torch_layers) == 1:
            return self.torch_layers[0](x, state)
        finals = []
        for layer, module in enumerate(self.torch_layers):
            x, final = module(x, self._slice(state, layer * d, (layer + 1) * d))
            finals.append(final)
            if layer < self.num_layers - 1:
                x = self.dropout(self.norms[layer](x))
        return x, self._join(finals)

    def _forward_cells(self, seq: Tensor, state: State | None) -> tuple[Tensor, State]:
        t_len = seq.shape[0]
        d = self.num_directions
        h_fin: list[Tensor] = []
        c_fin: list[Tensor] = []
        cells: Any  # one cell per direction (a ModuleList: Modules to a type checker)
        for layer, cells in enumerate(self.cell_layers):
            st = self._slice(state, layer * d, (layer + 1) * d)
            if self.cell == "lstm":
                seq, (h_last, c_last) = self._lstm_layer(seq, cells, st)
                h_fin.append(h_last)
                c_fin.append(c_last)
            else:
                outs = []
                for k, cell in enumerate(cells):
                    # (T, B, G*H), all steps at once; unbind so that the backward pass stacks
                    # the step gradients once instead of zero-filling a (T, B, G*H) per step.
                    xp = cell.project_input(seq).unbind(0)
                    h = None if st is None else st[k]
                    steps: list[Tensor] = [seq] * t_len  # placeholders, all overwritten
                    for t in range(t_len - 1, -1, -1) if k else range(t_len):
                        steps[t], h = cell.step(xp[t], h)
                        if self.probe is not None and k == 0 and layer == self.num_layers - 1:
                            self.probe.append(steps[t])  # training/gradient_flow.py diagnostic
                    outs.append(torch.stack(steps))  # (T, B, H)
                    assert h is not None
                    h_fin.append(h)
                seq = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]  # (T, B, D*H)
            if layer < self.num_layers - 1:
                seq = self.dropout(self.norms[layer](seq))
        h_n = torch.cat(h_fin) if self.cell == "lstm" else torch.stack(h_fin)  # (L*D, B, H)
        return seq, ((h_n, torch.cat(c_fin)) if self.cell == "lstm" else h_n)

    def _lstm_layer(
        self, seq: Tensor, cells: list[Any], state: State | None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """All directions of one LSTM layer in one `lstm_scan_directions` loop.

        Args:
            seq: (T, B, F) layer input.
            cells: one LSTMCell per direction.
            state: (h, C) each (D, B, H), or None for zeros.

        Returns:
            (T, B, D*H) outputs and the final (h, C), each (D, B, H).
        """
        t_len, batch = seq.shape[:2]
        n_dir = len(cells)
        # The backward direction reads its inputs reversed in time, so step s of the shared loop
        # is t = s forward and t = T-1-s backward. Flipping the (narrow) input instead of the
        # (G*H wide) projection, and projecting all directions in one baddbmm, saves two copies
        # of the projection; bmm's weight gradient X^T dG also avoids the slow (G*H, T*B) x
        # (T*B, F) product that F.linear's layout gives when F is small.
        xs = [seq, *(seq.flip(0) for _ in range(n_dir - 1))]
        x_all = torch.stack(xs).reshape(n_dir, t_len * batch, -1)  # (D, T*B, F)
        w_ih = torch.stack([cell.weight_ih for cell in cells]).transpose(1, 2)  # (D, F, G*H)
        bias = torch.stack([cell.bias for cell in cells]).unsqueeze(1)  # (D, 1, G*H)
        xp = torch.baddbmm(bias, x_all, w_ih).unflatten(1, (t_len, batch))  # (D, T, B, G*H)
        h0, c0 = (None, None) if state is None else state
        weight_c = None
        if cells[0].weight_c is not None:
            weight_c = torch.stack([cell.weight_c for cell in cells])  # (D, G-1, H)
        hs, c_last = lstm_scan_directions(
            xp,
            h0,
            c0,
            torch.stack([cell.weight_hh for cell in cells]),  # (D, G*H, H)
            weight_c,
            cells[0].coupled,
        )
        outs = [hs[0, 1:], *(hs[k, 1:].flip(0) for k in range(1, len(cells)))]  # D x (T, B, H)
        out = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]  # (T, B, D*H)
        return out, (hs[:, t_len], c_last)
