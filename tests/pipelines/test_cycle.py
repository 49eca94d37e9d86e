"""The scheduled cycle as a scheduler runs it: `python -m pipelines.cycle` in a fresh root."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import xarray as xr

from forecast.data.synthetic import extend_feed, write_feed

ROOT = Path(__file__).resolve().parents[2]
NAME = "forecast-synthetic"
TINY = [
    "data=grid_store",
    "data.variables=[field]",
    "data.batch_size=4",
    "trainer=smoke",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=6",
    "registry.n_origins=4",
]


def feed(root: Path, n_times: int = 200) -> Path:
    return write_feed(root / "feed.zarr", n_times, n_lat=16, n_lon=16, n_blobs=4)


def start(root: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "FORECAST_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [*TINY, f"data.source.path={root / 'feed.zarr'}", *overrides]
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cycle", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(root: Path, *overrides: str) -> subprocess.CompletedProcess:
    p = start(root, *overrides)
    out, err = p.communicate(timeout=600)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def client(root: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def state(root: Path) -> dict:
    return json.loads((root / "cycle" / "state.json").read_text())


def said(proc) -> list[str]:
    """What the cycle printed for a person: stdout less the timestamped log records."""
    return [ln for ln in proc.stdout.splitlines() if ln.strip() and not ln.startswith("[")]


def versions(root: Path) -> list[str]:
    return sorted(str(v.version) for v in client(root).search_model_versions(f"name='{NAME}'"))


@pytest.mark.slow
def test_fresh_cycle_then_no_new_data_then_new_data_fine_tuned(tmp_path):
    feed(tmp_path)
    first = run(tmp_path, "registry.min_skill=null")
    assert first.returncode == 0, first.stderr[-3000:]
    assert said(first) and said(first)[-1].startswith("promoted:"), first.stdout
    s = state(tmp_path)
    assert s["step"] is None and s["version"] == "1" and s["attempt"] == 1
    champion = client(tmp_path).get_model_version_by_alias(NAME, "champion")
    assert str(champion.version) == "1"
    with xr.open_dataset(s["forecast"]) as fc:
        assert fc.attrs["model_version"] == "1" and fc.attrs["model_name"] == NAME
        assert fc.attrs["run_id"] == champion.run_id
        first_issue = fc["time"].values[0]
    run_info = client(tmp_path).get_run(champion.run_id)
    assert run_info.inputs.dataset_inputs[0].dataset.digest == s["fingerprint"]

    again = run(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(said(again)) == 1 and said(again)[0].startswith("no new data"), again.stdout
    assert versions(tmp_path) == ["1"] and state(tmp_path) == s

    extend_feed(tmp_path / "feed.zarr", 40)
    tuned = run(tmp_path, "cycle.mode=finetune", "registry.min_skill=null")
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    assert said(tuned)[-1].split(":")[0] in ("promoted", "kept"), tuned.stdout
    s2 = state(tmp_path)
    assert versions(tmp_path) == ["1", "2"] and s2["version"] == "2" and s2["attempt"] == 2
    assert (tmp_path / "cycle" / "checkpoints" / "attempt-2" / "init.ckpt").is_file()
    with xr.open_dataset(s2["forecast"]) as fc:
        assert fc["time"].values[0] > first_issue  # issued from the appended data
    tags = client(tmp_path).get_model_version(NAME, "2").tags
    assert "promotion" in tags  # the reason is on the version (and the run)


@pytest.mark.slow
def test_a_second_cycle_exits_75_at_once(tmp_path):
    feed(tmp_path)
    busy = start(tmp_path, "registry.min_skill=null")
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "cycle" / "state.json").exists():  # the first one holds the lock
            assert busy.poll() is None, busy.communicate()[1][-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        t0 = time.monotonic()
        second = run(tmp_path)
        assert second.returncode == 75, second.stderr[-3000:]
        assert len(second.stderr.strip().splitlines()) == 1 and "another cycle" in second.stderr
        assert time.monotonic() - t0 < 60  # at once: it does not wait for the lock
    finally:
        out, err = busy.communicate(timeout=600)
    assert busy.returncode == 0, err[-3000:]


def _test_rmse(root: Path) -> dict[str, float]:
    run_id = state(root)["run_id"]
    return {k: v for k, v in client(root).get_run(run_id).data.metrics.items() if "test/" in k}


@pytest.mark.slow
def test_a_cycle_killed_in_training_resumes_to_the_uninterrupted_metrics(tmp_path):
    slow = ["trainer.max_epochs=3", "trainer.limit_train_batches=12", "registry.min_skill=null"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for root in (whole, killed):
        feed(root)
    done = run(whole, *slow)
    assert done.returncode == 0, done.stderr[-3000:]

    victim = start(killed, *slow)
    last = killed / "cycle" / "checkpoints" / "attempt-1" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists():
        assert victim.poll() is None, victim.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # let the first epoch's checkpoint be written whole
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert state(killed)["step"] == "train"  # killed during training

    resumed = run(killed, *slow)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert state(killed)["step"] is None
    assert _test_rmse(killed) == pytest.approx(_test_rmse(whole), rel=1e-6)
    runs = client(killed).search_runs([client(killed).get_experiment_by_name(NAME).experiment_id])
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]  # the killed one, marked
