"""What a network must know about its inputs, read from data metadata only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
        lat: latitude (degrees) of each grid row when the grid has a ``lat`` coordinate and
            samples are the whole grid (latitude-weighted metrics), else None.
        step_hours: hours between two model time steps when the time axis is regular, else None
            (labels lead times in hours).
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
    lat: tuple[float, ...] | None = None
    step_hours: float | None = None


def step_hours(times: np.ndarray, step: int) -> float | None:
    """Hours spanned by ``step`` rows of a regular datetime axis (None: irregular or not dates)."""
    if len(times) < 2 or not np.issubdtype(times.dtype, np.datetime64):
        return None
    gaps = np.unique(np.diff(times))
    if len(gaps) != 1:
        return None
    return float(gaps[0] / np.timedelta64(1, "h")) * step
