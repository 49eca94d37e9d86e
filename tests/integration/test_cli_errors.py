"""Bad input at the command line: Hydra's strict errors and a clear line for a missing data path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FORECAST_ROOT": str(tmp_path)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "pipelines.train", *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_unknown_key_is_refused(tmp_path):
    proc = run_train(tmp_path, "trainer.max_epochz=3")
    assert proc.returncode != 0
    assert "max_epochz" in proc.stderr


def test_unknown_group_option_is_refused(tmp_path):
    proc = run_train(tmp_path, "model=no_such_model")
    assert proc.returncode != 0
    assert "no_such_model" in proc.stderr


def test_missing_data_path_names_path_and_key(tmp_path):
    missing = tmp_path / "nowhere.zarr"
    proc = run_train(
        tmp_path,
        "data=grid_store",
        f"data.source.path={missing}",
        "data.variables=[air]",
        "logger=none",
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert str(missing) in lines[0] and "data.source.path" in lines[0]
    assert "Traceback" not in proc.stderr
