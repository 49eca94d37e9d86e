"""Encoders: a ConvLSTM grid encoder read out at sensors or pooled, and CNN frame codecs."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from forecast.models.cells.checks import check_choice, check_dim, check_positive, check_rank
from forecast.models.conv_recurrent import ConvRecurrentStack


class GridReadout(nn.Module):
    """ConvLSTM/ConvGRU over a gridded field, read out per step.

    ``grid: (B, T, C_g, H, W) -> (B, T, D)``: with ``readout="cells"`` the last layer's hidden
    state at each sensor's grid cell (D = S * C_h), with ``readout="pool"`` its spatial mean
    (D = C_h). Each step reads only the field up to that step (the stack runs forward in time).

    Args:
        grid_channels: C_g.
        hidden_channels: hidden channels per layer.
        kernel_size: odd kernel size.
        cell: ``"lstm"`` or ``"gru"``.
        readout: ``"cells"`` or ``"pool"``.
        sensor_cells: each sensor's ``(row, col)``; needed for ``"cells"``.
    """

    rows: Tensor  # buffers, declared for the type checker
    cols: Tensor

    def __init__(
        self,
        grid_channels: int,
        hidden_channels: list[int],
        kernel_size: int = 3,
        cell: str = "lstm",
        readout: str = "cells",
        sensor_cells: tuple[tuple[int, int], ...] | None = None,
    ) -> None:
        super().__init__()
        check_choice(readout, ("cells", "pool"), "readout")
        if readout == "cells" and not sensor_cells:
            raise ValueError(
                "readout='cells': expected the sensors' grid cells (DataSpec.sensor_cells, from "
                "paired data), got none; use readout='pool' or paired data"
            )
        self.grid_channels, self.readout = grid_channels, readout
        self.stack = ConvRecurrentStack(grid_channels, list(hidden_channels), kernel_size, cell)
        cells = torch.tensor(sensor_cells or [(0, 0)], dtype=torch.long)
        self.register_buffer("rows", cells[:, 0], persistent=False)
        self.register_buffer("cols", cells[:, 1], persistent=False)
        ch = hidden_channels[-1]
        self.out_features = ch * len(cells) if readout == "cells" else ch

    def forward(self, grid: Tensor) -> Tensor:
        """grid: (B, T, C_g, H, W) -> (B, T, D)."""
        check_rank(grid, 5, "(B, T, C_g, H, W)", "grid")
        check_dim(grid, 2, self.grid_channels, "grid channels", "grid")
        h, w = grid.shape[-2:]
        if self.readout == "cells" and (int(self.rows.max()) >= h or int(self.cols.max()) >= w):
            raise ValueError(
                f"grid: sensor cells reach row {int(self.rows.max())}, col {int(self.cols.max())}"
                f" but the grid is {h}x{w}"
            )
        out, _ = self.stack(grid)  # (B, T, C_h, H, W)
        if self.readout == "pool":
            return out.mean(dim=(-2, -1))
        at = out[:, :, :, self.rows, self.cols]  # (B, T, C_h, S)
        return at.transpose(2, 3).flatten(2)  # (B, T, S*C_h)


class FrameEncoder(nn.Module):
    """Strided CNN applied to every frame.  (B, T, C, H, W) -> (B, T, C_last, H/2^L, W/2^L).

    Args:
        in_channels: C.
        channels: output channels per layer; each layer halves H and W.
    """

    def __init__(self, in_channels: int, channels: list[int]) -> None:
        super().__init__()
        check_positive(in_channels, "in_channels")
        sizes = [in_channels, *channels]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.GELU()]
        self.net = nn.Sequential(*layers)
        self.factor = 2 ** len(channels)
        self.out_channels = sizes[-1]

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, C, H, W) -> (B, T, C_last, H / factor, W / factor)."""
        b, t = x.shape[:2]
        if x.shape[-2] % self.factor or x.shape[-1] % self.factor:
            raise ValueError(
                f"frame encoder: grid {tuple(x.shape[-2:])} is not divisible by {self.factor}"
            )
        return self.net(x.flatten(0, 1)).unflatten(0, (b, t))


class FrameDecoder(nn.Module):
    """Transposed-conv mirror of :class:`FrameEncoder`.  (B, T, C, h, w) -> (B, T, C_out, H, W).

    Args:
        in_channels: C of the coarse frames.
        channels: channels per upsampling layer (the encoder's list reversed, typically).
        out_channels: C_out.
    """

    def __init__(self, in_channels: int, channels: list[int], out_channels: int) -> None:
        super().__init__()
        sizes = [in_channels, *channels]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.GELU()]
        layers.append(nn.Conv2d(sizes[-1], out_channels, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, C, h, w) -> (B, T, C_out, h * 2^L, w * 2^L)."""
        b, t = x.shape[:2]
        return self.net(x.flatten(0, 1)).unflatten(0, (b, t))
