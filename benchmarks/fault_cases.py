"""The catalogue of bad inputs: each is what a user would type, and the words the answer must use.

Shared by the table-driven tests (tests/faults/) and by ``python -m benchmarks.faults``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

T, GRID = 160, (8, 8)


def grid_store(path: Path, b: np.ndarray | None = None) -> Path:
    """A small NetCDF store with variables ``a`` (noise) and ``b`` (given, default noise)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((T, *GRID)).astype("float32")
    b = rng.standard_normal((T, *GRID)) if b is None else b
    times = pd.date_range("2020-01-01", periods=T, freq="6h")
    ds = xr.Dataset(
        {"a": (("time", "lat", "lon"), a), "b": (("time", "lat", "lon"), b.astype("float32"))},
        coords={
            "time": times,
            "lat": np.linspace(-10, 10, GRID[0]),
            "lon": np.linspace(0, 20, GRID[1]),
        },
    )
    ds.to_netcdf(path)
    return path


def bad_dates_csv(path: Path) -> Path:
    """A sensor table whose ``date`` column holds text that is no date."""
    rows = ["date,HUFL,OT"] + [f"2020-01-{d:02d} 00:00,1.0,2.0" for d in range(1, 20)]
    rows.insert(5, "not-a-date,1.0,2.0")
    path.write_text("\n".join(rows) + "\n")
    return path


def store_args(path: Path) -> list[str]:
    """Overrides that train on the store at ``path``."""
    return ["data=grid_store", f"data.source.path={path}", "data.variables=[a,b]"]


def train_cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """``name -> (pipelines.train overrides, words the one error line must contain)``."""
    zero = grid_store(tmp / "zero_var.nc", np.full((T, *GRID), 3.0))
    huge = grid_store(
        tmp / "overflow.nc", np.random.default_rng(1).standard_normal((T, *GRID)) * 1e30
    )
    return {
        "unknown key": (["trainer.max_epochz=3"], "max_epochz"),
        "unknown option": (["model=no_such_model"], "expected one of"),
        "bad override syntax": (["trainer.max_epochs=["], "bad override 'trainer.max_epochs=['"),
        "batch size 0": (["data.batch_size=0"], "data.batch_size"),
        "context 0": (["context_steps=0"], "data.context"),
        "hidden size 0": (["model.net.hidden_channels=[0]"], "model.net.hidden_channels"),
        "patch not dividing grid": (["model.net.patch=3"], "model.net.patch: 3 does not divide"),
        "negative lr": (["model.optimizer.lr=-1"], "model.optimizer.lr"),
        "unknown normalisation": (["data.normalization=foo"], "data.normalization"),
        "epochs not integer": (["trainer.max_epochs=abc"], "trainer.max_epochs"),
        "limit not a count": (["trainer.limit_train_batches=1.5"], "trainer.limit_train_batches"),
        "tbptt on final-state net": (["model.tbptt_k1=4"], "final state"),
        "tbptt on bidirectional net": (
            ["model=sensor_rnn", "data=synthetic_sensors", "+model.tbptt_k1=4"],
            "bidirectional",
        ),
        "missing data path": (
            ["data=grid_store", f"data.source.path={tmp / 'nowhere.zarr'}", "data.variables=[air]"],
            "data.source.path",
        ),
        "mandatory path unset": (["data=grid_store", "data.variables=[air]"], "data.source.path"),
        "csv with unparseable dates": (
            [
                "data=etth1",
                f"data.source.path={bad_dates_csv(tmp / 'bad_dates.csv')}",
                "data.variables=[HUFL,OT]",
                "data.targets=[OT]",
            ],
            "cannot parse the dates",
        ),  # fmt: skip
        "zero-variance variable": (store_args(zero), "constant in the training split"),
        "stats overflow float32": (store_args(huge), "overflow float32"),
    }


def request_cases(sample_shape: tuple[int, ...]) -> dict[str, tuple[bytes, str | None, int, str]]:
    """``name -> (body, content type, status, words)`` for ``POST /invocations``."""
    good = np.zeros((1, *sample_shape)).tolist()
    nan = json.dumps({"inputs": good}).replace("0.0", "NaN", 1).encode()
    return {
        "malformed json": (b'{"inputs": [[1, 2', None, 400, "not valid JSON"),
        "not an object": (b"[1, 2, 3]", None, 400, "must be a JSON object"),
        "deep nesting": (b"[" * 5000 + b"]" * 5000, None, 400, "nests deeper"),
        "unknown key": (json.dumps({"inputs": good, "foo": 1}).encode(), None, 400, "'foo'"),
        "unknown param": (
            json.dumps({"inputs": good, "params": {"nope": 1}}).encode(),
            None,
            400,
            "'nope'",
        ),
        "table": (b'{"dataframe_split": {"columns": ["a"], "data": [[1]]}}', None, 400, "table"),
        "ragged": (b'{"inputs": [[1.0, 2.0], [3.0]]}', None, 400, "rectangular"),
        "wrong shape": (b'{"inputs": [[1.0, 2.0]]}', None, 400, "shape"),
        "strings": (b'{"inputs": [[["a"]]]}', None, 400, "numbers"),
        "nan": (nan, None, 400, "non-finite"),
        "csv": (b"a,b\n1,2\n", "text/csv", 415, "application/json"),
        "no content type": (json.dumps({"inputs": good}).encode(), "", 200, ""),
    }
