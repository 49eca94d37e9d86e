"""What a network must know about its inputs, read from data metadata only."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSpec:
    """Shapes and names the nets and the serving wrapper need.

    Args:
        in_channels: input variables (channels) per time step.
        out_channels: forecast variables per time step.
        context: input time steps.
        horizon: forecast time steps.
        grid: ``(H, W)`` for gridded data, else None.
        n_sensors: number of sensors for sensor data, else None.
        variables: input variable names in channel order.
    """

    in_channels: int
    out_channels: int
    context: int
    horizon: int
    grid: tuple[int, int] | None = None
    n_sensors: int | None = None
    variables: tuple[str, ...] = ()
