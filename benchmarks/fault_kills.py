"""SIGKILL trials of the scheduled cycle (train -> register -> promote -> forecast), with checks.

Shared by ``tests/faults/test_kill_trials.py`` and ``python -m benchmarks.faults``. One reference
cycle on a tiny feed is timed; then each trial starts ``python -m pipelines.cycle`` (resuming
what the last kill left, or on new data once a cycle completed) and SIGKILLs it after a delay
drawn from a seeded RNG, stratified over the reference duration so the kills spread over the
whole cycle. After every trial :func:`check` asserts what must survive a kill; the phase a kill
hit is read from what it left behind (state step, checkpoints, temporaries, versions).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
NAME = "forecast-synthetic"
EPOCHS = 2
TINY = [
    "data=grid_store", "data.variables=[field]", "data.batch_size=4", "trainer=smoke",
    f"trainer.max_epochs={EPOCHS}", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
    "registry.n_origins=2", "registry.min_skill=null", "registry.margin=0.0",
]  # fmt: skip


@dataclass
class Trial:
    """One trial: the delay drawn, whether the process was still alive to kill, what it hit."""

    delay: float
    killed: bool
    phase: str
    seconds: float
    problems: list[str] = field(default_factory=list)


def start(root: Path, log: Path) -> subprocess.Popen[bytes]:
    """``python -m pipelines.cycle`` on ``root``'s feed and store, output to ``log``."""
    env = {**os.environ, "FORECAST_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [*TINY, f"data.source.path={root / 'feed.zarr'}"]
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "wb")  # noqa: SIM115 (the child owns it)
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cycle", *args],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip


def state(root: Path) -> dict[str, Any]:
    """The cycle's state file (empty before the first cycle)."""
    path = root / "cycle" / "state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _client(root: Path) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def versions(root: Path) -> int:
    """How many versions of the model are registered."""
    if not (root / "mlflow.db").exists():
        return 0
    return len(_client(root).search_model_versions(f"name='{NAME}'"))


def _ckpts(root: Path) -> list[Path]:
    return sorted((root / "cycle" / "checkpoints").glob("attempt-*/*.ckpt"))


