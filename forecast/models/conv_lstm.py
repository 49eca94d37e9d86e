"""ConvLSTM encoder-forecaster for gridded fields (Shi et al. 2015)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from forecast.models.conv_recurrent import ConvRecurrentStack
from forecast.models.encoders import FrameDecoder, FrameEncoder


class ConvLSTMForecaster(nn.Module):
    """Encoder-forecaster ConvLSTM.  x: (B, T, C, H, W) -> y: (B, horizon, C_out, H, W).

    A stacked encoder reads the context; its final states are handed to a stacked forecaster that
    runs ``horizon`` steps with no input; a 1x1 convolution maps the forecaster's hidden state to
    the output channels. With ``residual`` the net predicts the change from the last input frame.

    Args:
        in_channels: input channels per frame.
        horizon: frames to forecast.
        hidden_channels: hidden channels per layer (encoder and forecaster alike).
        kernel_size: odd convolution kernel size.
        out_channels: output channels (default: ``in_channels``).
        peephole: use the ConvLSTM peephole (Hadamard) terms.
        patch: space-to-depth factor.
        residual: predict increments over the last input frame.
        frame_channels: optional CNN frame encoder (one stride-2 layer per entry) before the
            recurrent stacks, mirrored by a transposed-conv decoder after them.
        coords: append two fixed channels to every input frame, the row and column position
            scaled to [-1, 1] (CoordConv, Liu et al. 2018), so the convolutions, which are the
            same everywhere, can learn what depends on where (a diurnal phase that moves with
            longitude, a climate that changes with latitude). Any grid size still works.

    Any grid is accepted: one that ``patch * 2 ** len(frame_channels)`` does not divide (e.g.
    25 x 53 with a patch of 2) is padded at its bottom and right edges by repeating the edge
    values, and the forecast is cropped back to H x W, so the padding never reaches the loss.
    """

    gridded = True  # the task adds image metrics (SSIM, PSNR)

    def __init__(
        self,
        in_channels: int,
        horizon: int,
        hidden_channels: list[int],
        kernel_size: int = 3,
        out_channels: int | None = None,
        peephole: bool = False,
        patch: int = 1,
        residual: bool = True,
        frame_channels: list[int] | None = None,
        coords: bool = False,
    ) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        if residual and out_channels != in_channels:
            raise ValueError(
                f"residual forecasting needs out_channels == in_channels, got {out_channels} "
                f"and {in_channels}"
            )
        self.in_channels, self.out_channels, self.horizon = in_channels, out_channels, horizon
        self.patch, self.residual, self.coords = patch, residual, coords
        # H and W are padded up to a multiple of this (space-to-depth, then the stride-2 codec)
        self.multiple = patch * 2 ** len(frame_channels or [])
        hidden = list(hidden_channels)
        p2 = patch * patch
        frames = list(frame_channels or [])
        read = in_channels + (2 if coords else 0)  # channels per frame the encoder reads
        self.frame_encoder = FrameEncoder(read * p2, frames) if frames else None
        width = frames[-1] if frames else read * p2
        self.encoder = ConvRecurrentStack(width, hidden, kernel_size, peephole=peephole)
        # the forecaster runs with no input (Shi et al. 2015): no input-to-state weights at all
        self.forecaster = ConvRecurrentStack(0, hidden, kernel_size, peephole=peephole)
        self.head: nn.Module = (
            FrameDecoder(hidden[-1], frames[::-1], out_channels * p2)
            if frames
            else nn.Conv2d(hidden[-1], out_channels * p2, kernel_size=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, C, H, W) -> (B, horizon, C_out, H, W)."""
        if x.dim() != 5 or x.shape[2] != self.in_channels:
            raise ValueError(
                f"expected input (B, T, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        b, t, c, h, w = x.shape
        p, m = self.patch, self.multiple
        hp, wp = h + (-h) % m, w + (-w) % m  # the padded grid
        z = x
        if self.coords:
            rows = torch.linspace(-1.0, 1.0, h, dtype=x.dtype, device=x.device)
            cols = torch.linspace(-1.0, 1.0, w, dtype=x.dtype, device=x.device)
            grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"))  # (2, H, W)
            z = torch.cat([x, grid.expand(b, t, 2, h, w)], dim=2)
            c += 2
        z = z.reshape(b * t, c, h, w)
        if (hp, wp) != (h, w):  # edge values repeated: no artificial fronts at the border
            z = F.pad(z, (0, wp - w, 0, hp - h), mode="replicate")
        z = F.pixel_unshuffle(z, p).reshape(b, t, c * p * p, hp // p, wp // p)
        if self.frame_encoder is not None:
            z = self.frame_encoder(z)  # (B, T, C_f, h / 2^L, w / 2^L)
        _, states = self.encoder(z)
        out, _ = self.forecaster(None, states=states, steps=self.horizon)  # (B, horizon, Ch, ., .)
        if self.frame_encoder is not None:
            y = self.head(out).flatten(0, 1)  # (B*horizon, C_out*p*p, h/p, w/p)
        else:
            y = self.head(out.flatten(0, 1))
        y = F.pixel_shuffle(y, p).reshape(b, self.horizon, self.out_channels, hp, wp)
        y = y[..., :h, :w]  # (B, horizon, C_out, H, W): the padding cropped off
        if self.residual:
            y = y + x[:, -1:].to(y.dtype)
        return y
