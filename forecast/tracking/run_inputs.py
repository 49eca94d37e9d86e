"""What a run was started with: its command line and its input data set (MLflow dataset API)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.tracking import MlflowClient

MAX_TAG = 5000


def log_invocation(client: MlflowClient, run_id: str, argv: list[str]) -> None:
    """Tag the run with its command line and, under Hydra, the overrides it was given."""
    client.set_tag(run_id, "command", shlex.join(argv)[:MAX_TAG])
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # not inside a Hydra app (a test or a notebook)
        return
    client.set_tag(run_id, "overrides", " ".join(overrides)[:MAX_TAG])


def time_step(dm: Any) -> str | None:
    """The model's time step (data spacing times the module's ``step``), e.g. ``"0 days 06:00:00"``.

    None when the module has no time axis (sequence sets such as Moving MNIST), fewer than two
    steps, or a time axis that is not datetime-like.
    """
    ds = getattr(dm, "dataset", None)
    if ds is None or "time" not in ds.coords:
        return None
    times = ds["time"].values
    if len(times) < 2 or not np.issubdtype(times.dtype, np.datetime64):
        return None
    return str(pd.Timedelta(times[1] - times[0]) * int(getattr(dm, "step", 1)))


def data_source(dm: Any) -> str:
    """The data module's source path as a URI (file URIs for local paths)."""
    path = str(getattr(getattr(dm, "source", None), "path", None) or getattr(dm, "path", "unknown"))
    return Path(path).resolve().as_uri() if "://" not in path else path


def log_data_input(client: MlflowClient, run_id: str, dm: Any, name: str) -> None:
    """Log the run's input data set: name, digest (the data fingerprint), source, splits.

    The digest is the same fingerprint the scheduled cycle compares to decide "new data", so the
    run page's Datasets panel and the cycle agree on which data version a model saw.
    """
    ds: Any = getattr(dm, "dataset", None)  # None: a module of generated sequences, no store
    names = [v for v in dm.variables if ds is not None and v in ds]
    schema = {v: {"dims": list(ds[v].dims), "dtype": str(ds[v].dtype)} for v in names}
    bounds = {k: list(v) for k, v in dm.bounds().items()}
    sizes = {str(k): int(v) for k, v in ds.sizes.items()} if ds is not None else {}
    profile = {"sizes": sizes, "splits": bounds}
    dataset = Dataset(
        name=name,
        digest=dm.fingerprint(),
        source_type="local" if data_source(dm).startswith("file:") else "external",
        source=json.dumps({"uri": data_source(dm)}),
        schema=json.dumps(schema),
        profile=json.dumps(profile),
    )
    inputs = [DatasetInput(dataset, [InputTag("mlflow.data.context", split)]) for split in bounds]
    client.log_inputs(run_id, datasets=inputs)
