"""Batch forecasting: the champion reads the latest context window, writes a CF forecast file.

The window and the CF wrapping come from :mod:`forecast.data.offline`; the file is NetCDF (or
Zarr), written atomically (temporary sibling, then rename).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from hydra.utils import instantiate
from omegaconf import DictConfig

from forecast.data.offline import forecast_dataset, latest_window
from forecast.errors import DataError, StorageError
from forecast.tracking.mlflow import absolute_tracking_uri, check_reachable
from forecast.tracking.registry import client_for, load_version, resolve


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
    variables = list(meta["variables"])
    window = latest_window(dm, variables, int(meta["context"]))  # reads only those steps
    missing = int(np.isnan(window.x).sum())
    if missing == window.x.size:
        raise DataError(
            f"the latest context window ({window.times[0]} .. {window.times[-1]}) has no "
            "observed value"
        )
    y = np.asarray(model.predict(window.x[None], params={"allow_missing": True}))[0]  # gaps filled
    targets = list(meta.get("targets") or variables)
    out = forecast_dataset(y, window, targets, f"models:/{cfg.model_name}@{cfg.alias}")
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
