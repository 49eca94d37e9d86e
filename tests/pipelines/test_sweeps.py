"""Hydra multiruns as tracked sweeps: the relaunch guard, the summary, and real sweeps (slow)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from forecast.runs.relaunch import RelaunchError, refuse_relaunching_jobs, relaunched_processes
from forecast.runs.sweep import (
    SUMMARY_JSON,
    SUMMARY_MD,
    best_command,
    best_row,
    collect_jobs,
    summary_markdown,
)

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "trainer=smoke",
    "data.source.n_times=200",
    "data.source.n_lat=16",
    "data.source.n_lon=16",
    "data.batch_size=4",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]
DDP = {"_target_": "pytorch_lightning.strategies.DDPStrategy", "process_group_backend": "gloo"}


def test_relaunching_strategies_are_recognised():
    assert relaunched_processes({"devices": 2, "strategy": DDP}) == 2
    assert relaunched_processes({"devices": 1, "num_nodes": 2, "strategy": DDP}) == 2
    assert relaunched_processes({"devices": 2, "strategy": "auto", "accelerator": "cpu"}) == 2
    assert relaunched_processes({"devices": 1, "strategy": DDP}) == 0
    assert relaunched_processes({"devices": 2, "strategy": "ddp_spawn"}) == 0
    assert relaunched_processes({"devices": 2, "strategy": {**DDP, "start_method": "spawn"}}) == 0


@pytest.fixture
def conf():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        yield


def _multirun_config(task: list[str], hydra: list[str] = ()):
    """A multirun's config as Hydra hands it to on_multirun_start (sweep values left out)."""
    fixed = [o for o in task if "," not in o]
    cfg = compose("train", overrides=[*fixed, *hydra], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.overrides.task = list(task)
    return cfg


def test_multirun_with_a_relaunching_trainer_is_refused(conf):
    with pytest.raises(RelaunchError, match="trainer=ddp.*torchrun --nproc_per_node=2"):
        refuse_relaunching_jobs(_multirun_config(["trainer=smoke,ddp"]), "train")
    refuse_relaunching_jobs(_multirun_config(["trainer=smoke,default"]), "train")
    # DDP ranks as one srun task per device (Lightning's SLURM environment) are fine
    slurm = ["hydra/launcher=submitit_slurm", "hydra.launcher.tasks_per_node=2"]
    refuse_relaunching_jobs(_multirun_config(["trainer=ddp", "seed=1,2"], slurm), "train")
    with pytest.raises(RelaunchError, match="tasks_per_node=2"):
        refuse_relaunching_jobs(_multirun_config(["trainer=ddp", "seed=1,2"], slurm[:1]), "train")


def test_multirun_under_torchrun_is_refused(conf, monkeypatch):
    cfg = _multirun_config(["seed=1,2"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RelaunchError, match="torchrun"):
        refuse_relaunching_jobs(cfg, "train")


def test_summary_names_every_job_and_the_best_command(tmp_path):
    jobs = [
        {"num": 0, "overrides": ["sweep=grid", "model.optimizer.lr=0.001"], "status": "COMPLETED",
         "score": 0.5, "error": None},
        {"num": 1, "overrides": ["sweep=grid", "model.optimizer.lr=0.003"], "status": "COMPLETED",
         "score": 0.25, "error": None},
        {"num": 2, "overrides": ["sweep=grid", "model.optimizer.lr=9"], "status": "STARTED",
         "score": math.nan, "error": None},
    ]  # fmt: skip
    for job in jobs:
        (tmp_path / str(job["num"])).mkdir()
        (tmp_path / str(job["num"]) / "sweep_job.json").write_text(json.dumps(job))
    rows = collect_jobs(tmp_path)
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED", "FAILED"]
    best = best_row(rows)
    assert best["num"] == 1
    cmd = best_command(best["overrides"])
    assert cmd == "python -m pipelines.train sweep=grid model.optimizer.lr=0.003 hydra.mode=RUN"
    text = summary_markdown({"sweep_id": "s", "jobs": rows, "best": best, "command": cmd})
    assert text.count("\n| ") == 4 and cmd in text and "without a result" in text


def _run(args, root: Path, timeout=900):
    env = {**os.environ, "FORECAST_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _sweep_runs(root: Path):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("forecast-synthetic")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    jobs = [r for r in runs if r.data.tags.get("sweep_role") == "job"]
    return client, parents, jobs


@pytest.mark.slow
def test_parallel_grid_is_one_tracked_sweep_that_never_registers(tmp_path):
    proc = _run(["-m", "pipelines.train", "sweep=grid", *TINY, "model.net.patch=1"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    client, parents, jobs = _sweep_runs(tmp_path)
    assert len(parents) == 1 and len(jobs) == 4
    parent = parents[0]
    sweep_id = parent.data.tags["sweep_id"]
    assert parent.info.status == "FINISHED"
    assert {r.data.tags["sweep_id"] for r in jobs} == {sweep_id}
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parent.info.run_id}
    assert {r.info.status for r in jobs} == {"FINISHED"}
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {SUMMARY_MD, SUMMARY_JSON}
    summary = json.loads(
        Path(client.download_artifacts(parent.info.run_id, SUMMARY_JSON, str(tmp_path))).read_text()
    )
    assert len(summary["jobs"]) == 4 and {r["run_id"] for r in summary["jobs"]} == {
        r.info.run_id for r in jobs
    }
    assert summary["command"] in proc.stdout
    assert client.search_model_versions("name='forecast-synthetic'") == []  # champion untouched

    data = [o for o in TINY if o.startswith("data.source.")]  # the store the sweep trained on
    promote = _run(["-m", "pipelines.promote", f"sweep_id={sweep_id}", *data], tmp_path)
    assert promote.returncode == 0, promote.stderr[-3000:]
    versions = client.search_model_versions("name='forecast-synthetic'")
    assert [v.run_id for v in versions] == [summary["best"]["run_id"]]
    assert str(client.get_model_version_by_alias("forecast-synthetic", "champion").version) == "1"


@pytest.mark.slow
def test_optuna_sweep_prints_its_best_overrides(tmp_path):
    proc = _run(
        ["-m", "pipelines.train", "sweep=optuna", "hydra.sweeper.n_trials=3", *TINY], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    _, parents, jobs = _sweep_runs(tmp_path)
    assert len(parents) == 1 and len(jobs) == 3
    best = [line for line in proc.stdout.splitlines() if line.startswith("best (")]
    assert len(best) == 1 and "model.optimizer.lr=" in best[0] and "hydra.mode=RUN" in best[0]


@pytest.mark.slow
def test_multirun_with_ddp_is_refused_before_any_job(tmp_path):
    proc = _run(["-m", "pipelines.train", "-m", "trainer=smoke,ddp", *TINY[1:]], tmp_path, 300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "torchrun" in errors[0] and "submitit_slurm" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("outputs/multiruns/*/*/sweep_job.json"))  # no job started


@pytest.mark.slow
def test_a_failing_job_still_closes_the_parent_run(tmp_path):
    proc = _run(["-m", "pipelines.train", "-m", "model.optimizer.lr=1e-3,-1", *TINY], tmp_path, 600)
    assert proc.returncode != 0
    _, parents, jobs = _sweep_runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    rows = collect_jobs(next(tmp_path.glob("outputs/multiruns/*")))
    assert [r["status"] for r in rows] == ["COMPLETED", "FAILED"]


@pytest.mark.slow
def test_submitit_local_sweep_runs_two_jobs(tmp_path):
    proc = _run(
        ["-m", "pipelines.train", "-m", "hydra/launcher=submitit_local", "seed=1,2", *TINY],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    _, parents, jobs = _sweep_runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(jobs) == 2 and {r.info.status for r in jobs} == {"FINISHED"}
