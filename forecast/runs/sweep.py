"""Hydra multiruns as one tracked sweep: sweep id, parent run, per-job records, summary, best job.

:class:`SweepCallback` (``hydra.callbacks`` in ``conf/train.yaml``) runs in the process that starts
the multirun: it refuses jobs whose trainer would relaunch the command line (see
:mod:`forecast.runs.relaunch`), creates the store and a parent MLflow run before any job starts,
and writes ``sweep.json`` into the sweep directory. Each job, wherever its launcher runs it (a
joblib worker, a submitit job), finds that file through its own Hydra config: its MLflow run is
tagged ``sweep_id`` and nested under the parent (``mlflow.parentRunId``), and it does not register
a model. ``on_job_end`` records the job's overrides, status and score beside its outputs. At the
end (or at interpreter exit, when a failed job aborted the sweep) the parent gets a summary table
and the best job's overrides as a ready-to-run command, and is closed.
"""

from __future__ import annotations

import atexit
import json
import math
import shlex
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from forecast.errors import ForecastError
from forecast.runs.relaunch import RelaunchError, refuse_relaunching_jobs
from forecast.tracking.mlflow import absolute_tracking_uri

SWEEP_FILE, JOB_FILE = "sweep.json", "sweep_job.json"
SUMMARY_MD, SUMMARY_JSON = "sweep_summary.md", "sweep_summary.json"
ROLE_TAG, JOB_TAG, PARENT_TAG = "sweep_role", "sweep_job", "mlflow.parentRunId"
SCORE = "sweep/score"


class SweepError(ForecastError):
    """A sweep cannot run as configured, or a sweep id names no finished job."""


@dataclass(frozen=True)
class SweepJob:
    """What a job of a tracked sweep needs to know about its sweep.

    Args:
        sweep_id: the id every run of the sweep is tagged with.
        parent_run_id: the sweep's parent MLflow run, or None without tracking.
        num: the job's number in the sweep.
    """

    sweep_id: str
    parent_run_id: str | None
    num: int

    def tags(self) -> dict[str, str]:
        """MLflow tags of the job's run: sweep id, job number, parent (nests it in the UI)."""
        tags = {"sweep_id": self.sweep_id, ROLE_TAG: "job", JOB_TAG: str(self.num)}
        if self.parent_run_id:
            tags[PARENT_TAG] = self.parent_run_id
        return tags


def sweep_job() -> SweepJob | None:
    """The sweep this process's Hydra job belongs to, or None outside a tracked multirun."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    info = Path(str(hc.sweep.dir)).resolve() / SWEEP_FILE
    if not info.exists():
        return None
    data = json.loads(info.read_text())
    return SweepJob(str(data["sweep_id"]), data.get("parent_run_id"), int(hc.job.num))


def _tracking(config: DictConfig) -> tuple[str, str | None, str] | None:
    """``(tracking uri, artifact location URI, experiment name)`` of the app's logger, or None."""
    if not config.get("logger"):
        return None
    uri = absolute_tracking_uri(str(config.logger.tracking_uri))
    art = config.logger.get("artifact_location")
    if uri.startswith(("http://", "https://")):
        art = None  # a tracking server stores artifacts itself
    elif art and "://" not in str(art):
        art = Path(str(art)).resolve().as_uri()
    return uri, None if art is None else str(art), str(config.logger.experiment_name)


