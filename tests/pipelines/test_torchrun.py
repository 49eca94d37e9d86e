"""DDP ranks started by torchrun (Lightning's torchelastic environment): one node, two nodes.

Both start on a fresh project root: no data, no tracking store. The ranks generate the synthetic
store under its file lock and rank 0 alone creates the tracking store.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "data.source.n_times=200",
    "data.source.n_lat=16",
    "data.source.n_lon=16",
    "data.batch_size=4",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(root: Path) -> dict[str, str]:
    env = {**os.environ, "FORECAST_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    return env


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args, "-m", "pipelines.train"]


def _one_tracked_run(root: Path):
    with sqlite3.connect(root / "mlflow.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("forecast-synthetic")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    assert runs[0].info.status == "FINISHED"
    assert "test/skill" in runs[0].data.metrics
    return runs[0]


@pytest.mark.slow
def test_torchrun_one_node_two_processes_on_a_fresh_root(tmp_path):
    """Two ranks start at once on a fresh root: one data store, one tracking store, one run."""
    cmd = [*_torchrun("--nproc_per_node=2", f"--master_port={_free_port()}"), "trainer=ddp", *SMALL]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("MLflow run id:") == 1  # rank 0 alone reports and tracks
    # Lightning's own log line; Hydra's logging (stdout and the job log) or stderr carries it
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stdout + proc.stderr
    _one_tracked_run(tmp_path)
    stores = [p.name for p in (tmp_path / "data" / "synthetic").iterdir()]
    assert "grid.zarr" in stores and not [n for n in stores if ".tmp-" in n or ".old-" in n]


@pytest.mark.slow
def test_torchrun_two_nodes_on_localhost(tmp_path):
    """Two torchrun launches (one per 'node', each with its own project root) form one job."""
    endpoint = f"127.0.0.1:{_free_port()}"
    procs = []
    for node in (0, 1):
        root = tmp_path / f"node{node}"
        root.mkdir()
        args = ["--nnodes=2", "--nproc_per_node=1", f"--node_rank={node}"]
        cmd = [*_torchrun(*args, f"--rdzv_endpoint={endpoint}"), "trainer=ddp_torchrun", *SMALL]
        procs.append(
            subprocess.Popen(
                cmd, cwd=ROOT, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True,
            )
        )  # fmt: skip
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-4000:]
    assert outs[0][0].count("MLflow run id:") == 1 and "MLflow run id:" not in outs[1][0]
    assert "MEMBER: 2/2" in outs[1][0] + outs[1][1]
    run = _one_tracked_run(tmp_path / "node0")
    assert run.data.params["trainer.num_nodes"] == "2"
    assert not (tmp_path / "node1" / "mlflow.db").exists()  # rank 1 never opens a store
