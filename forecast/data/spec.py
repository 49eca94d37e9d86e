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
        targets: forecast variable names in output order (sensor data may forecast a subset).
        calendar_features: ``K`` of the optional ``calendar (B, T, K)`` batch entry (0: none).
        grid_channels: ``C_g`` of the paired ``grid (B, T, C_g, H, W)`` entry, else None.
        sensor_cells: paired data: each sensor's ``(row, col)`` in the grid, nearest cell.
        sensor_coords: each sensor's ``(lat, lon)`` (or ``(y, x)``) when known.
        full_grid: ``(H, W)`` of the whole (cropped) grid when samples are spatial patches
            (``grid`` is then the patch the net reads); None when samples are the whole grid.
            Serving and batch forecasts read the whole grid.
    """

    in_channels: int
    out_channels: int
    context: int
    horizon: int
    grid: tuple[int, int] | None = None
    n_sensors: int | None = None
    variables: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    calendar_features: int = 0
    grid_channels: int | None = None
    sensor_cells: tuple[tuple[int, int], ...] | None = None
    sensor_coords: tuple[tuple[float, float], ...] | None = None
    full_grid: tuple[int, int] | None = None
