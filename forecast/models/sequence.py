"""Sequence forecaster composed from config: encoders -> recurrent backbone -> head.

One class covers the deep (bi)directional RNN with a direct multi-step head (no encoder), the
per-sensor CNN + RNN (``sensor_encoder``), and the hybrid that adds a gridded field read out at the
sensors (``grid_encoder``): every combination is a config of ``conf/model/{encoder,backbone,head}``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from forecast.models.cells.checks import check_dim
from forecast.models.compose import build

Factory = Callable[..., nn.Module]


class SequenceForecaster(nn.Module):
    """Encoders per step, a recurrent backbone over the context, a direct head.

    ``x: (B, T, S, F)`` (or ``(B, T, F)`` without ``n_sensors``), optional ``grid
    (B, T, C_g, H, W)`` and ``calendar (B, T, K)`` -> head output, e.g. ``(B, horizon, S, F_out)``
    or class logits ``(B, K)``.

    The backbone reads the context only. Its summary is the forward direction's last output
    and, for a bidirectional backbone, the backward direction's output at the first step (it has
    read the whole context backwards); the horizon is never an input, so nothing leaks.

    Args:
        in_channels: F, input features per sensor.
        horizon: forecast steps.
        backbone: partial of a recurrent stack taking ``input_size`` (e.g. StackedRecurrent).
        head: partial of a head taking some of ``in_features, horizon, out_channels,
            n_sensors``.
        out_channels: F_out (default F).
        n_sensors: S, or None for inputs without a sensor axis.
        sensor_encoder: optional partial taking ``n_sensors, in_channels`` (per-sensor CNN).
        grid_encoder: optional partial taking ``grid_channels, sensor_cells`` (hybrid).
        grid_channels: C_g of the paired grid.
        sensor_cells: each sensor's grid cell (from paired data).
        calendar_features: K; the calendar covariates are appended to each step's features.
        residual: add the last observed value of each target to the forecast.
        variables: input names (to find the targets among the inputs for ``residual``).
        targets: target names.
    """

    target_index: Tensor  # a buffer, declared for the type checker

    def __init__(
        self,
        in_channels: int,
        horizon: int,
        backbone: Factory,
        head: Factory,
        out_channels: int | None = None,
        n_sensors: int | None = None,
        sensor_encoder: Factory | None = None,
        grid_encoder: Factory | None = None,
        grid_channels: int | None = None,
        sensor_cells: tuple[tuple[int, int], ...] | None = None,
        calendar_features: int = 0,
        residual: bool = False,
        variables: Sequence[str] = (),
        targets: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.in_channels, self.horizon = in_channels, horizon
        self.out_channels = out_channels or in_channels
        self.n_sensors, self.calendar_features = n_sensors, calendar_features
        width = in_channels * (n_sensors or 1)
        self.sensor_encoder: nn.Module | None = None
        if sensor_encoder is not None:
            if n_sensors is None:
                raise ValueError("sensor_encoder: needs sensor data (n_sensors), got None")
            self.sensor_encoder = build(
                sensor_encoder, n_sensors=n_sensors, in_channels=in_channels
            )
            width = int(self.sensor_encoder.out_features)  # type: ignore[arg-type]
        self.grid_encoder: nn.Module | None = None
        if grid_encoder is not None:
            if grid_channels is None:
                raise ValueError(
                    "grid_encoder: needs paired data with a grid (DataSpec.grid_channels), got None"
                )
            self.grid_encoder = build(
                grid_encoder, grid_channels=grid_channels, sensor_cells=sensor_cells
            )
            width += int(self.grid_encoder.out_features)  # type: ignore[arg-type]
        width += calendar_features
        self.backbone = build(backbone, input_size=width)
        self.bidirectional = int(getattr(self.backbone, "num_directions", 1)) == 2
        self.hidden = int(self.backbone.hidden_size)  # type: ignore[arg-type]
        summary = self.hidden * (2 if self.bidirectional else 1)
        self.head = build(
            head,
            in_features=summary,
            horizon=horizon,
            out_channels=self.out_channels,
            n_sensors=n_sensors,
        )
        self.residual = residual
        names = list(variables) or [str(i) for i in range(in_channels)]
        wanted = list(targets) or names[: self.out_channels]
        found = not [t for t in wanted if t not in names] and len(wanted) == self.out_channels
        if residual and not found:
            raise ValueError(
                f"residual: every target must be an input; targets {wanted}, inputs {names}"
            )
        # where each target sits among the inputs (residual, and the task's persistence)
        index = [names.index(t) for t in wanted] if found else []
        self.register_buffer(
            "target_index", torch.tensor(index, dtype=torch.long), persistent=False
        )

    def features(
        self, x: Tensor, grid: Tensor | None = None, calendar: Tensor | None = None
    ) -> Tensor:
        """Per-step features for the backbone.  -> (B, T, D)."""
        check_dim(x, -1, self.in_channels, "input features")
        if self.n_sensors is not None:
            check_dim(x, 2, self.n_sensors, "sensors")
        parts = [self.sensor_encoder(x) if self.sensor_encoder is not None else x.flatten(2)]
        if self.grid_encoder is not None:
            if grid is None:
                raise ValueError("grid: this hybrid net needs the batch's 'grid' entry, got None")
            if grid.shape[:2] != x.shape[:2]:
                raise ValueError(
                    f"grid: expected (B, T) = {tuple(x.shape[:2])}, got {tuple(grid.shape[:2])}"
                )
            parts.append(self.grid_encoder(grid))
        if self.calendar_features:
            if calendar is None:
                raise ValueError(
                    f"calendar: this net expects {self.calendar_features} calendar features, "
                    "got None"
                )
            parts.append(calendar[:, : x.shape[1]].to(x.dtype))
        return torch.cat(parts, dim=-1)

    def summarise(self, out: Tensor) -> Tensor:
        """Backbone outputs (B, T, D*H) -> (B, D*H): forward last step, backward first step."""
        fwd = out[:, -1, : self.hidden]
        if not self.bidirectional:
            return fwd
        return torch.cat([fwd, out[:, 0, self.hidden :]], dim=-1)

    def forward(
        self, x: Tensor, grid: Tensor | None = None, calendar: Tensor | None = None
    ) -> Tensor:
        """x: (B, T, S, F) [+ grid, calendar] -> (B, horizon, S, F_out) (or the head's output)."""
        out, _ = self.backbone(self.features(x, grid, calendar))
        y = self.head(self.summarise(out))
        if self.residual:
            y = y + x[:, -1:].index_select(-1, self.target_index).to(y.dtype)
        return y
