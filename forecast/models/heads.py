"""Heads: per-sensor 1-D CNN feature heads over time, and output projections."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from forecast.models.cells.checks import check_dim, check_positive, check_rank


class PerSensorConvHead(nn.Module):
    """One causal 1-D CNN per sensor over its series.  x: (B, T, S, F) -> (B, T, S * C_last).

    The sensors' CNNs run as one grouped convolution (groups = S), so each sensor has its own
    weights at the cost of one call. Left padding keeps every output step causal: step t reads
    only steps <= t, so the backbone still sees one feature vector per input step.

    Args:
        n_sensors: S.
        in_channels: F, features per sensor and step.
        channels: output channels per layer, per sensor.
        kernel_size: temporal kernel size.
    """

    def __init__(
        self, n_sensors: int, in_channels: int, channels: list[int], kernel_size: int = 3
    ) -> None:
        super().__init__()
        check_positive(n_sensors, "n_sensors")
        check_positive(kernel_size, "kernel_size")
        if not channels:
            raise ValueError("channels: expected at least one layer, got an empty list")
        self.n_sensors, self.in_channels, self.kernel_size = n_sensors, in_channels, kernel_size
        sizes = [in_channels, *channels]
        self.convs = nn.ModuleList(
            nn.Conv1d(n_sensors * a, n_sensors * b, kernel_size, groups=n_sensors)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.out_features = n_sensors * channels[-1]

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, S, F) -> (B, T, S * C_last)."""
        check_rank(x, 4, "(B, T, S, F)")
        check_dim(x, 2, self.n_sensors, "sensors")
        check_dim(x, 3, self.in_channels, "features per sensor")
        b, t = x.shape[:2]
        z = x.permute(0, 2, 3, 1).reshape(b, -1, t)  # (B, S*F, T), sensor-major groups
        for i, conv in enumerate(self.convs):
            z = conv(F.pad(z, (self.kernel_size - 1, 0)))
            if i < len(self.convs) - 1:
                z = F.gelu(z)
        return z.transpose(1, 2)  # (B, T, S*C_last)


class DirectHead(nn.Module):
    """Direct multi-step output.  features (B, D) -> (B, horizon, S, F_out) or (B, horizon, F_out).

    Args:
        in_features: D.
        horizon: forecast steps.
        out_channels: F_out.
        n_sensors: S, or None for an output without a sensor axis.
        hidden: width of one hidden layer (0: a single linear map).
        dropout: dropout before the output layer.
    """

    def __init__(
        self,
        in_features: int,
        horizon: int,
        out_channels: int,
        n_sensors: int | None = None,
        hidden: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive(horizon, "horizon")
        self.in_features, self.horizon = in_features, horizon
        self.shape = (horizon, n_sensors, out_channels) if n_sensors else (horizon, out_channels)
        n_out = horizon * (n_sensors or 1) * out_channels
        layers: list[nn.Module] = []
        width = in_features
        if hidden:
            layers += [nn.Linear(in_features, hidden), nn.GELU()]
            width = hidden
        layers += [nn.Dropout(dropout), nn.Linear(width, n_out)]
        self.net = nn.Sequential(*layers)

    def forward(self, h: Tensor) -> Tensor:
        """h: (B, D) -> (B, horizon, S, F_out)."""
        check_dim(h, 1, self.in_features, "head input features", "h")
        return self.net(h).reshape(h.shape[0], *self.shape)


class ClassHead(nn.Module):
    """Many-to-one classification logits.  features (B, D) -> (B, n_classes).

    Args:
        in_features: D.
        n_classes: K.
        hidden: width of one hidden layer (0: a single linear map).
    """

    def __init__(self, in_features: int, n_classes: int, hidden: int = 0) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes: expected at least 2, got {n_classes}")
        self.in_features, self.n_classes = in_features, n_classes
        layers: list[nn.Module] = [nn.Linear(in_features, hidden), nn.GELU()] if hidden else []
        layers.append(nn.Linear(hidden or in_features, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, h: Tensor) -> Tensor:
        """h: (B, D) -> (B, n_classes)."""
        check_dim(h, 1, self.in_features, "head input features", "h")
        return self.net(h)