class SweepCallback(Callback):
    """Hydra callback that turns every multirun of the train app into one tracked sweep."""

    def __init__(self) -> None:
        self._open: dict[str, Any] | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Refuse relaunching trainers, then create the store, the parent run and ``sweep.json``."""
        try:
            refuse_relaunching_jobs(config, str(kwargs.get("config_name") or "train"))
        except RelaunchError as e:  # Hydra turns a callback's exception into a warning
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        sweep_id = f"{sweep_dir.name}-{uuid.uuid4().hex[:6]}"
        info: dict[str, Any] = {"sweep_id": sweep_id, "sweep_dir": str(sweep_dir)}
        tracking = _tracking(config)
        if tracking is not None:
            info.update(_start_parent(sweep_id, str(sweep_dir), *tracking))
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(info, indent=1))
        self._open = info
        # a failed job aborts Hydra's sweep before on_multirun_end: close the parent anyway
        atexit.register(self._finish, "FAILED")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Record the job as started: a job that exits the process (``sys.exit``) stays so."""
        hc = config.hydra
        if hc.mode != RunMode.MULTIRUN:
            return
        record = {
            "num": int(hc.job.num),
            "overrides": list(hc.overrides.task),
            "status": "STARTED",
            "score": math.nan,
            "error": None,
        }
        out = Path(str(hc.runtime.output_dir))
        out.mkdir(parents=True, exist_ok=True)
        (out / JOB_FILE).write_text(json.dumps(record, indent=1))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Record the job's overrides, status, score (or error) beside its outputs."""
        hc = job_return.hydra_cfg.hydra if job_return.hydra_cfg is not None else None
        if hc is None or hc.mode != RunMode.MULTIRUN:
            return
        value = job_return._return_value  # the public property re-raises a failed job's error
        done = job_return.status == JobStatus.COMPLETED
        record = {
            "num": int(hc.job.num),
            "overrides": list(job_return.overrides or []),
            "status": "COMPLETED" if done else "FAILED",
            "score": float(value) if done and isinstance(value, int | float) else math.nan,
            "error": None if done else f"{type(value).__name__}: {value}",
        }
        out = Path(str(hc.runtime.output_dir))
        out.mkdir(parents=True, exist_ok=True)
        (out / JOB_FILE).write_text(json.dumps(record, indent=1))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Write the summary, print the best command and close the parent run."""
        self._finish(None)

    def _finish(self, status: str | None) -> None:
        info, self._open = self._open, None
        if info is None:  # already finished (or never started)
            return
        rows = collect_jobs(Path(info["sweep_dir"]))
        if info.get("tracking_uri"):
            _attach_runs(info, rows)
        best = best_row(rows)
        cmd = best_command(best["overrides"]) if best else None
        summary = {"sweep_id": info["sweep_id"], "jobs": rows, "best": best, "command": cmd}
        sweep_dir = Path(info["sweep_dir"])
        (sweep_dir / SUMMARY_JSON).write_text(json.dumps(summary, indent=1))
        (sweep_dir / SUMMARY_MD).write_text(summary_markdown(summary))
        if status is None:
            failed = any(r["status"] != "COMPLETED" for r in rows)
            status = "FAILED" if failed or not rows else "FINISHED"
        if info.get("tracking_uri"):
            _close_parent(info, sweep_dir, best, status)
        print(f"sweep {info['sweep_id']}: {len(rows)} jobs, summary {sweep_dir / SUMMARY_MD}")
        if best is not None and cmd:
            print(f"best ({best['score']:.6g}): {cmd}", flush=True)


def _start_parent(
    sweep_id: str, sweep_dir: str, uri: str, art: str | None, experiment: str
) -> dict[str, Any]:
    """Create the store (before any job opens it) and the sweep's parent run."""
    from forecast.tracking.registry import client_for
    from forecast.tracking.store import ensure_store, owner_tags

    ensure_store(uri, art)
    client = client_for(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment, art)
    tags = {"sweep_id": sweep_id, ROLE_TAG: "parent", "sweep_dir": sweep_dir, **owner_tags()}
    run = client.create_run(exp_id, run_name=f"sweep-{sweep_id}", tags=tags)
    return {"tracking_uri": uri, "parent_run_id": run.info.run_id, "experiment_id": exp_id}


def collect_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """The job records under a sweep directory, by job number."""
    rows = [json.loads(p.read_text()) for p in sweep_dir.glob(f"*/{JOB_FILE}")]
    for row in rows:
        if row["status"] == "STARTED":  # the job ended its process (or is still running)
            row.update(status="FAILED", error="the job ended without a result")
    return sorted(rows, key=lambda r: int(r["num"]))


