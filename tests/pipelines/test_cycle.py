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


# long enough an epoch to stop a cycle in training; the shared fresh cycle trains this way
SLOW = ["trainer.max_epochs=3", "trainer.limit_train_batches=12", "registry.min_skill=null"]


def _test_metrics(root: Path) -> dict[str, float]:
    run_id = state(root)["run_id"]
    return {k: v for k, v in client(root).get_run(run_id).data.metrics.items() if "test/" in k}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """One cycle on a fresh root: the start of the sequence test, and the uninterrupted
    reference of the resume test (its metrics are read before the sequence test changes it)."""
    root = tmp_path_factory.mktemp("fresh")
    feed(root)
    proc = run(root, *SLOW)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc, state(root), _test_metrics(root)


@pytest.mark.slow
def test_evaluate_scores_the_champion_and_a_version_like_promotion(fresh):
    """`pipelines.evaluate` on the fresh cycle's store: the promotion backtest, logged."""
    root = fresh[0]
    env = {**os.environ, "FORECAST_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    # runs before the sequence test below grows the feed (file order), so these are the first
    # cycle's held-out rows
    data = ["data=grid_store", "data.variables=[field]", f"data.source.path={root / 'feed.zarr'}"]
    args = [sys.executable, "-m", "pipelines.evaluate", *data, "registry.n_origins=4"]
    proc = subprocess.run([*args, "version=1"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    champion = str(client(root).get_model_version_by_alias(NAME, "champion").version)
    lines = said(proc)
    assert len(lines) == len({champion, "1"}) and lines[0].startswith(f"{NAME} v{champion} (")
    v1 = client(root).get_model_version(NAME, "1")
    # the first cycle promoted v1 over no champion on these origins: the same backtest
    promoted = float(v1.tags["backtest_score"])
    assert float(v1.tags["evaluation/score"]) == pytest.approx(promoted, rel=1e-5)
    history = client(root).get_metric_history(v1.run_id, "evaluation/backtest")
    assert [m.value for m in history] == [pytest.approx(promoted, rel=1e-5)]


@pytest.mark.slow
def test_fresh_cycle_then_no_new_data_then_new_data_fine_tuned(fresh):
    tmp_path, first, s, _ = fresh
    assert said(first) and said(first)[-1].startswith("promoted:"), first.stdout
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
def test_a_second_cycle_exits_75_and_a_killed_one_resumes_to_the_uninterrupted_metrics(
    tmp_path, fresh
):
    """A cycle stopped in training holds the lock: a second cycle exits 75 at once. Killed
    there, the next cycle resumes from its last checkpoint to the uninterrupted cycle's metrics."""
    killed = tmp_path / "killed"
    killed.mkdir()
    feed(killed)
    victim = start(killed, *SLOW)
    last = killed / "cycle" / "checkpoints" / "attempt-1" / "last.ckpt"
    try:
        deadline = time.monotonic() + 300
        while not last.exists():
            assert victim.poll() is None, victim.communicate()[1][-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)  # let the first epoch's checkpoint be written whole
        victim.send_signal(signal.SIGSTOP)  # frozen in training, holding the lock
        assert state(killed)["step"] == "train"

        t0 = time.monotonic()
        second = run(killed)
        assert second.returncode == 75, second.stderr[-3000:]
        assert len(second.stderr.strip().splitlines()) == 1 and "another cycle" in second.stderr
        assert time.monotonic() - t0 < 60  # at once: it does not wait for the lock
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)

    resumed = run(killed, *SLOW)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert state(killed)["step"] is None
    assert _test_metrics(killed) == pytest.approx(fresh[3], rel=1e-6)
    runs = client(killed).search_runs([client(killed).get_experiment_by_name(NAME).experiment_id])
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]  # the killed one, marked


@pytest.mark.slow
def test_a_cycle_killed_between_registration_and_its_state_save_adopts_that_version(tmp_path):
    """The state as a kill right after registration leaves it (step 'train', no candidate, no
    champion yet): the resumed cycle takes the registered version instead of training again."""
    feed(tmp_path)
    first = run(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    done = state(tmp_path)
    assert versions(tmp_path) == ["1"] and done["cycle_id"]
    # what the state file held when version 1 was created: the cycle was still in "train"
    before = {**done, "step": "train", "fingerprint": None, "version": None, "forecast": None,
              "run_id": None, "candidate": None, "decision": None}  # fmt: skip
    (tmp_path / "cycle" / "state.json").write_text(json.dumps(before))
    client(tmp_path).delete_registered_model_alias(NAME, "champion")

    resumed = run(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "adopting v1" in resumed.stderr + resumed.stdout
    assert versions(tmp_path) == ["1"]  # no second version, and no second training run
    experiment = client(tmp_path).get_experiment_by_name(NAME)
    assert len(client(tmp_path).search_runs([experiment.experiment_id])) == 1
    after = state(tmp_path)
    assert after["step"] is None and after["version"] == "1" and after["run_id"] == done["run_id"]
    assert str(client(tmp_path).get_model_version_by_alias(NAME, "champion").version) == "1"