def check(root: Path, loaded: set[str]) -> list[str]:
    """What must hold after any kill; the list of what does not (empty: all good).

    Every visible checkpoint verifies and the one a resume would pick loads; ``champion``, when
    set, is a complete model that loads and forecasts finite values (each version loaded once:
    ``loaded``); every visible forecast file opens complete; the store answers.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from forecast.training.checkpoints import (
        checkpoint_problem,
        load_checkpoint_file,
        resume_checkpoint,
    )

    problems = []
    for ckpt in _ckpts(root):
        why = checkpoint_problem(ckpt)
        if why:
            problems.append(f"visible checkpoint {ckpt.name}: {why}")
    for folder in (root / "cycle" / "checkpoints").glob("attempt-*"):
        chosen = (
            resume_checkpoint(folder / "last.ckpt") if (folder / "last.ckpt").exists() else None
        )
        if chosen is not None and not load_checkpoint_file(chosen)["state_dict"]:
            problems.append(f"{chosen}: no state_dict")
    client = _client(root)
    try:
        champion = str(client.get_model_version_by_alias(NAME, "champion").version)
    except MlflowException:
        champion = None
    if champion is not None and champion not in loaded:
        uri = f"sqlite:///{root / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        model = mlflow.pyfunc.load_model(f"models:/{NAME}/{champion}")
        shape = model.unwrap_python_model().metadata["sample_shape"]
        y = np.asarray(model.predict(np.zeros((1, *shape), np.float32)))
        if not np.isfinite(y).all():
            problems.append(f"champion v{champion} forecasts non-finite values")
        loaded.add(champion)
    out = root / "forecasts"
    for f in sorted(out.iterdir()) if out.is_dir() else []:
        if f.name.startswith("."):
            continue  # a killed writer's temporary: not visible output (removed by the next)
        try:
            with xr.open_dataset(f) as ds:
                if not ds.data_vars or not all(np.isfinite(v.values).all() for v in ds.values()):
                    problems.append(f"forecast {f.name} is incomplete")
        except (OSError, ValueError) as e:
            problems.append(f"forecast {f.name} does not open: {e}")
    return problems


def _phase(root: Path, exited: bool, t0: float, before: int) -> str:
    """Which part of the cycle a kill hit, from what it left behind."""
    from forecast.training.checkpoints import load_checkpoint_file

    if exited:
        return "completed"
    step = state(root).get("step")
    if any((root / "cycle" / "checkpoints").glob("attempt-*/.*.tmp")):
        return "checkpoint write"
    if step == "promote":
        return "promotion"
    if step == "forecast":
        return "forecast write"
    if step != "train":
        return "start"
    if versions(root) > before:
        return "registration"
    fresh = [c for c in _ckpts(root) if c.name == "last.ckpt" and c.stat().st_mtime >= t0]
    if not fresh:
        return "start"
    trained = load_checkpoint_file(fresh[-1])["epoch"] >= EPOCHS - 1
    return "test/registration" if trained else "training"


def reference(root: Path) -> float:
    """Write the feed and run one whole cycle; its duration in seconds."""
    from forecast.data.synthetic import write_feed

    write_feed(root / "feed.zarr", 200, n_lat=16, n_lon=16, n_blobs=4)
    t0 = time.monotonic()
    proc = start(root, root / "logs" / "reference.log")
    if proc.wait(timeout=600) != 0:
        raise RuntimeError((root / "logs" / "reference.log").read_text()[-3000:])
    return time.monotonic() - t0


def kill_trials(root: Path, kills: int, seed: int = 0) -> tuple[list[Trial], float, bool]:
    """The reference cycle, then trials until ``kills`` processes were SIGKILLed, then one more.

    Returns:
        ``(trials, reference seconds, whether the run after the last trial completed)``.
    """
    from forecast.data.synthetic import extend_feed

    duration = reference(root)
    loaded: set[str] = set()
    problems = check(root, loaded)
    if problems:
        raise RuntimeError(f"the reference cycle left: {problems}")
    rng = random.Random(seed)
    slots = list(range(kills))
    rng.shuffle(slots)
    trials: list[Trial] = []
    for i in range(3 * kills):
        if sum(t.killed for t in trials) >= kills:
            break
        if state(root).get("step") is None:
            extend_feed(root / "feed.zarr", 8)  # new data: a whole new cycle to kill
        slot = slots[sum(t.killed for t in trials) % kills]
        delay = duration * (slot + rng.random()) / kills
        before, t0 = versions(root), time.time()
        proc = start(root, root / "logs" / f"trial-{i}.log")
        started = time.monotonic()
        try:
            proc.wait(timeout=delay)
            exited = True
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            exited = False
        trial = Trial(delay, not exited, _phase(root, exited, t0, before),
                      time.monotonic() - started)  # fmt: skip
        if exited and proc.returncode != 0:
            trial.problems.append(f"a run after a kill exited {proc.returncode}")
        trial.problems += check(root, loaded)
        trials.append(trial)
    if state(root).get("step") is None:
        extend_feed(root / "feed.zarr", 8)
    last = start(root, root / "logs" / "final.log")
    completed = last.wait(timeout=600) == 0 and state(root).get("step") is None
    if completed:
        extra = check(root, loaded)
        completed = not extra
    return trials, duration, completed


def cycle_faults(root: Path, kills: int) -> dict[str, Any]:
    """SIGKILL the scheduled cycle ``kills`` times; counts, and the phases the kills hit."""
    root.mkdir(parents=True)
    trials, reference_s, completed = kill_trials(root, kills)
    phases: dict[str, int] = {}
    for t in trials:
        if t.killed:
            phases[t.phase] = phases.get(t.phase, 0) + 1
        mark = "killed" if t.killed else "ran"
        print(
            f"{'survived' if not t.problems else 'FAILED':8s} cycle {mark} after "
            f"{t.delay:.1f} s ({t.phase}){': ' + '; '.join(t.problems) if t.problems else ''}"
        )
    killed = [t for t in trials if t.killed]
    print(f"cycle SIGKILL trials: {len(killed)} kills over a {reference_s:.0f} s cycle, phases "
          f"{phases}; the run after the last completed: {completed}")  # fmt: skip
    return {
        "injected": len(killed),
        "survived": sum(not t.problems for t in killed),
        "lost": sum(bool(t.problems) for t in trials) + (not completed),
        "phases": phases,
    }
