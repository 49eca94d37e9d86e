"""Batch forecasting: the champion reads the latest context window, writes a CF forecast file.

The file is NetCDF (or Zarr), written atomically (temporary sibling, then rename).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from hydra.utils import instantiate
from omegaconf import DictConfig

from forecast.data.protocols import is_series
from forecast.errors import DataError, StorageError
from forecast.tracking.mlflow import absolute_tracking_uri, check_reachable
from forecast.tracking.registry import client_for, load_version, resolve


def latest_window(ds: xr.Dataset, variables: list[str], context: int, grid: bool) -> xr.Dataset:
    """The last ``context`` time steps of ``variables`` (lazy selection: reads only those)."""
    if ds.sizes["time"] < context:
        raise DataError(f"the store has {ds.sizes['time']} time steps, the model needs {context}")
    absent = [v for v in variables if v not in ds.data_vars]
    if absent:
        raise DataError(
            f"the store lacks the model's variables {absent} (it has "
            f"{sorted(map(str, ds.data_vars))}); point data.source.path at a store with them"
        )
    window = ds[variables].isel(time=slice(-context, None))
    return window.transpose("time", ...) if grid else window.transpose("time", "sensor")


def to_array(window: xr.Dataset, variables: list[str], grid: bool) -> np.ndarray:
    """Stack a window into the model's sample layout: ``(T, C, H, W)`` or ``(T, S, F)``."""
    axis = 1 if grid else -1
    return np.stack([window[v].values for v in variables], axis=axis).astype(np.float32)


def latest_raw(
    dm: Any, variables: list[str], context: int, grid: bool
) -> tuple[xr.Dataset, np.ndarray]:
    """The data module's last ``context`` raw steps, whole (cropped) grid, and the sample array.

    Args:
        dm: a grid or sensor data module (its ``dataset`` and, for grids, ``crop``).
        variables: the model's input variables.
        context: steps the model reads.
        grid: gridded (True) or sensor (False) layout.

    Returns:
        ``(window, x)``: the window with its coords and ``x`` shaped ``(T, C, H, W)`` or
        ``(T, S, F)``, float32, in physical units (NaN where missing).
    """
    ds = dm.dataset
    if grid and getattr(dm, "crop", None):
        ds = ds.isel({d: slice(a, b) for d, (a, b) in dm.crop.items()})
    window = latest_window(ds, variables, context, grid)
    return window, to_array(window, variables, grid)


def forecast_dataset(
    y: np.ndarray, window: xr.Dataset, targets: list[str], grid: bool, model: str
) -> xr.Dataset:
    """Wrap one forecast in CF coordinates.

    Args:
        y: ``(horizon, C_out, H, W)`` or ``(horizon, S, F_out)`` in physical units.
        window: the context window the forecast was issued from (its coords are reused).
        targets: output variable names.
        grid: gridded (True) or sensor (False) layout.
        model: the model reference, recorded as an attribute.

    Returns:
        Dims ``(time, lead_time, lat, lon)`` or ``(time, lead_time, sensor)``, where ``time`` is
        the issue time (the last observed step) and ``valid_time = time + lead_time``.
    """
    times = pd.DatetimeIndex(window["time"].values)
    if len(times) < 2:
        raise DataError("cannot infer the time step from a context of one step")
    step = times[-1] - times[-2]
    issue = times[-1]
    lead = pd.to_timedelta(np.arange(1, y.shape[0] + 1) * step)
    space = [str(d) for d in window[targets[0]].dims if d != "time"] if grid else ["sensor"]
    data = {}
    for i, name in enumerate(targets):
        field = y[:, i] if grid else y[..., i]
        data[name] = (("time", "lead_time", *space), field[None], dict(window[name].attrs))
    coords: dict[str, Any] = {d: window[d] for d in space if d in window.coords}
    coords["time"] = ("time", [issue], {"standard_name": "forecast_reference_time"})
    coords["lead_time"] = ("lead_time", lead, {"standard_name": "forecast_period"})
    coords["valid_time"] = (("time", "lead_time"), (issue + lead).values[None])
    ds = xr.Dataset(data, coords=coords)
    ds["valid_time"].attrs["standard_name"] = "time"
    ds.attrs.update({"Conventions": "CF-1.8", "source": model, "title": "forecast"})
    return ds


def remove_stale(path: Path) -> int:
    """Delete temporaries of ``path`` left by writers that were killed (their PID is gone).

    Returns:
        How many were removed.
    """
    removed = 0
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 : -len(".tmp")]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # a live writer owns it
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def write_atomic(ds: xr.Dataset, path: Path) -> Path:
    """Write NetCDF (``.nc``) or Zarr (``.zarr``) to a temporary sibling, then rename into place.

    A reader never sees a half-written file: ``os.replace`` is atomic for a file; a Zarr directory
    is swapped in with two renames.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.suffix == ".zarr":
            ds.to_zarr(tmp, mode="w", consolidated=True)
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            if path.exists():
                path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        elif path.suffix == ".nc":
            ds.to_netcdf(tmp, engine="h5netcdf")
            os.replace(tmp, path)
        else:
            raise DataError(f"forecast output must end in .nc or .zarr, got '{path}'")
    except OSError as e:  # full disk, read-only or vanished directory: nothing is left behind
        why = e.strerror or " ".join(str(e).split())[:200]
        raise StorageError(f"cannot write {path}: {why}; no partial file was kept") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    return path


def forecast(cfg: DictConfig) -> Path:
    """The batch forecast job: load ``cfg.model_name@cfg.alias``, forecast, write.

    Args:
        cfg: the composed ``conf/forecast.yaml``.

    Returns:
        The written file.
    """
    uri = absolute_tracking_uri(str(cfg.tracking_uri))
    check_reachable(uri)
    # the alias moves: resolve it once, load that version and name it in the file
    mv = resolve(client_for(uri), str(cfg.model_name), str(cfg.alias))
    model = load_version(uri, str(cfg.model_name), str(mv.version))
    meta = model.unwrap_python_model().metadata
    dm = instantiate(cfg.data)
    if not is_series(dm):
        raise DataError(
            f"data: {type(dm).__name__} holds independent sequences, not one series with a "
            "latest time, so there is no latest window to forecast from; serve the model "
            "(python -m pipelines.serve) and send it the context frames instead"
        )
    grid = meta.get("grid") is not None
    variables = list(meta["variables"])
    window, x = latest_raw(dm, variables, int(meta["context"]), grid)
    missing = int(np.isnan(x).sum())
    if missing == x.size:
        raise DataError(
            f"the latest context window ({window['time'].values[0]} .. "
            f"{window['time'].values[-1]}) has no observed value"
        )
    y = np.asarray(model.predict(x[None], params={"allow_missing": True}))[0]  # gaps filled
    targets = list(meta.get("targets") or variables)
    out = forecast_dataset(y, window, targets, grid, f"models:/{cfg.model_name}@{cfg.alias}")
    out.attrs["missing_inputs"] = missing
    out.attrs.update(
        model_name=str(cfg.model_name),
        model_version=str(mv.version),
        model_alias=str(cfg.alias),
        run_id=str(mv.run_id or ""),
    )
    issue = pd.Timestamp(out["time"].values[0]).strftime("%Y%m%dT%H%M")
    path = Path(str(cfg.output_dir)) / f"{cfg.model_name}_{issue}.{cfg.format}"
    return write_atomic(out, path)
