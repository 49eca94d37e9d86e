"""The Moving MNIST CPU preset runs through benchmarks.skill_video (slow; one short epoch, no
skill assertion; skipped without the MNIST digits in ../shared/data/mnist)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from benchmarks import skill, skill_video

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FORECAST_SHARED_DATA", ROOT.parent / "shared" / "data"))


def test_moving_mnist_fast_reports_openstl_metrics(capsys):
    if not list((SHARED / "mnist").glob("t10k-images-idx3-ubyte*")):
        pytest.skip(f"no MNIST digits under {SHARED / 'mnist'}")
    skill_video.main(["--preset", "moving_mnist_fast", "--quick"])
    alone = capsys.readouterr().out.strip().splitlines()[-1]
    skill.main(["--cases", "moving_mnist_fast", "--quick"])  # the same rows in the skill table
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == json.loads(alone)
    out = json.loads(alone)
    cases = {c["metric"]: c for c in out["cases"]}
    assert set(cases) == set(skill_video.METRICS)
    for metric, c in cases.items():
        assert c["case"] == "moving_mnist_fast" and c["horizon"] == 10
        assert math.isfinite(c["value"]) and math.isfinite(c["baseline"])
        assert c["reference"] == skill_video.OPENSTL_CONVLSTM[metric]
    # persistence of real bouncing digits: far from exact, far from an empty canvas
    assert 50 < cases["mse_frame"]["baseline"] < 1000
    assert 0 < cases["ssim"]["baseline"] < 1
