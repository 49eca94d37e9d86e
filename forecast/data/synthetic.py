"""Embedded synthetic data: a seeded field of advected, deforming blobs on a periodic lat/lon grid.

It needs no download, is deterministic for a seed, and has real spatio-temporal structure: blobs
move with their own velocity (so persistence is beatable), their width breathes and their amplitude
carries a daily cycle (so the net must learn dynamics, not copy the last frame).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from filelock import FileLock


def make_grid(
    n_times: int = 960,
    n_lat: int = 32,
    n_lon: int = 32,
    n_blobs: int = 6,
    step_hours: int = 6,
    noise: float = 0.02,
    seed: int = 0,
) -> xr.Dataset:
    """Build the synthetic gridded data set.

    Args:
        n_times: number of time steps.
        n_lat: grid rows (latitude points).
        n_lon: grid columns (longitude points).
        n_blobs: number of moving Gaussian blobs.
        step_hours: spacing of the time axis in hours.
        noise: standard deviation of additive white noise.
        seed: random seed; the same arguments always give the same data set.

    Returns:
        Dataset with one float32 variable ``field(time, lat, lon)`` and CF-style coordinates.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_times, dtype=np.float64)[:, None, None]  # (T, 1, 1)
    yy, xx = np.meshgrid(np.arange(n_lat), np.arange(n_lon), indexing="ij")  # (H, W)
    field = np.zeros((n_times, n_lat, n_lon), dtype=np.float64)
    steps_per_day = 24 / step_hours
    for _ in range(n_blobs):
        cy, cx = rng.uniform(0, n_lat), rng.uniform(0, n_lon)
        vy, vx = rng.uniform(-0.6, 0.6), rng.uniform(-0.9, 0.9)  # grid cells per step
        width = rng.uniform(2.0, 4.5)
        amp = rng.uniform(0.6, 1.4) * rng.choice([-1.0, 1.0])
        phase = rng.uniform(0, 2 * np.pi)
        # periodic displacement from the moving centre
        dy = (yy[None] - (cy + vy * t) + n_lat / 2) % n_lat - n_lat / 2
        dx = (xx[None] - (cx + vx * t) + n_lon / 2) % n_lon - n_lon / 2
        w = width * (1.0 + 0.3 * np.sin(2 * np.pi * t / 97.0 + phase))  # slow deformation
        a = amp * (1.0 + 0.25 * np.sin(2 * np.pi * t / steps_per_day + phase))  # daily cycle
        field += a * np.exp(-(dy**2 + dx**2) / (2 * w**2))
    field += noise * rng.standard_normal(field.shape)
    field = 280.0 + 5.0 * field  # a temperature-like scale (K) so normalisation matters

    time = pd.date_range("2020-01-01", periods=n_times, freq=f"{step_hours}h")
    lat = np.linspace(60.0, 20.0, n_lat)
    lon = np.linspace(230.0, 300.0, n_lon)
    ds = xr.Dataset(
        {"field": (("time", "lat", "lon"), field.astype(np.float32))},
        coords={"time": time, "lat": lat, "lon": lon},
    )
    ds["field"].attrs = {"units": "K", "long_name": "synthetic advected field"}
    ds["lat"].attrs = {"units": "degrees_north", "standard_name": "latitude"}
    ds["lon"].attrs = {"units": "degrees_east", "standard_name": "longitude"}
    ds["time"].attrs = {"standard_name": "time"}
    ds.attrs = {
        "title": "forecast synthetic advected blobs",
        "generator": "forecast.data.synthetic",
    }
    return ds


def _matches(path: Path, key: str) -> bool:
    """Whether ``path`` holds a readable store generated with the parameters ``key``."""
    if not path.exists():
        return False
    try:
        with xr.open_zarr(path, consolidated=False) as existing:
            return bool(existing.attrs.get("params_key") == key)
    except Exception:  # noqa: BLE001 - an unreadable cache is rebuilt, never trusted
        return False


