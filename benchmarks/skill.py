"""Skill of the real-data presets against published figures and naive baselines.

Run: python -m benchmarks.skill [--cases etth1_seg_rnn:96,...] [--seeds N] [--generality]
     [--quick]
Each case is ``experiment[:horizon]``: the preset ``conf/experiment/NAME.yaml`` composed with
Hydra's compose API and trained by :func:`forecast.runs.train.train` (no tracking). Persistence
and seasonal naive (one day) are scored on the same test windows, from the same data module.
``--generality`` also runs each series preset unchanged on data it was not tuned on: a CSV
written to a temporary folder from a different, renamed and rescaled column subset of the same
file, and the original file on a time range shifted by four months; each must beat persistence.
``--quick`` trains one short epoch on a few batches (CI: proves the cases run, not their skill).
The last line printed is one JSON object ``{"cases": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from forecast.errors import ForecastError
from forecast.models.baselines import persistence, seasonal_naive
from forecast.runs.train import train

CONF = Path(__file__).resolve().parents[1] / "conf"
ETTH1_PRESETS = ("etth1_seg_rnn", "etth1_birnn", "etth1_cnn_rnn")
HORIZONS = (96, 192, 336, 720)
# SegRNN (Lin et al. 2023), ETTh1, input 96: test MSE on the scaled values per horizon
REFERENCES = {("etth1", h): v for h, v in zip(HORIZONS, (0.368, 0.408, 0.444, 0.446), strict=True)}
QUICK = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
]
SHIFT_ROWS = 2880  # four months of hourly rows: ETT files hold 17,420 rows, the protocol 14,400


@dataclass
class Row:
    """One measured figure: a case at one horizon, its baselines and its cost."""

    case: str
    horizon: int
    metric: str
    values: list[float]
    reference: float | None
    baselines: dict[str, float]
    seconds: list[float] = field(default_factory=list)

    @property
    def value(self) -> float:
        """Mean over seeds."""
        return statistics.fmean(self.values)


def compose_case(
    preset: str, horizon: int | None, seed: int, out: Path, extra: list[str]
) -> DictConfig:
    """The preset's composed ``train`` config, untracked, writing under ``out``."""
    overrides = [f"experiment={preset}", f"seed={seed}", "logger=none", f"paths.output_dir={out}"]
    if "FORECAST_ROOT" not in os.environ:  # the data presets find ../shared/data from the root
        overrides.append(f"paths.root_dir={CONF.parent}")
    if horizon is not None:
        overrides.append(f"horizon={horizon}")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides + extra)


def baseline_errors(cfg: DictConfig, period: int = 24) -> dict[str, dict[str, float]]:
    """Persistence and seasonal-naive MSE/MAE over every valid point of the test windows."""
    dm = instantiate(cfg.data)
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


def run_case(
    case: str, preset: str, horizon: int | None, seeds: int, extra: list[str]
) -> list[Row]:
    """Train the preset once per seed; one row per metric (MSE, MAE) with its baselines."""
    rows: dict[str, Row] = {}
    for seed in range(seeds):
        with tempfile.TemporaryDirectory(prefix="skill-") as tmp:
            cfg = compose_case(preset, horizon, 7 + seed, Path(tmp), extra)
            h = int(cfg.horizon)
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


def generality_cases(preset: str, folder: Path) -> dict[str, list[str]]:
    """Overrides per unseen-data variant of a series preset (the preset itself unchanged)."""
    cfg = compose_case(preset, None, 7, folder, [])
    path, names = variant_csv(cfg, folder)
    cols = "[" + ",".join(names) + "]"
    splits = {k: [a + SHIFT_ROWS, b + SHIFT_ROWS] for k, (a, b) in cfg.data.splits.items()}
    shift = [f"data.splits.{k}=[{a},{b}]" for k, (a, b) in splits.items()]
    return {
        f"{preset}@columns": [
            f"data.source.path={path}",
            f"data.variables={cols}",
            f"data.targets={cols}",
        ],
        f"{preset}@shifted": shift,
    }


def parse_cases(text: str | None) -> list[tuple[str, int | None]]:
    """``name[:horizon],...`` -> [(preset, horizon or None)]; default: ETTh1 presets x horizons."""
    if not text:
        return [(p, h) for p in ETTH1_PRESETS for h in HORIZONS]
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
    cases: list[tuple[str, int | None]], seeds: int, generality: bool, quick: bool
) -> list[Row]:
    """Every case (and, with ``generality``, its unseen-data variants), in order."""
    extra = QUICK if quick else []
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="skill-data-") as folder:
        for preset, horizon in cases:
            rows += run_case(preset, preset, horizon, seeds, extra)
            if not generality:
                continue
            sub = Path(folder) / f"{preset}-{horizon}"
            sub.mkdir()
            for case, overrides in generality_cases(preset, sub).items():
                rows += run_case(case, preset, horizon, seeds, extra + overrides)
    return rows


def print_table(rows: list[Row], console: Console) -> None:
    """One line per row: value (mean +- spread over seeds) beside reference and baselines."""
    table = Table(title="Held-out skill of the presets (test split, scaled values)")
    for col in ("case", "horizon", "metric", "value", "reference", "best baseline",
                "persistence", "wall s"):  # fmt: skip
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        spread = f" ± {statistics.stdev(r.values):.3f}" if len(r.values) > 1 else ""
        best = min(r.baselines, key=r.baselines.__getitem__)
        ref = "-" if r.reference is None else f"{r.reference:.3f}"
        table.add_row(
            r.case, str(r.horizon), r.metric, f"{r.value:.4f}{spread}", ref,
            f"{best} {r.baselines[best]:.4f}", f"{r.baselines['persistence']:.4f}",
            f"{statistics.fmean(r.seconds):.0f}",
        )  # fmt: skip
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    """Run the cases, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", help="comma-separated experiment[:horizon]")
    parser.add_argument("--seeds", type=int, default=1, help="runs per case (mean and spread)")
    parser.add_argument("--generality", action="store_true", help="also on unseen variants")
    parser.add_argument("--quick", action="store_true", help="one short epoch per case")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        raise SystemExit(f"error: --seeds must be >= 1, got {args.seeds}")
    try:
        rows = run_all(parse_cases(args.cases), args.seeds, args.generality, args.quick)
    except ForecastError as e:
        raise SystemExit(f"error: {e}") from None
    print_table(rows, Console(width=150))
    misses = [r for r in rows if r.metric == "mse" and "@" in r.case
              and r.value >= r.baselines["persistence"]]  # fmt: skip
    for r in misses:
        print(f"generality miss: {r.case} h={r.horizon} MSE {r.value:.4f} >= persistence")
    cases: list[dict[str, Any]] = [
        {"case": r.case, "horizon": r.horizon, "metric": r.metric, "value": r.value,
         "reference": r.reference, "baseline": r.baselines["persistence"]}
        for r in rows
    ]  # fmt: skip
    sys.stdout.flush()
    print(json.dumps({"cases": cases}))


if __name__ == "__main__":
    main()
