"""What the skill benchmarks share: a measured row, the quick overrides, a preset's config.

``benchmarks.skill`` (series, grid and station presets) and ``benchmarks.skill_video`` (Moving
MNIST) both build on these; kept apart so neither imports the other's module.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF = Path(__file__).resolve().parents[1] / "conf"
QUICK = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
]


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
    by: str = "horizon"  # "horizon" (steps, series cases) or "lead" (hours, grid cases)
    units: str | None = None

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


def json_line(rows: list[Row]) -> str:
    """The benchmarks' last line: ``{"cases": [...]}``, persistence as each row's baseline."""
    cases: list[dict[str, Any]] = [
        {"case": r.case, r.by: r.horizon, "metric": r.metric, "value": r.value,
         "reference": r.reference, "baseline": r.baselines["persistence"]}
        | ({"units": r.units} if r.units else {})
        for r in rows
    ]  # fmt: skip
    return json.dumps({"cases": cases})
