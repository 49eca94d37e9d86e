"""The loader benchmarks' stores: one random-normal field as Zarr v3 (zstd and raw) and NetCDF.

Random normal values: compression gains nothing on them, so a codec's cost shows undiluted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

CONTEXT, HORIZON = 12, 6  # the window the benchmarks read: the default config's


def write_stores(
    folder: Path, n_times: int, n_lat: int, n_lon: int, seed: int = 0, raw: bool = True
) -> dict[str, Path]:
    """Write the field as NetCDF (contiguous), Zarr v3 (zstd) and, with ``raw``, uncompressed Zarr.

    Zarr chunks are one window long in time and hold the whole grid, so a window touches at most
    two chunks.

    Returns:
        ``{"zarr": ..., "zarr_raw": ..., "netcdf": ...}`` paths (no ``zarr_raw`` without ``raw``).
    """
    rng = np.random.default_rng(seed)
    field = rng.standard_normal((n_times, n_lat, n_lon), dtype=np.float32)
    ds = xr.Dataset(
        {"field": (("time", "lat", "lon"), field)},
        coords={
            "time": pd.date_range("2000-01-01", periods=n_times, freq="6h"),
            "lat": np.linspace(60, 20, n_lat),
            "lon": np.linspace(230, 300, n_lon),
        },
    )
    folder.mkdir(parents=True, exist_ok=True)
    nc_path = folder / "bench.nc"
    ds.to_netcdf(nc_path, engine="h5netcdf")  # contiguous: a window is one seek + one read
    zarr_path = folder / "bench.zarr"
    # chunks of one window length along time, whole grid: a window touches at most 2 chunks
    ds.chunk({"time": CONTEXT + HORIZON}).to_zarr(zarr_path, zarr_format=3, consolidated=False)
    if not raw:
        return {"zarr": zarr_path, "netcdf": nc_path}
    # the same chunks without compression: what a store chosen for window reads can look like
    raw_path = folder / "bench_raw.zarr"
    ds.chunk({"time": CONTEXT + HORIZON}).to_zarr(
        raw_path, zarr_format=3, consolidated=False, encoding={"field": {"compressors": None}}
    )
    return {"zarr": zarr_path, "zarr_raw": raw_path, "netcdf": nc_path}
