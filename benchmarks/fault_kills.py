"""SIGKILL trials of the scheduled cycle (train -> register -> promote -> forecast), with checks.

Shared by ``tests/faults/test_kill_trials.py`` and ``python -m benchmarks.faults``. One reference
cycle on a tiny feed is timed; then each trial starts ``python -m pipelines.cycle`` (resuming
what the last kill left, or on new data once a cycle completed) and SIGKILLs it at a seeded
random moment inside a chosen step (train, promote, forecast; the moments stratified over the
time that step last took), so the kills spread over the whole cycle on any machine.
After every trial :func:`check` asserts what must survive a kill; the phase a kill
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
    """One trial: the step aimed at and the delay into it, whether it was killed, what it hit."""

    delay: float
    killed: bool
    phase: str
    seconds: float
    target: str = ""
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


def _phase(root: Path, exited: bool, t0: float, before: int, seen: dict[str, float]) -> str:
    """Which part of the cycle a kill hit, from what it left behind."""
    from forecast.training.checkpoints import load_checkpoint_file

    if exited:
        return "completed"
    if "done" in seen:
        return "exit"
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
        return "training set-up"
    trained = load_checkpoint_file(fresh[-1])["epoch"] >= EPOCHS - 1
    return "test/registration" if trained else "training"


STEPS = ("train", "promote", "forecast")
# the kill plan of one cycle: a step, then a seeded moment inside it (training twice: it holds the
# checkpoint writes and the registration as well); a resumed run finishes what the last kill left
PLAN = ("train", "train", "promote", "forecast")


def _entered(step: str, now_step: str | None, resumed: str | None, log: Path) -> bool:
    """Whether the run has begun ``step``, given the state file's step now.

    The state file says so, or, for the step a resumed run starts at (already in the state file
    before it starts), its log says it resumes there.
    """
    if step == resumed:
        return log.is_file() and f"resuming at step '{step}'" in log.read_text(errors="replace")
    return now_step == step


def _run_watched(
    root: Path, log: Path, target: str | None = None, offset: float = 0.0
) -> tuple[subprocess.Popen[bytes], dict[str, float]]:
    """Start a cycle; kill it ``offset`` seconds after it begins step ``target`` (None: never).

    Returns the finished process and when (seconds from the start) each step was seen to begin
    (``done``: when the state file said the cycle was over).
    """
    resumed = state(root).get("step")
    proc = start(root, log)
    t0 = time.monotonic()
    seen: dict[str, float] = {}
    while proc.poll() is None:
        now, now_step = time.monotonic() - t0, state(root).get("step")  # one read a poll
        for step in STEPS:
            if step not in seen and _entered(step, now_step, resumed, log):
                seen[step] = now
        if "forecast" in seen and "done" not in seen and now_step is None:
            seen["done"] = now  # the cycle's work is over (the process is still exiting)
        if target in seen and now >= seen[target] + offset:
            proc.send_signal(signal.SIGKILL)
            break
        if now > 600:
            proc.kill()
            raise RuntimeError(f"a cycle ran over 600 s; see {log}")
        time.sleep(0.02)
    proc.wait(timeout=60)
    return proc, seen


def reference(root: Path) -> tuple[float, dict[str, float]]:
    """Write the feed and run one whole cycle; its duration and each step's, in seconds."""
    from forecast.data.synthetic import write_feed

    write_feed(root / "feed.zarr", 200, n_lat=16, n_lon=16, n_blobs=4)
    t0 = time.monotonic()
    log = root / "logs" / "reference.log"
    proc, seen = _run_watched(root, log)
    total = time.monotonic() - t0
    if proc.returncode != 0 or set(seen) != {*STEPS, "done"}:
        raise RuntimeError(f"reference cycle: exit {proc.returncode}, steps seen {seen}:\n"
                           + log.read_text()[-3000:])  # fmt: skip
    return total, _spans(seen)


def _spans(seen: dict[str, float]) -> dict[str, float]:
    """How long each step took in a run that was not killed: from its start to the next's."""
    order = [*STEPS, "done"]
    return {
        step: seen[after] - seen[step]
        for step, after in zip(order, order[1:], strict=False)
        if step in seen and after in seen
    }


def kill_trials(root: Path, kills: int, seed: int = 0) -> tuple[list[Trial], float, bool]:
    """The reference cycle, then trials until ``kills`` processes were SIGKILLed, then one more.

    Each kill is aimed at a step of :data:`PLAN` in turn, at a seeded random moment inside the
    time that step took in the latest run that went through it unkilled (the reference first;
    stratified: the moments of each step spread over it), so the kills hit every part of the
    cycle whatever the machine's speed and load.

    Returns:
        ``(trials, reference seconds, whether the run after the last trial completed)``.
    """
    from forecast.data.synthetic import extend_feed

    duration, spans = reference(root)
    loaded: set[str] = set()
    problems = check(root, loaded)
    if problems:
        raise RuntimeError(f"the reference cycle left: {problems}")
    rng = random.Random(seed)
    plan = [PLAN[k % len(PLAN)] for k in range(kills)]
    per_step = {s: plan.count(s) for s in STEPS}
    slot = {s: rng.sample(range(max(per_step[s], 1)), per_step[s]) for s in STEPS}
    trials: list[Trial] = []
    for i in range(3 * kills):
        done = sum(t.killed for t in trials)
        if done >= kills:
            break
        if state(root).get("step") is None:
            extend_feed(root / "feed.zarr", 8)  # new data: a whole new cycle to kill
        target = plan[done]
        nth = slot[target][sum(plan[j] == target for j in range(done))]
        offset = 0.7 * spans[target] * (nth + rng.random()) / per_step[target]
        before, t0 = versions(root), time.time()
        started = time.monotonic()
        proc, seen = _run_watched(root, root / "logs" / f"trial-{i}.log", target, offset)
        exited = proc.returncode != -signal.SIGKILL
        trial = Trial(offset, not exited, _phase(root, exited, t0, before, seen),
                      time.monotonic() - started, target=target)  # fmt: skip
        if exited and proc.returncode != 0:
            trial.problems.append(f"a run after a kill exited {proc.returncode}")
        if exited:  # the machine's speed changes (load): aim by the latest steps that ran whole
            spans.update(_spans(seen))
        trial.problems += check(root, loaded)
        trials.append(trial)
    if state(root).get("step") is None:
        extend_feed(root / "feed.zarr", 8)
    last, _ = _run_watched(root, root / "logs" / "final.log")
    completed = last.returncode == 0 and state(root).get("step") is None
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
