"""Skill of the real-data presets against published figures and naive baselines.

Run: python -m benchmarks.skill [--cases etth1_seg_rnn:96,...] [--seeds N] [--generality]
     [--quick]
Each case is ``experiment[:horizon]``: the preset ``conf/experiment/NAME.yaml`` composed with
Hydra's compose API and trained by :func:`forecast.runs.train.train` (no tracking). Persistence
and seasonal naive (one day) are scored on the same test windows, from the same data module.
``--generality`` also runs each series preset unchanged on data it was not tuned on: a CSV
written to a temporary folder from a different, renamed and rescaled column subset of the same
file, and the original file on a time range shifted by four months; each must beat persistence.
Grid presets (``ncep_air``) report the latitude-weighted RMSE in the data's physical units per
lead in hours, beside persistence, climatology and seasonal naive scored in the same run (the
preset's ``references``); ``--generality`` runs them on a second grid written from the same
store: other dimension and variable names, coarsened 2x (13 x 27 from 25 x 53) and NaN over
a block of the domain, where each must beat persistence.
Station presets (``beijing``) report MAE and RMSE of PM2.5 in the data's units per lead hour
beside persistence, seasonal naive and climatology of the same run; ``--generality`` runs them
on half the stations written as one CSV (other station, column and time names; another column
subset, each column rescaled) and on splits shifted four months earlier; each must beat
persistence there on every metric and lead.
``--quick`` trains one short epoch on a few batches (CI: proves the cases run, not their skill).
The last line printed is one JSON object ``{"cases": [...]}`` (``horizon`` for series cases,
``lead`` in hours for grid cases).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from benchmarks.skill_rows import CONF, QUICK, Row, compose_case, json_line
from benchmarks.skill_video import VIDEO_PRESETS, verdicts, video_rows
from forecast.errors import ForecastError
from forecast.models.baselines import persistence, season_steps, seasonal_naive
from forecast.runs.train import target_units, train

ETTH1_PRESETS = ("etth1_seg_rnn", "etth1_birnn", "etth1_cnn_rnn")


@dataclass(frozen=True)
class LeadCase:
    """A preset reported per lead from its own run's metrics (model and in-run references).

    Args:
        metrics: run metric names read as ``test/{metric}_lead{k}`` (and
            ``test/{reference}_{metric}_lead{k}`` for each of the preset's references).
        leads: steps reported (lead hours = steps x the data's step hours).
        beaten: baselines every metric must be below at every reported lead.
        ratio: ``(lead hours, limit)``: the first metric over persistence there must be <= limit.
    """

    metrics: tuple[str, ...]
    leads: tuple[int, ...]
    beaten: tuple[str, ...] = ("persistence",)
    ratio: tuple[float, float] | None = None


# issue 13's targets per preset reported by lead
LEAD_CASES = {
    "ncep_air": LeadCase(
        ("rmse_lat_phys",),
        (1, 2, 4, 8, 12),  # 6, 12, 24, 48, 72 h
        ("persistence", "climatology"),
        (24.0, 0.70),
    ),  # fmt: skip
    "beijing": LeadCase(
        ("mae_phys", "rmse_phys"), (1, 3, 6, 12, 24), ("persistence", "seasonal_naive")
    ),  # fmt: skip
}
GRID_PRESETS = ("ncep_air",)  # generality: run again on a second grid (:func:`variant_grid`)
STATION_PRESETS = ("beijing",)  # generality: other stations and columns (:func:`variant_stations`)
HORIZONS = (96, 192, 336, 720)
# SegRNN (Lin et al. 2023), ETTh1, input 96: test MSE on the scaled values per horizon
REFERENCES = {("etth1", h): v for h, v in zip(HORIZONS, (0.368, 0.408, 0.444, 0.446), strict=True)}
SHIFT_ROWS = 2880  # four months of hourly rows: ETT files hold 17,420 rows, the protocol 14,400
SHIFT_DAYS = pd.Timedelta(days=120)  # offset splits: four of the protocol's 30-day months
SHIFT_MONTHS = -4  # date splits: earlier (Beijing's test half-year ends with the data)


def baseline_errors(cfg: DictConfig, period_hours: float = 24.0) -> dict[str, dict[str, float]]:
    """Persistence and seasonal-naive (one day) MSE/MAE over every valid point of the test windows.

    The day is counted in the data's steps (24 hourly, 96 quarter-hourly); 24 steps where the
    time axis has no regular step.
    """
    dm = instantiate(cfg.data)
    hours = dm.describe().step_hours
    period = season_steps(period_hours, hours) if hours else int(period_hours)
    dm.setup("test")
    sums: dict[str, np.ndarray] = {}
    count = 0.0
    limit = cfg.trainer.get("limit_test_batches")  # the same windows the run is tested on
    for i, batch in enumerate(dm.test_dataloader()):
        if isinstance(limit, int) and i >= limit:
            break
        x, y = batch["x"], batch["y"]
        if x.shape[2:] != y.shape[2:]:
            index = [dm.variables.index(t) for t in dm.targets]
            x = x[..., index]
        mask = batch.get("y_mask", torch.ones_like(y, dtype=torch.bool))
        count += float(mask.sum())
        guesses = {"persistence": persistence(x, y.shape[1])}
        if x.shape[1] >= period:
            guesses["seasonal_naive"] = seasonal_naive(x, y.shape[1], period)
        for name, guess in guesses.items():
            err = torch.where(mask, guess - y, torch.zeros_like(y))
            s = np.array([float((err**2).sum()), float(err.abs().sum())])
            sums[name] = sums.get(name, 0.0) + s
    return {k: {"mse": v[0] / count, "mae": v[1] / count} for k, v in sums.items()}


def lead_rows(case: str, preset: str, cfg: DictConfig, metrics: dict[str, float],
              wall: float) -> list[Row]:  # fmt: skip
    """One row per reported lead (hours) and metric: the model and every reference of the run."""
    spec = LEAD_CASES[preset]
    dm = instantiate(cfg.data)
    data = dm.describe()
    units = target_units(dm)
    hours = data.step_hours or 1.0
    rows = []
    for metric in spec.metrics:
        suffix = f"_{metric}_lead1"
        refs = [k[5 : -len(suffix)] for k in metrics if k.endswith(suffix) and k != f"test{suffix}"]
        for k in (k for k in spec.leads if k <= data.horizon):
            baselines = {r: metrics[f"test/{r}_{metric}_lead{k}"] for r in refs}
            value = metrics[f"test/{metric}_lead{k}"]
            rows.append(Row(case, round(hours * k), metric, [value], None, baselines, [wall],
                            "lead", units))  # fmt: skip
    return rows


def run_case(
    case: str, preset: str, horizon: int | None, seeds: int, extra: list[str]
) -> list[Row]:
    """Train the preset once per seed; one row per metric (MSE, MAE) with its baselines.

    Presets in :data:`LEAD_CASES` give one row per reported lead instead (:func:`lead_rows`),
    video presets one per OpenSTL metric (:func:`benchmarks.skill_video.video_rows`).
    """
    rows: dict[str, Row] = {}
    for seed in range(seeds):
        with tempfile.TemporaryDirectory(prefix="skill-") as tmp:
            cfg = compose_case(preset, horizon, 7 + seed, Path(tmp), extra)
            h = int(cfg.horizon)
            if preset in LEAD_CASES or preset in VIDEO_PRESETS:
                t0 = time.perf_counter()
                result = train(cfg)
                wall = time.perf_counter() - t0
                if preset in VIDEO_PRESETS:  # scored from the best checkpoint, still in tmp
                    found = video_rows(case, cfg, result.metrics, wall, result.checkpoint)
                else:  # references are scored by the run itself
                    found = lead_rows(case, preset, cfg, result.metrics, wall)
                for new in found:
                    seen = rows.setdefault(f"{new.metric}@{new.horizon}", new)
                    if seen is not new:  # another seed of the same lead
                        seen.values += new.values
                        seen.seconds += new.seconds
                continue
            base = baseline_errors(cfg) if seed == 0 else None
            t0 = time.perf_counter()
            result = train(cfg)
            wall = time.perf_counter() - t0
        family = str(cfg.preset).split("_")[0]
        for metric in ("mse", "mae"):
            row = rows.get(metric)
            if row is None:
                assert base is not None
                ref = REFERENCES.get((family, h)) if metric == "mse" and case == preset else None
                baselines = {k: v[metric] for k, v in base.items()}
                row = rows[metric] = Row(case, h, metric, [], ref, baselines)
            row.values.append(result.metrics[f"test/{metric}"])
            row.seconds.append(wall)
    return list(rows.values())


def variant_csv(cfg: DictConfig, folder: Path) -> tuple[Path, list[str]]:
    """A CSV of the preset's file with another column subset, renamed and rescaled."""
    src = cfg.data.source
    table = pd.read_csv(str(src.path))
    chosen = list(cfg.data.variables)[::-2]  # every other column, in reverse order
    rng = np.random.default_rng(0)
    out = pd.DataFrame({src.time_column: table[src.time_column]})
    names = []
    for i, col in enumerate(chosen):
        names.append(f"v{i}_{col.lower()}")
        out[names[-1]] = table[col] * rng.uniform(50.0, 500.0) + rng.uniform(-1e3, 1e3)
    path = folder / "variant.csv"
    out.to_csv(path, index=False)
    return path, names


def variant_grid(cfg: DictConfig, folder: Path) -> Path:
    """The preset's store as another grid: renamed dims and variable, coarsened 2x, a NaN block.

    Dimensions become ``latitude``/``longitude`` and the variable ``t2m``; 2 x 2 means (a
    boundary padded, so 25 x 53 gives 13 x 27: no patch size divides it); the south-east
    third of the rows and columns (about a ninth of the domain) is NaN at every time, as a
    land-sea mask leaves it.
    """
    src = cfg.data.source
    ds = xr.open_dataset(str(src.path), engine="zarr", chunks=None)
    var = str(cfg.data.variables[0])
    coarse = ds[[var]].coarsen(lat=2, lon=2, boundary="pad").mean().load()
    values = coarse[var].values.astype("float32")
    h, w = values.shape[-2:]
    values[..., h - h // 3 :, w - w // 3 :] = np.nan
    out = xr.Dataset(
        {"t2m": (("time", "latitude", "longitude"), values, dict(ds[var].attrs))},
        coords={
            "time": coarse["time"].values,
            "latitude": coarse["lat"].values,
            "longitude": coarse["lon"].values,
        },
    )
    out["t2m"].attrs.pop("actual_range", None)
    path = folder / "variant_grid.nc"
    out.to_netcdf(path, engine="h5netcdf")
    return path


def variant_stations(cfg: DictConfig, folder: Path) -> tuple[Path, list[str], list[str]]:
    """Every other station of the preset's tables as one CSV, in another layout.

    Timestamps become one ``date`` column (the source's default name), the station column
    ``site`` with stations renamed ``s0, s1, ...``; the variables are every other one in reverse
    order (the targets kept), renamed and each rescaled by a random affine map, so nothing the
    preset was tuned on carries over but the physics.

    Returns:
        The CSV, its variable names and its target names.
    """
    ds = instantiate(cfg.data.source).open()  # the source's parsing: time parts, blank cells
    stations = list(ds["sensor"].values)[::2]
    variables = list(cfg.data.variables)
    chosen = variables[::-2] + [t for t in cfg.data.targets if t not in variables[::-2]]
    rng = np.random.default_rng(0)
    table = ds[chosen].sel(sensor=stations).to_dataframe().reset_index()
    site = {s: f"s{i}" for i, s in enumerate(stations)}
    out = pd.DataFrame({"date": table["time"], "site": table["sensor"].map(site)})
    names = {}
    for i, col in enumerate(chosen):
        names[col] = f"v{i}_{col.lower().replace('.', '_')}"
        out[names[col]] = table[col] * rng.uniform(0.1, 10.0) + rng.uniform(-100.0, 100.0)
    path = folder / "variant_stations.csv"
    out.to_csv(path, index=False)
    return path, list(names.values()), [names[t] for t in cfg.data.targets]


def shifted_splits(splits: DictConfig) -> list[str]:
    """Overrides moving every split, so the preset meets other seasons and years.

    Row splits move later by :data:`SHIFT_ROWS`, offset splits by :data:`SHIFT_DAYS`, date
    splits by :data:`SHIFT_MONTHS` (the training split keeps its start: the data start there).
    """
    out = []
    for k, (a, b) in splits.items():
        if isinstance(a, int):
            a, b = a + SHIFT_ROWS, b + SHIFT_ROWS
        elif str(a).startswith("+"):  # offsets from the first time: later by SHIFT_DAYS
            a, b = (f"+{(pd.Timedelta(str(v)[1:]) + SHIFT_DAYS).days}D" for v in (a, b))
        else:
            move = pd.DateOffset(months=SHIFT_MONTHS)
            a = a if k == "train" else (pd.Timestamp(a) + move).strftime("%Y-%m-%d")
            b = (pd.Timestamp(b) + move).strftime("%Y-%m-%d")
        out.append(f"data.splits.{k}=[{a},{b}]")
    return out


def generality_cases(preset: str, folder: Path) -> dict[str, list[str]]:
    """Overrides per unseen-data variant of a preset (the preset itself unchanged)."""
    cfg = compose_case(preset, None, 7, folder, [])
    if preset in GRID_PRESETS:
        path = variant_grid(cfg, folder)
        return {
            f"{preset}@grid": [
                f"data.source.path={path}",
                "+data.source.rename.latitude=lat",
                "+data.source.rename.longitude=lon",
                "data.variables=[t2m]",
            ]
        }
    if preset in STATION_PRESETS:
        path, names, targets = variant_stations(cfg, folder)
        cols = "[" + ",".join(names) + "]"
        return {
            f"{preset}@stations": [
                f"data.source.path={path}",
                "data.source.time_parts=null",
                "data.source.station_column=site",
                "~data.source.units",  # the preset's units name the original columns
                f"data.source.variables={cols}",
                f"data.variables={cols}",
                f"data.targets=[{','.join(targets)}]",
            ],
            f"{preset}@shifted": shifted_splits(cfg.data.splits),
        }
    path, names = variant_csv(cfg, folder)
    cols = "[" + ",".join(names) + "]"
    return {
        f"{preset}@columns": [
            f"data.source.path={path}",
            f"data.variables={cols}",
            f"data.targets={cols}",
        ],
        f"{preset}@shifted": shifted_splits(cfg.data.splits),
    }


def parse_cases(text: str | None) -> list[tuple[str, int | None]]:
    """``name[:horizon],...`` -> [(preset, horizon or None)]; default: every preset."""
    if not text:
        every = [(p, h) for p in ETTH1_PRESETS for h in HORIZONS] + [(p, None) for p in LEAD_CASES]
        return every + [("moving_mnist_fast", None)]  # the full one needs a GPU's budget
    cases = []
    for item in text.split(","):
        name, _, h = item.strip().partition(":")
        if not (CONF / "experiment" / f"{name}.yaml").exists():
            raise SystemExit(f"error: --cases: no preset conf/experiment/{name}.yaml")
        if h and not h.isdigit():
            raise SystemExit(f"error: --cases: horizon of '{item}' must be a whole number")
        cases.append((name, int(h) if h else None))
    return cases


def run_all(
    cases: list[tuple[str, int | None]],
    seeds: int,
    generality: bool,
    quick: bool,
    overrides: Sequence[str] = (),
) -> list[Row]:
    """Every case (and, with ``generality``, its unseen-data variants), in order."""
    extra = (QUICK if quick else []) + list(overrides)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="skill-data-") as folder:
        for preset, horizon in cases:
            rows += run_case(preset, preset, horizon, seeds, extra)
            if not generality:
                continue
            sub = Path(folder) / f"{preset}-{horizon}"
            sub.mkdir()
            for case, variant in generality_cases(preset, sub).items():
                rows += run_case(case, preset, horizon, seeds, extra + variant)
    return rows


def print_table(rows: list[Row], console: Console) -> None:
    """One line per row: value (mean +- spread over seeds) beside reference and baselines."""
    title = "Held-out skill of the presets (test split; series: scaled values, horizon in steps;"
    title += " grids and stations: errors in physical units per lead in hours)"
    table = Table(title=title)
    for col in ("case", "horizon / lead h", "metric", "value", "reference", "best baseline",
                "persistence", "wall s"):  # fmt: skip
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        spread = f" ± {statistics.stdev(r.values):.3f}" if len(r.values) > 1 else ""
        best = min(r.baselines, key=r.baselines.__getitem__)
        ref = "-" if r.reference is None else f"{r.reference:.3f}"
        metric = r.metric if r.units is None else f"{r.metric} [{r.units}]"
        table.add_row(
            r.case, str(r.horizon), metric, f"{r.value:.4f}{spread}", ref,
            f"{best} {r.baselines[best]:.4f}", f"{r.baselines['persistence']:.4f}",
            f"{statistics.fmean(r.seconds):.0f}",
        )  # fmt: skip
    console.print(table)


def lead_verdicts(rows: list[Row]) -> list[str]:
    """Issue 13's target lines per lead preset: ratio to persistence, baselines beaten.

    The ratio is judged on the first metric; the baselines on every metric of the case.
    """
    lines = []
    for preset, spec in LEAD_CASES.items():
        for i, metric in enumerate(spec.metrics):
            own = [r for r in rows if r.case == preset and r.metric == metric]
            if not own:
                continue
            if spec.ratio is not None and i == 0:
                lead, limit = spec.ratio
                at = next((r for r in own if r.horizon == lead), None)
                if at is not None:
                    ratio = at.value / at.baselines["persistence"]
                    verdict = "met" if ratio <= limit else "MISSED"
                    lines.append(f"target {verdict}: {preset} {lead:g} h {metric} model / "
                                 f"persistence {ratio:.3f} (<= {limit})")  # fmt: skip
            beaten = [b for b in spec.beaten if all(b in r.baselines for r in own)]
            worse = {r.horizon: [b for b in beaten if r.value >= r.baselines[b]] for r in own}
            for h, names in worse.items():
                if names:
                    lines.append(f"target MISSED: {preset} {h} h {metric} not below "
                                 f"{', '.join(names)}")  # fmt: skip
            if not any(worse.values()):
                lines.append(f"target met: {preset} {metric} below {' and '.join(beaten)} "
                             "at every lead")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> None:
    """Run the cases, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", help="comma-separated experiment[:horizon]")
    parser.add_argument("--seeds", type=int, default=1, help="runs per case (mean and spread)")
    parser.add_argument("--generality", action="store_true", help="also on unseen variants")
    parser.add_argument("--quick", action="store_true", help="one short epoch per case")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Hydra override for every case (to try a setting; repeatable)",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        raise SystemExit(f"error: --seeds must be >= 1, got {args.seeds}")
    try:
        rows = run_all(parse_cases(args.cases), args.seeds, args.generality, args.quick, args.set)
    except ForecastError as e:
        raise SystemExit(f"error: {e}") from None
    print_table(rows, Console(width=150))
    headline = {"mse"} | {m for spec in LEAD_CASES.values() for m in spec.metrics}
    misses = [r for r in rows if r.metric in headline and "@" in r.case
              and r.value >= r.baselines["persistence"]]  # fmt: skip
    for r in misses:
        print(f"generality miss: {r.case} {r.by}={r.horizon} {r.metric} {r.value:.4f} "
              ">= persistence")  # fmt: skip
    for line in lead_verdicts(rows):
        print(line)
    if any(r.case in VIDEO_PRESETS for r in rows):
        for line in verdicts([r for r in rows if r.case in VIDEO_PRESETS]):
            print(line)
    sys.stdout.flush()
    print(json_line(rows))


if __name__ == "__main__":
    main()
