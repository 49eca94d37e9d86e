"""The embedded store under concurrency: four jobs at once on a fresh store, a killed job's run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[2]

# one job: open the store the way train() does (ensure_store first), log a run, finish it
JOB = """
import sys
from mlflow.tracking import MlflowClient
from forecast.tracking.store import ensure_store, owner_tags
uri, name = sys.argv[1], sys.argv[2]
ensure_store(uri)
client = MlflowClient(tracking_uri=uri)
exp = client.get_experiment_by_name("concurrency")
try:
    exp_id = exp.experiment_id if exp else client.create_experiment("concurrency")
except Exception:  # created meanwhile by another job
    exp_id = client.get_experiment_by_name("concurrency").experiment_id
run = client.create_run(exp_id, run_name=name, tags=owner_tags())
for step in range(20):
    client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
if len(sys.argv) > 3:  # a job that dies while its run is RUNNING
    print(run.info.run_id, flush=True)
    import time; time.sleep(600)
client.set_terminated(run.info.run_id)
"""


def _job(uri: str, name: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", JOB, uri, name, *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_four_jobs_at_once_on_a_fresh_store(tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    jobs = [_job(uri, f"job{i}") for i in range(4)]
    outs = [j.communicate(timeout=300) for j in jobs]
    for j, (_, err) in zip(jobs, outs, strict=True):
        assert j.returncode == 0, err[-3000:]
        assert "duplicate column" not in err
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("concurrency")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"job{i}" for i in range(4)]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(len(client.get_metric_history(r.info.run_id, "loss")) == 20 for r in runs)


@pytest.mark.slow
def test_a_killed_jobs_run_is_marked_failed_by_the_next_job(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    dying = _job(uri, "dies", "hang")
    run_id = dying.stdout.readline().strip()
    assert run_id, dying.stderr.read()[-3000:]
    live = _job(uri, "lives", "hang")  # RUNNING, alive: must be left alone
    live_id = live.stdout.readline().strip()
    dying.send_signal(signal.SIGKILL)
    dying.wait(timeout=30)
    try:
        nxt = _job(uri, "next")
        _, err = nxt.communicate(timeout=300)
        assert nxt.returncode == 0, err[-3000:]
        client = mlflow.MlflowClient(tracking_uri=uri)
        run = client.get_run(run_id)
        assert run.info.status == "FAILED"
        assert "died" in run.data.tags["forecast.failed_reason"]
        assert client.get_run(live_id).info.status == "RUNNING"
    finally:
        live.kill()
        live.wait(timeout=30)
