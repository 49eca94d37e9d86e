"""The real-data presets run unchanged through benchmarks.skill, on their data and on unseen
variants (slow; one short epoch each, no skill assertion; skipped without ../shared/data)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from benchmarks import skill

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FORECAST_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.mark.parametrize("preset", skill.ETTH1_PRESETS)
def test_etth1_preset_runs_unchanged_on_unseen_variants(preset, capsys):
    if not (SHARED / "ett" / "ETTh1.csv").exists():
        pytest.skip(f"no ETTh1 under {SHARED}")
    skill.main(["--cases", f"{preset}:96", "--quick", "--generality"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cases = {(c["case"], c["metric"]): c for c in out["cases"]}
    for variant in ("", "@columns", "@shifted"):
        for metric in ("mse", "mae"):
            c = cases[(preset + variant, metric)]
            assert c["horizon"] == 96
            assert math.isfinite(c["value"]) and math.isfinite(c["baseline"])
    assert cases[(preset, "mse")]["reference"] == 0.368
    assert cases[(preset + "@columns", "mse")]["reference"] is None


def test_ncep_air_preset_runs_unchanged_on_a_second_grid(capsys):
    if not (SHARED / "ncep_air_temperature" / "air_temperature.zarr").exists():
        pytest.skip(f"no NCEP air temperature under {SHARED}")
    skill.main(["--cases", "ncep_air", "--quick", "--generality"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cases = {(c["case"], c["lead"]): c for c in out["cases"]}
    for variant in ("ncep_air", "ncep_air@grid"):  # the full 25 x 53 grid, then 13 x 27 with NaN
        for lead in (6, 12, 24, 48, 72):
            c = cases[(variant, lead)]
            assert c["metric"] == "rmse_lat_phys" and c["units"] == "degK"
            assert math.isfinite(c["value"]) and math.isfinite(c["baseline"])
            assert c["reference"] is None


def test_beijing_preset_runs_unchanged_on_other_stations_and_times(capsys):
    if not list((SHARED / "beijing_air_quality").glob("PRSA_Data_*.csv")):
        pytest.skip(f"no Beijing air quality tables under {SHARED}")
    skill.main(["--cases", "beijing", "--quick", "--generality"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cases = {(c["case"], c["metric"], c["lead"]): c for c in out["cases"]}
    # the 12 stations, then 6 renamed and rescaled in one CSV, then splits four months earlier
    for variant in ("beijing", "beijing@stations", "beijing@shifted"):
        for metric in ("mae_phys", "rmse_phys"):
            for lead in (1, 3, 6, 12, 24):
                c = cases[(variant, metric, lead)]
                assert math.isfinite(c["value"]) and math.isfinite(c["baseline"])
                assert c["reference"] is None


def test_unknown_case_is_refused():
    with pytest.raises(SystemExit, match="no preset conf/experiment/nope.yaml"):
        skill.main(["--cases", "nope:96"])
