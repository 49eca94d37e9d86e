"""The project schema: dimension names, the name mapping from a user's data, and fail-fast checks.

Every source ends in :func:`standardize`, so the rest of the data layer only ever sees ``time``,
``lat``/``lon`` (or ``y``/``x``), ``sensor`` and the configured variables. Each check raises one
:class:`~forecast.errors.DataError` that names the file, the variable and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from forecast.errors import DataError

TIME = "time"
SENSOR = "sensor"
VARIABLE = "variable"
# Gridded data use CF short names; projected grids keep ``y``/``x``.
SPATIAL_DIMS: tuple[tuple[str, str], ...] = (("lat", "lon"), ("y", "x"))


def standardize(
    ds: xr.Dataset, rename: Mapping[str, str] | None = None, path: str = "<memory>"
) -> xr.Dataset:
    """Rename a user's dims/variables onto the schema; names absent from ``ds`` are an error.

    Args:
        ds: the opened dataset.
        rename: user name -> schema name, e.g. ``{"latitude": "lat", "valid_time": "time"}``.
        path: where ``ds`` came from, for error messages.

    Returns:
        The renamed dataset.
    """
    rename = dict(rename or {})
    present = set(map(str, ds.variables)) | set(map(str, ds.dims))
    # A mapping whose target already exists is a no-op (the same config fits several files).
    mapping = {k: v for k, v in rename.items() if k in present and k != v}
    unknown = [k for k in rename if k not in present and rename[k] not in present]
    if unknown:
        raise DataError(
            f"{path}: names {unknown} in the source's `rename` are in neither the dims nor the "
            f"variables ({sorted(present)}); fix `rename` in the data config"
        )
    return ds.rename(mapping) if mapping else ds


def spatial_dims(ds: xr.Dataset, var: str, path: str) -> tuple[str, str]:
    """The two spatial dims of a gridded variable: ``("lat", "lon")`` or ``("y", "x")``."""
    dims = tuple(map(str, ds[var].dims))
    for pair in SPATIAL_DIMS:
        if dims == (TIME, *pair):
            return pair
    raise DataError(
        f"{path}: variable '{var}' has dims {dims}; expected ('time', 'lat', 'lon') or "
        "('time', 'y', 'x'); map your names with the source's `rename` (e.g. "
        "{latitude: lat, longitude: lon}) or transpose the data"
    )


def check_variables(
    ds: xr.Dataset, variables: Sequence[str], dims: tuple[str, ...] | None, path: str
) -> None:
    """Each variable exists, is numeric and (when ``dims`` is given) has exactly those dims."""
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise DataError(
            f"{path}: variables {missing} not found; available: {sorted(map(str, ds.data_vars))}; "
            "fix `variables` in the data config or map names with `rename`"
        )
    if TIME not in ds.dims:
        names = ", ".join(f"'{v}'" for v in variables)
        raise DataError(
            f"{path}: no 'time' dimension for variables {names} (dims: "
            f"{sorted(map(str, ds.dims))}); map yours with `rename`, e.g. {{valid_time: time}}"
        )
    for v in variables:
        kind = ds[v].dtype.kind
        if kind not in "biuf":
            raise DataError(
                f"{path}: variable '{v}' has non-numeric dtype {ds[v].dtype}; convert it to "
                "numbers or drop it from `variables`"
            )
        if dims is not None and tuple(map(str, ds[v].dims)) != dims:
            raise DataError(
                f"{path}: variable '{v}' has dims {tuple(map(str, ds[v].dims))}, expected {dims}; "
                "map names with `rename` or drop the variable"
            )


def check_time(ds: xr.Dataset, path: str, variable: str = "") -> pd.Timedelta | None:
    """The time axis is strictly increasing with one regular step; returns that step.

    Args:
        ds: dataset with a ``time`` coordinate (datetimes, or integers for frame indices).
        path: for error messages.
        variable: the variable being read, for error messages.

    Returns:
        The step as a Timedelta (None for a non-datetime axis or a single step).
    """
    what = f"{path} (variable '{variable}')" if variable else path
    if TIME not in ds.coords:
        return None
    t = ds[TIME].values
    if len(t) < 2:
        return None
    diffs = np.diff(t)
    zero = diffs.dtype.type(0)
    if np.any(diffs == zero):
        i = int(np.argmax(diffs == zero))
        raise DataError(
            f"{what}: duplicate timestamp {t[i]} at index {i + 1}; drop duplicates "
            "(e.g. ds.drop_duplicates('time')) before training"
        )
    if np.any(diffs < zero):
        i = int(np.argmax(diffs < zero))
        raise DataError(
            f"{what}: timestamps are not increasing ({t[i]} is followed by {t[i + 1]} at index "
            f"{i + 1}); sort by time (ds.sortby('time')) before training"
        )
    step = diffs[0]
    if np.any(diffs != step):
        i = int(np.argmax(diffs != step))
        raise DataError(
            f"{what}: irregular time step: {diffs[i]} between {t[i]} and {t[i + 1]} but {step} "
            "before; resample onto a regular axis (ds.resample(time=...)) and let the masks mark "
            "the gaps"
        )
    return pd.Timedelta(step) if np.issubdtype(diffs.dtype, np.timedelta64) else None


def check_length(n_times: int, need: int, path: str, variable: str = "") -> None:
    """The series has at least one window of ``need`` steps."""
    if n_times < need:
        what = f"{path} (variable '{variable}')" if variable else path
        raise DataError(
            f"{what}: series has {n_times} time steps, shorter than one window of {need} "
            "(context + horizon, times the time step); use a longer series or a shorter window"
        )


def check_coords(ds: xr.Dataset, path: str) -> None:
    """No NaN in a numeric coordinate (a NaN latitude or time would misplace data silently)."""
    for name in ds.coords:
        values = np.asarray(ds[name].values)
        if values.dtype.kind in "fcmM" and np.isnan(values).any():
            raise DataError(
                f"{path}: coordinate '{name}' has NaN values (first at index "
                f"{int(np.argmax(np.isnan(values).ravel()))}); drop or fill those entries"
            )


def validate(
    ds: xr.Dataset, variables: Sequence[str], dims: tuple[str, ...] | None, path: str
) -> xr.Dataset:
    """Fail fast on missing dims/variables, non-numeric data, NaN coordinates, bad time axes.

    Args:
        ds: a dataset already mapped onto the schema (:func:`standardize`).
        variables: the variables that will be read.
        dims: the exact dims each variable must have, or None to skip that check.
        path: where ``ds`` came from, for error messages.

    Returns:
        ``ds`` unchanged.
    """
    check_variables(ds, variables, dims, path)
    check_coords(ds, path)
    check_time(ds, path, variables[0] if variables else "")
    return ds
