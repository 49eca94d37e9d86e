"""Sources: the only place that knows file paths; each opens an ``xr.Dataset`` in the schema."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from forecast.data.synthetic import ensure_grid_store
from forecast.errors import DataNotFoundError


def open_store(path: str | Path, key: str = "data.source.path") -> xr.Dataset:
    """Open a NetCDF file or a Zarr store lazily.

    Args:
        path: a ``.zarr`` directory or a NetCDF file.
        key: the config key that set ``path``, named in the error when it does not exist.

    Returns:
        The lazily opened dataset.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataNotFoundError(f"data path does not exist: '{p}' (set by config key '{key}')")
    if p.is_dir() or p.suffix == ".zarr":
        return xr.open_zarr(p, consolidated=None, chunks=None)
    return xr.open_dataset(p, engine="h5netcdf", chunks=None)


def fingerprint(ds: xr.Dataset, path: str | Path) -> str:
    """A short hash of a dataset's path, coordinates and attributes (not its values: cheap).

    Args:
        ds: the opened dataset.
        path: where it was read from.

    Returns:
        16 hex characters identifying this data version.
    """
    h = hashlib.sha256(str(Path(path).resolve()).encode())
    for name in sorted(ds.coords):
        values = np.asarray(ds[name].values)
        h.update(name.encode())
        h.update(values.tobytes())
    h.update(json.dumps(ds.attrs, sort_keys=True, default=str).encode())
    for var in sorted(ds.data_vars):
        h.update(f"{var}{ds[var].dims}{ds[var].shape}{ds[var].dtype}".encode())
    return h.hexdigest()[:16]


@dataclass
class StoreSource:
    """A user's NetCDF or Zarr store, with dimension names mapped onto the project schema.

    Args:
        path: the store.
        rename: user names -> schema names, e.g. ``{"latitude": "lat", "longitude": "lon"}``.
    """

    path: str
    rename: dict[str, str] = field(default_factory=dict)

    def open(self) -> xr.Dataset:
        """Open the store and apply the name mapping."""
        ds = open_store(self.path)
        mapping = {k: v for k, v in self.rename.items() if k in ds.variables or k in ds.dims}
        return ds.rename(mapping) if mapping else ds


@dataclass
class SyntheticGridSource:
    """The embedded synthetic data set, generated once and cached as Zarr at ``path``."""

    path: str
    n_times: int = 960
    n_lat: int = 32
    n_lon: int = 32
    n_blobs: int = 6
    step_hours: int = 6
    noise: float = 0.02
    seed: int = 0

    def open(self) -> xr.Dataset:
        """Generate the store if needed, then open it."""
        params = {
            "n_times": self.n_times,
            "n_lat": self.n_lat,
            "n_lon": self.n_lon,
            "n_blobs": self.n_blobs,
            "step_hours": self.step_hours,
            "noise": self.noise,
            "seed": self.seed,
        }
        return open_store(ensure_grid_store(self.path, **params))