def _attach_runs(info: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Add each job's MLflow run id; log its score on it (sortable in the UI)."""
    from forecast.tracking.registry import client_for

    client = client_for(info["tracking_uri"])
    runs = sweep_runs(client, info["sweep_id"])
    by_num = {r.data.tags.get(JOB_TAG): r for r in runs}
    for row in rows:
        run = by_num.get(str(row["num"]))
        row["run_id"] = run.info.run_id if run else None
        if run is not None and math.isfinite(row["score"]):
            client.log_metric(run.info.run_id, SCORE, row["score"])


def sweep_runs(client: Any, sweep_id: str, status: str | None = None) -> list[Any]:
    """The job runs (not the parent) tagged with ``sweep_id`` in every experiment."""
    from mlflow.entities import ViewType

    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    query = f"tags.sweep_id = '{sweep_id}' and tags.{ROLE_TAG} = 'job'"
    if status:
        query += f" and attributes.status = '{status}'"
    return list(client.search_runs(ids, query, ViewType.ALL)) if ids else []


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The completed job with the lowest finite score (the monitored metric is minimised)."""
    done = [r for r in rows if r["status"] == "COMPLETED" and math.isfinite(r["score"])]
    return min(done, key=lambda r: r["score"]) if done else None


def best_command(overrides: list[str]) -> str:
    """The train command that reruns one job alone (a sweep preset is kept, in RUN mode)."""
    args = [shlex.quote(o) for o in overrides]
    if any(o.startswith(("sweep=", "+sweep=")) for o in overrides):
        args.append("hydra.mode=RUN")
    return " ".join(["python -m pipelines.train", *args])


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table (job, overrides, score, status, run id) and best command."""
    lines = [
        f"# sweep {summary['sweep_id']}",
        "",
        "| job | overrides | score | status | run id |",
        "|---|---|---|---|---|",
    ]
    for r in summary["jobs"]:
        over = " ".join(r["overrides"]).replace("|", "\\|")
        status = r["status"] if not r.get("error") else f"{r['status']}: {r['error']}"[:200]
        lines.append(
            f"| {r['num']} | `{over}` | {r['score']:.6g} | {status} | {r.get('run_id') or '-'} |"
        )
    if summary.get("command"):
        lines += ["", f"best (score {summary['best']['score']:.6g}):", "", "```bash"]
        lines += [summary["command"], "```"]
    return "\n".join(lines) + "\n"


def _close_parent(
    info: dict[str, Any], sweep_dir: Path, best: dict[str, Any] | None, status: str
) -> None:
    from forecast.tracking.registry import client_for

    client = client_for(info["tracking_uri"])
    run_id = info["parent_run_id"]
    for name in (SUMMARY_MD, SUMMARY_JSON):
        client.log_artifact(run_id, str(sweep_dir / name))
    if best is not None:
        client.log_metric(run_id, SCORE, best["score"])
        client.set_tag(run_id, "best_run_id", str(best.get("run_id")))
        client.set_tag(run_id, "best_overrides", " ".join(best["overrides"])[:5000])
    client.set_terminated(run_id, status=status)


def sweep_version(tracking_uri: str, model_name: str, sweep_id: str) -> str:
    """Register the best finished job of a sweep (or find its version); return the version.

    Sweep jobs never register themselves; ``pipelines.promote sweep_id=...`` calls this and then
    checks the version against the champion like any other candidate.

    Args:
        tracking_uri: the store the sweep tracked to.
        model_name: the registered model's name.
        sweep_id: the sweep's id (printed at its end, tag ``sweep_id``).

    Returns:
        The registered version of the job with the lowest ``sweep/score``.
    """
    from forecast.tracking.registry import client_for, register

    client = client_for(absolute_tracking_uri(tracking_uri))
    runs = [
        r
        for r in sweep_runs(client, sweep_id, "FINISHED")
        if math.isfinite(r.data.metrics.get(SCORE, math.nan))
    ]
    if not runs:
        raise SweepError(
            f"sweep_id '{sweep_id}' has no finished job with a score in {tracking_uri}"
        )
    best = min(runs, key=lambda r: r.data.metrics[SCORE])
    run_id = best.info.run_id
    for mv in client.search_model_versions(f"name='{model_name}' and run_id='{run_id}'"):
        return str(mv.version)
    models = client.search_logged_models(
        [best.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    if not models:
        raise SweepError(f"the best job of sweep '{sweep_id}' (run {run_id}) logged no model")
    tags = {"run_id": run_id, "sweep_id": sweep_id}
    return str(register(client, model_name, models[0].model_id, run_id, tags=tags).version)