def ensure_grid_store(path: str | os.PathLike[str], **params: int | float) -> Path:
    """Write the synthetic data set as Zarr at ``path`` once; reuse it while the parameters match.

    Several processes may start on a fresh root at once (torchrun ranks, parallel sweep jobs):
    generation runs under a ``filelock.FileLock`` beside the store, and a process that waited
    finds the store written and reuses it. The store is written to a temporary sibling and
    renamed into place, so a crash never leaves a half-written store where a later run reads it.

    Args:
        path: target ``.zarr`` directory.
        **params: keyword arguments of :func:`make_grid`.

    Returns:
        The store path.
    """
    path = Path(path)
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    if _matches(path, key):  # the common case: no lock taken
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{path.name}.lock"))):
        if _matches(path, key):  # written by the process we waited for
            return path
        ds = make_grid(**params)  # type: ignore[arg-type]
        ds.attrs["params_key"] = key
        ds.attrs["params"] = json.dumps(params, sort_keys=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        ds.chunk({"time": 64}).to_zarr(tmp, mode="w", zarr_format=3, consolidated=False)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    return path


def make_sensors(
    grid: xr.Dataset,
    n_sensors: int = 8,
    noise: float = 0.5,
    missing: float = 0.0,
    seed: int = 0,
    variable: str = "field",
) -> xr.Dataset:
    """Noisy point sensors sampled from a gridded field: the sensor half of a paired data set.

    Each sensor sits on a distinct grid cell and reports the field there plus white noise, and a
    second variable (the field's local west-east gradient) so sensor data have several features.

    Args:
        grid: a dataset like :func:`make_grid`'s, ``variable(time, lat, lon)``.
        n_sensors: number of sensors (at most the number of grid cells).
        noise: standard deviation of the measurement noise (field units).
        missing: fraction of readings knocked out as NaN gaps (for masks and skipping).
        seed: random seed.
        variable: the gridded variable to sample.

    Returns:
        Dataset with ``field(time, sensor)`` and ``gradient(time, sensor)`` (float32) and sensor
        coordinates ``lat``, ``lon`` (degrees) plus ``row``, ``col`` (grid indices).
    """
    rng = np.random.default_rng(seed)
    n_lat, n_lon = grid.sizes["lat"], grid.sizes["lon"]
    if not 0 < n_sensors <= n_lat * n_lon:
        raise ValueError(f"n_sensors must be in [1, {n_lat * n_lon}], got {n_sensors}")
    cells = rng.choice(n_lat * n_lon, size=n_sensors, replace=False)
    rows, cols = cells // n_lon, cells % n_lon
    values = np.asarray(grid[variable].values, dtype=np.float64)  # (T, H, W)
    at = values[:, rows, cols]  # (T, S)
    grad = (values[:, rows, (cols + 1) % n_lon] - values[:, rows, (cols - 1) % n_lon]) / 2
    at = at + noise * rng.standard_normal(at.shape)
    grad = grad + 0.5 * noise * rng.standard_normal(grad.shape)
    if missing > 0:
        gaps = rng.random(at.shape) < missing
        at[gaps] = np.nan
        grad[gaps] = np.nan
    names = [f"s{i:02d}" for i in range(n_sensors)]
    ds = xr.Dataset(
        {
            "field": (("time", "sensor"), at.astype(np.float32)),
            "gradient": (("time", "sensor"), grad.astype(np.float32)),
        },
        coords={
            "time": grid["time"].values,
            "sensor": names,
            "lat": ("sensor", grid["lat"].values[rows]),
            "lon": ("sensor", grid["lon"].values[cols]),
            "row": ("sensor", rows.astype(np.int64)),
            "col": ("sensor", cols.astype(np.int64)),
        },
    )
    ds["field"].attrs = {"units": "K", "long_name": "sensor reading of the synthetic field"}
    ds.attrs = {"title": "forecast synthetic sensors", "generator": "forecast.data.synthetic"}
    return ds


def validate_batch(batch: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> None:
    """Assert a batch has these keys with these shapes, masks are bool and values finite.

    Args:
        batch: a collated batch (dict of tensors).
        shapes: expected shape per key.
    """
    import torch

    for key, shape in shapes.items():
        t = batch[key]
        assert isinstance(t, torch.Tensor), f"{key}: not a tensor"
        assert tuple(t.shape) == tuple(shape), f"{key}: shape {tuple(t.shape)} != {shape}"
        if key.endswith("mask"):
            assert t.dtype == torch.bool, f"{key}: dtype {t.dtype}, expected bool"
        elif t.is_floating_point():
            assert bool(torch.isfinite(t).all()), f"{key}: non-finite values"


def write_feed(path: str | os.PathLike[str], n_times: int, **params: int | float) -> Path:
    """Start a growing synthetic feed: the first ``n_times`` steps of :func:`make_grid` as Zarr.

    Unlike :func:`ensure_grid_store`, a feed is never regenerated by a reader: it only grows, by
    :func:`extend_feed`, the way an operational store gains new days. Read it with
    ``data=grid_store``.

    Args:
        path: target ``.zarr`` directory (replaced if present).
        n_times: initial number of time steps.
        **params: the other keyword arguments of :func:`make_grid` (grid size, seed, ...).

    Returns:
        The store path.
    """
    path = Path(path)
    ds = make_grid(n_times=n_times, **params)  # type: ignore[arg-type]
    ds.attrs["params"] = json.dumps(params, sort_keys=True)
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.chunk({"time": 64}).to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return path


def extend_feed(path: str | os.PathLike[str], n_more: int) -> int:
    """Append the next ``n_more`` steps to a feed made by :func:`write_feed` (deterministic).

    The appended values are exactly those a feed written at the longer length would hold: the
    generator draws its random numbers in time order, so a longer series extends a shorter one.

    Args:
        path: the feed.
        n_more: steps to append (>= 1).

    Returns:
        The feed's new number of time steps.
    """
    if n_more < 1:
        raise ValueError(f"n_more must be >= 1, got {n_more}")
    with xr.open_zarr(path, consolidated=False) as ds:
        attrs = dict(ds.attrs)
        params = json.loads(attrs["params"])
        n_now = int(ds.sizes["time"])
    full = make_grid(n_times=n_now + n_more, **params)
    tail = full.isel(time=slice(n_now, None))
    tail.attrs = attrs  # an append rewrites the group's attributes: keep those of the first write
    tail.chunk({"time": 64}).to_zarr(path, mode="a", append_dim="time", consolidated=False)
    return n_now + n_more
