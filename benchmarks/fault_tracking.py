"""Tracking-server faults as processes: a dead server at start, a real one killed mid-run.

Shared by ``tests/faults/test_tracking_faults.py`` and ``python -m benchmarks.faults``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "forecast-synthetic"
TINY = [
    "data.source.n_times=160", "data.source.n_lat=16", "data.source.n_lon=16",
    "data.batch_size=4", "trainer=smoke", "registry.min_skill=null", "registry.n_origins=2",
]  # fmt: skip


def env_for(root: Path) -> dict[str, str]:
    """A job's environment on ``root``; MLflow's client tries a dead server once, not for ~2 min."""
    env = {**os.environ, "FORECAST_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    env.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    for key in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR", "FORECAST_CLI_DEBUG"):
        env.pop(key, None)
    return env


def errors(stderr: str) -> list[str]:
    """The ``error:`` lines of a job's stderr."""
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    from forecast.serving.server import free_port as port

    return port()


@dataclass
class StartRefusal:
    """``pipelines.train`` against a dead tracking server."""

    returncode: int
    errors: list[str]
    seconds: float
    traceback: bool
    data_read: bool


def dead_server_at_start(root: Path) -> StartRefusal:
    """Run the train job against a port nothing listens on; time it, whole process included."""
    root.mkdir(parents=True, exist_ok=True)
    dead = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.train", *TINY, f"logger.tracking_uri={dead}"],
        cwd=ROOT, env=env_for(root), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return StartRefusal(
        proc.returncode, errors(proc.stderr), time.monotonic() - t0,
        "Traceback" in proc.stderr, (root / "data").exists(),
    )  # fmt: skip


def start_mlflow(root: Path, port: int) -> subprocess.Popen[bytes]:
    """``mlflow server`` on 127.0.0.1:``port`` with a sqlite store in ``root``, once healthy."""
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination", (root / "server-artifacts").as_uri(), "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise TimeoutError("mlflow server did not start")


@dataclass
class LostRun:
    """What a train job did when its tracking server was killed after the first epoch."""

    returncode: int
    errors: list[str]
    traceback: bool
    last_epoch: int | None
    versions: list[str]
    champion: str | None
    statuses: list[str]
    seconds: float


def server_killed_mid_run(root: Path, epochs: int = 3) -> LostRun:
    """Train against a real server holding a champion (v1); kill the server mid-run.

    The server is SIGKILLed when the first checkpoint appears; its own sqlite store is read
    afterwards.
    """
    import mlflow

    from forecast.training.checkpoints import checkpoint_problem, load_checkpoint_file

    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = start_mlflow(root, port)
    uri = f"http://127.0.0.1:{port}"
    ckpts = root / "ckpt"
    t0 = time.monotonic()
    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
        client.create_registered_model(NAME)
        old = client.create_run(client.create_experiment("earlier"))  # the champion's run
        client.create_model_version(NAME, f"{old.info.artifact_uri}/model", old.info.run_id)
        client.set_terminated(old.info.run_id)
        client.set_registered_model_alias(NAME, "champion", "1")
        train = subprocess.Popen(
            [sys.executable, "-m", "pipelines.train", *TINY, f"logger.tracking_uri={uri}",
             f"trainer.max_epochs={epochs}", "trainer.limit_train_batches=8",
             f"callbacks.model_checkpoint.dirpath={ckpts}",
             # every epoch saved (Lightning 2.6 rewrites last.ckpt only beside a new top-k one),
             # so last.ckpt's epoch shows how far training went after the server died
             "callbacks.model_checkpoint.save_top_k=-1"],
            cwd=ROOT, env=env_for(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while not (ckpts / "last.ckpt").exists() and train.poll() is None:
            if time.monotonic() > deadline:
                train.kill()
                break
            time.sleep(0.1)
        os.killpg(server.pid, signal.SIGKILL)  # the server goes away after the first epoch
        server.wait(timeout=30)
        _, err = train.communicate(timeout=600)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    last = ckpts / "last.ckpt"
    epoch = None
    if last.exists() and checkpoint_problem(last) is None:
        epoch = int(load_checkpoint_file(last)["epoch"])
    store = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'server.db'}")
    versions = sorted(str(v.version) for v in store.search_model_versions(f"name='{NAME}'"))
    try:
        champion: str | None = str(store.get_model_version_by_alias(NAME, "champion").version)
    except mlflow.exceptions.MlflowException:
        champion = None
    exp = store.get_experiment_by_name(NAME)
    statuses = [r.info.status for r in store.search_runs([exp.experiment_id])] if exp else []
    return LostRun(
        train.returncode, errors(err), "Traceback" in err, epoch, versions, champion, statuses,
        time.monotonic() - t0,
    )  # fmt: skip


def process_faults(tmp: Path) -> list[tuple[str, bool]]:
    """The train job against a dead tracking server, and against one killed mid-run."""
    start = dead_server_at_start(tmp / "dead")
    print(f"         dead server at start: exit {start.returncode} after {start.seconds:.1f} s: "
          f"{start.errors}")  # fmt: skip
    lost = server_killed_mid_run(tmp / "lost")
    print(f"         server killed mid-run: exit {lost.returncode}, last epoch {lost.last_epoch}, "
          f"versions {lost.versions}, champion v{lost.champion}, runs {lost.statuses}, "
          f"{lost.seconds:.1f} s: {lost.errors}")  # fmt: skip
    return [
        ("fault: tracking server unreachable at start: one line in < 15 s, no data read",
         start.returncode == 2 and len(start.errors) == 1 and start.seconds < 15
         and not start.data_read and not start.traceback),
        ("fault: tracking server killed mid-run: trained, checkpoint kept, champion unchanged",
         lost.returncode == 2 and len(lost.errors) == 1 and lost.last_epoch == 2
         and lost.versions == ["1"] and lost.champion == "1" and not lost.traceback),
    ]  # fmt: skip
