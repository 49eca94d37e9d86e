"""benchmarks.video_budget on a CPU: a tiny budget trains whole epochs and reports OpenSTL's
metrics with the cost figures (slow; skipped without the MNIST digits in ../shared/data/mnist)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from benchmarks import frame_scores, video_budget

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FORECAST_SHARED_DATA", ROOT.parent / "shared" / "data"))
TINY = ["data.n_train=16", "data.n_val=8", "data.n_test=16", "data.batch_size=8"]


def test_a_tiny_budget_trains_the_planned_epochs_and_scores_the_test_windows(capsys):
    if not list((SHARED / "mnist").glob("t10k-images-idx3-ubyte*")):
        pytest.skip(f"no MNIST digits under {SHARED / 'mnist'}")
    args = ["--preset", "moving_mnist_fast", "--minutes", "0.1"]
    video_budget.main(args + [a for item in TINY for a in ("--set", item)])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cases = {c["metric"]: c for c in out["cases"]}
    assert set(cases) == set(frame_scores.METRICS)
    for metric, c in cases.items():
        assert math.isfinite(c["value"]) and math.isfinite(c["baseline"])
        assert c["reference"] == frame_scores.OPENSTL_CONVLSTM[metric]
    b = out["budget"]
    assert b["device"] == "cpu" and b["precision"] == "32-true"
    assert b["epochs_done"] == b["epochs_planned"] >= 1  # the schedule spans what was trained
    assert b["sequences_per_s"] == pytest.approx(8 / b["seconds_per_step"])
    # the composed config's whole budget (the preset's 6 epochs, n_train=16) at the timed rate
    assert b["full_budget_epochs"] == 6
    assert b["full_budget_hours"] == pytest.approx(6 * 16 * b["seconds_per_step"] / 8 / 3600)
