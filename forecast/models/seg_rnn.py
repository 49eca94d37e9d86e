"""Segment-recurrent forecaster for long horizons (after SegRNN, Lin et al. 2023).

Each series is cut into segments of ``segment`` steps; a linear embedding of every segment feeds a
GRU/LSTM, so the recurrence runs T / segment steps instead of T. Decoding is parallel: every output
segment gets its own query (a position embedding joined with a series embedding) and one
recurrent step from the encoder's final state, then a linear map back to ``segment`` values.
Series are handled channel-independently (one shared net for every sensor x feature).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from forecast.models.cells.checks import check_choice, check_positive
from forecast.models.targets import target_positions

NORMS = ("none", "last", "revin")


class SegRNN(nn.Module):
    """Segment-wise recurrent forecaster.  x: (B, T, *rest) -> (B, horizon, *rest_out).

    Args:
        in_channels: features per sensor (or channels per frame).
        context: T; must be a multiple of ``segment``.
        horizon: forecast steps.
        segment: segment length w.
        hidden_size: embedding and state width d (even).
        n_sensors: S for sensor data.
        grid: (H, W) for gridded data.
        cell: ``"gru"`` or ``"lstm"``.
        instance_norm: ``"none"``, ``"last"`` (subtract each series' last value) or ``"revin"``
            (per-series mean and standard deviation over the context, restored on output).
        dropout: before the output map.
        query_std: initial standard deviation of the position and series embeddings that form
            the decoder's queries (SegRNN's: 1, so the output segments differ from the start).
        variables: input names; with ``targets``, selects the forecast features.
        targets: target names (must be inputs: the net forecasts its own series).
    """

    target_index: Tensor  # a buffer, declared for the type checker

    def __init__(
        self,
        in_channels: int,
        context: int,
        horizon: int,
        segment: int,
        hidden_size: int,
        n_sensors: int | None = None,
        grid: tuple[int, int] | None = None,
        cell: str = "gru",
        instance_norm: str = "last",
        dropout: float = 0.0,
        query_std: float = 1.0,
        variables: Sequence[str] = (),
        targets: Sequence[str] = (),
    ) -> None:
        super().__init__()
        check_positive(segment, "segment")
        check_positive(hidden_size, "hidden_size")
        check_choice(cell, ("gru", "lstm"), "cell")
        check_choice(instance_norm, NORMS, "instance_norm")
        if context % segment:
            raise ValueError(f"SegRNN: context {context} is not a multiple of segment {segment}")
        if hidden_size % 2:
            raise ValueError(f"hidden_size: expected an even width, got {hidden_size}")
        self.context, self.horizon, self.segment = context, horizon, segment
        self.instance_norm, self.gridded = instance_norm, grid is not None
        self.step_shape: tuple[int, ...] = (
            (in_channels, *grid)
            if grid
            else ((n_sensors, in_channels) if n_sensors else (in_channels,))
        )
        self.series = math.prod(self.step_shape)
        self.n_out = math.ceil(horizon / segment)
        self.embed = nn.Sequential(nn.Linear(segment, hidden_size), nn.ReLU())
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(hidden_size, hidden_size, batch_first=True)
        self.pos = nn.Parameter(torch.randn(self.n_out, hidden_size // 2) * query_std)
        self.chan = nn.Parameter(torch.randn(self.series, hidden_size // 2) * query_std)
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, segment))
        index = target_positions(variables, targets)
        if index is None or (index and n_sensors is None):
            raise ValueError(
                f"SegRNN forecasts its own input series: targets {list(targets)} must be "
                f"inputs {list(variables)} of sensor data"
            )
        self.register_buffer(
            "target_index", torch.tensor(index, dtype=torch.long), persistent=False
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, *rest) -> (B, horizon, *rest) (targets only, for sensor subsets)."""
        if tuple(x.shape[1:]) != (self.context, *self.step_shape):
            raise ValueError(
                f"SegRNN: expected x (B, {self.context}, {', '.join(map(str, self.step_shape))}),"
                f" got {tuple(x.shape)}"
            )
        b = x.shape[0]
        z = x.flatten(2).transpose(1, 2).reshape(b * self.series, self.context)  # (B*N, T)
        if self.instance_norm == "last":
            shift, scale = z[:, -1:], torch.ones_like(z[:, -1:])
        elif self.instance_norm == "revin":
            shift = z.mean(dim=1, keepdim=True)
            scale = z.std(dim=1, keepdim=True, unbiased=False).clamp(min=1e-5)
        else:
            shift, scale = torch.zeros_like(z[:, :1]), torch.ones_like(z[:, :1])
        z = (z - shift) / scale
        seg = self.embed(z.unflatten(1, (-1, self.segment)))  # (B*N, T/w, d)
        _, state = self.rnn(seg)
        out = self._decode(state, b)  # (B, N, m, d)
        y = self.proj(out).reshape(b * self.series, self.n_out * self.segment)[:, : self.horizon]
        y = y * scale + shift
        y = y.reshape(b, self.series, self.horizon).transpose(1, 2)
        y = y.unflatten(2, self.step_shape)  # (B, horizon, *rest)
        if self.target_index.numel():
            y = y.index_select(-1, self.target_index)
        return y

    def _decode(self, state: Tensor | tuple[Tensor, Tensor], b: int) -> Tensor:
        """One recurrent step per output segment from the encoder's final state -> (B, N, m, d).

        The same as running ``self.rnn`` for one step on B x N x m queries with the state
        repeated m times, without the repeats: the state's gate term W_hh h is computed once per
        series and the queries' W_ih q once per (series, segment), then broadcast, so the cost
        of the m decoder steps no longer grows as B x N x m matrix products (x8 at horizon 720).
        """
        query = torch.cat(
            [
                self.pos[None].expand(self.series, -1, -1),  # (N, m, d/2)
                self.chan[:, None].expand(-1, self.n_out, -1),  # (N, m, d/2)
            ],
            dim=-1,
        )  # (N, m, d)
        weight = self.rnn.get_parameter  # the layer's own weights (k = 3 GRU or 4 LSTM gates)
        gx = F.linear(query, weight("weight_ih_l0"), weight("bias_ih_l0"))[None]  # (1, N, m, k*d)
        h = state[0] if isinstance(state, tuple) else state  # (1, B*N, d)
        h = h[0].reshape(b, self.series, 1, -1)  # (B, N, 1, d)
        gh = F.linear(h, weight("weight_hh_l0"), weight("bias_hh_l0"))  # (B, N, 1, k*d)
        if isinstance(state, tuple):  # LSTM gates i, f, g, o
            c = state[1][0].reshape(b, self.series, 1, -1)
            i, f, g, o = (gx + gh).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c)
        xr, xz, xn = gx.chunk(3, dim=-1)  # GRU gates r, z, n
        hr, hz, hn = gh.chunk(3, dim=-1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return n + z * (h - n)  # (1 - z) n + z h
