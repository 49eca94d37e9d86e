"""What a linear model of the same inputs reaches on a grid preset: ridge regression per lead.

Run: python -m benchmarks.grid_ridge [--preset ncep_air] [--alphas 1,10,100,...]
The preset's own store, variable, splits, context and horizon are read from its composed config.
Every window's input is its ``context`` frames of the whole field (z-scored with the training
split's mean and standard deviation); the target is each lead's change from the last frame. One
ridge regression (dual form: the n x n Gram matrix of the training windows, so 10,600 inputs cost
nothing) is fitted on the training split per ridge strength; the strength is chosen on the
validation split's latitude-weighted RMSE, and the test split is scored with it, beside
persistence on the same windows. Windows keep all their targets inside the split (the context may
reach back into the previous one), as the data module's windows do.

It bounds nothing by itself; it says how much of the preset's skill a linear map of the same
inputs already has, and so how much room the data leaves for the net. The last line is one JSON
object ``{"cases": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
from rich.console import Console
from rich.table import Table

from benchmarks.skill_rows import compose_case
from forecast.evaluation.errors import latitude_weights


def windows(field: np.ndarray, times: np.ndarray, split: tuple[str, str], context: int,
            horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(inputs (n, context*P), last frames (n, P), targets (n, horizon, P)) of one split."""
    start, stop = np.datetime64(split[0]), np.datetime64(split[1])
    inside = np.flatnonzero((times >= start) & (times < stop))
    origins = [i for i in range(context - 1, len(times) - horizon)
               if i + 1 >= inside[0] and i + horizon <= inside[-1]]  # fmt: skip
    flat = field.reshape(len(times), -1)
    x = np.stack([flat[i - context + 1 : i + 1].ravel() for i in origins])
    last = flat[origins]
    y = np.stack([flat[i + 1 : i + horizon + 1] for i in origins])
    return x, last, y


def rmse_lat(pred: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Latitude-weighted RMSE per lead: pred, truth (n, horizon, H, W) -> (horizon,)."""
    return np.sqrt((weights[:, None] * (pred - truth) ** 2).mean(axis=(0, 2, 3)))


def main(argv: list[str] | None = None) -> None:
    """Fit, choose on validation, score the test split; print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="ncep_air")
    parser.add_argument("--alphas", default="1,10,100,1000,10000,100000")
    args = parser.parse_args(argv)
    began = time.time()
    with tempfile.TemporaryDirectory() as tmp:  # composed only: nothing is written there
        cfg = compose_case(args.preset, None, 0, Path(tmp), [])
    data = cfg.data
    ds = xr.open_dataset(data.source.path, engine="zarr")
    name = data.variables[0]
    field = ds[name].astype("float64").values  # (T, H, W)
    times = ds["time"].values
    lat = ds[[d for d in ds[name].dims if d.startswith("lat")][0]].values
    weights = latitude_weights(lat).double().numpy()
    context, horizon = int(data.context), int(data.horizon)
    shape = field.shape[1:]
    train_range = tuple(data.splits.train)
    mask = (times >= np.datetime64(train_range[0])) & (times < np.datetime64(train_range[1]))
    mean, std = field[mask].mean(), field[mask].std()
    z = (field - mean) / std
    parts = {s: windows(z, times, tuple(data.splits[s]), context, horizon)
             for s in ("train", "val", "test")}  # fmt: skip
    xt, lt, yt = parts["train"]
    x_mean = xt.mean(axis=0)
    d_train = (yt - lt[:, None]).reshape(len(xt), -1)
    d_mean = d_train.mean(axis=0)
    xc = xt - x_mean
    gram = xc @ xc.T

    def predict(split: str, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        x, last, y = parts[split]
        coef = np.linalg.solve(gram + alpha * np.eye(len(gram)), d_train - d_mean)
        change = (x - x_mean) @ xc.T @ coef + d_mean
        pred = last[:, None] + change.reshape(len(x), horizon, -1)
        unit = (len(x), horizon, *shape)
        return pred.reshape(unit) * std, y.reshape(unit) * std

    alphas = [float(a) for a in args.alphas.split(",")]
    val_score = {a: float(rmse_lat(*predict("val", a), weights).mean()) for a in alphas}
    alpha = min(val_score, key=val_score.__getitem__)
    pred, truth = predict("test", alpha)
    last = parts["test"][1].reshape(len(pred), *shape) * std
    ridge = rmse_lat(pred, truth, weights)
    persist = rmse_lat(np.broadcast_to(last[:, None], truth.shape), truth, weights)
    step_hours = float((times[1] - times[0]) / np.timedelta64(1, "h"))
    units = str(ds[name].attrs.get("units", ""))

    title = f"{args.preset}: ridge on {context} frames of the field, test split"
    table = Table(title=f"{title} (alpha {alpha:g} chosen on validation; "
                        f"{time.time() - began:.0f} s)")  # fmt: skip
    for col in ("lead h", f"ridge RMSE_lat {units}", "persistence", "ratio"):
        table.add_column(col, justify="right")
    cases = []
    for k in range(horizon):
        hours = step_hours * (k + 1)
        table.add_row(f"{hours:g}", f"{ridge[k]:.3f}", f"{persist[k]:.3f}",
                      f"{ridge[k] / persist[k]:.3f}")  # fmt: skip
        cases.append({"case": f"{args.preset}_ridge", "lead": hours, "metric": "rmse_lat_phys",
                      "value": float(ridge[k]), "reference": None,
                      "baseline": float(persist[k])})  # fmt: skip
    Console(width=120).print(table)
    print("validation RMSE_lat (mean over leads) per alpha: "
          + ", ".join(f"{a:g}: {s:.4f}" for a, s in val_score.items()))  # fmt: skip
    print(json.dumps({"cases": cases}))


if __name__ == "__main__":
    main()
