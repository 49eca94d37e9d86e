"""The fault suite as counts: bad inputs tried and answered clearly, faults injected and survived.

Run: python -m benchmarks.faults [--kills N] [--cycle-kills N]

Inputs: every bad training input of :mod:`benchmarks.fault_cases` (composed and run in-process,
answered as the entry point would print it), bad ``/invocations`` requests (through the served
app in-process) and broken model files. Faults: a full disk while a forecast is written, a
stalled request body, a forecast past its deadline, a model that raises; truncated, bit-flipped
and crafted checkpoints (and a resume falling back past one); idle, slowloris and kept-alive
connections (:mod:`benchmarks.fault_checks`); the train job against a dead tracking server and
against a real ``mlflow server`` killed mid-run (:mod:`benchmarks.fault_tracking`); SIGKILL at
seeded random moments of a process rewriting a forecast file (the last complete file must stay
readable, no partial file visible) and of the scheduled cycle (:mod:`benchmarks.fault_kills`:
checkpoints, champion, forecasts checked after each). Prints one line per case, then the
counts, ending with one JSON line. ``data_lost`` must be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from benchmarks.fault_artifacts import MARKER, broken_copies, save_model
from benchmarks.fault_cases import request_cases, train_cases
from benchmarks.fault_checks import checkpoint_faults, connection_faults, tracking_faults
from benchmarks.fault_kills import cycle_faults
from benchmarks.fault_tracking import process_faults

ROOT = Path(__file__).resolve().parents[1]
WRITER = """
import sys, numpy as np, pandas as pd, xarray as xr
from pathlib import Path
from forecast.runs.forecast import write_atomic
path, i = Path(sys.argv[1]), 0
writes = int(sys.argv[2]) if len(sys.argv) > 2 else None  # None: until killed
while writes is None or i < writes:
    i += 1
    v = np.full((64, 64, 64), float(i))
    t = pd.date_range("2020", periods=64)
    ds = xr.Dataset({"f": (("time", "y", "x"), v)}, coords={"time": t})
    write_atomic(ds.assign_attrs(n=i), path)
    print(i, flush=True)
"""


def train_inputs(tmp: Path) -> list[tuple[str, bool, str]]:
    """Each bad training input: ``(name, answered in one clear line, the line)``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import compose_train  # the tests' composition helper, outside a Hydra app
    from omegaconf import open_dict

    from forecast.runs.train import train
    from pipelines._cli import describe

    out = []
    tmp.mkdir(parents=True, exist_ok=True)
    for name, (overrides, words) in sorted(train_cases(tmp).items()):
        message = "accepted"
        try:
            cfg = compose_train(["trainer=smoke", "logger=none", *overrides])
            with open_dict(cfg):
                cfg.paths.root_dir, cfg.paths.output_dir = str(tmp), str(tmp / "out")
            train(cfg)
        except Exception as e:  # noqa: BLE001 (classified by the entry point's boundary)
            message = describe(e) or f"traceback: {type(e).__name__}"
        out.append((f"train: {name}", words in message and "\n" not in message, message))
    return out


def request(app: Any, body: bytes, ctype: str | None) -> tuple[int, dict[str, Any]]:
    """POST ``body`` to ``app``'s /invocations in-process; ``(status, JSON answer)``."""
    sent: list[dict[str, Any]] = []
    queue = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(m: dict[str, Any]) -> None:
        sent.append(m)

    headers = [(b"content-type", ctype.encode())] if ctype else []
    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": headers}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, json.loads(b"".join(m.get("body", b"") for m in sent) or b"{}")


def request_inputs(tmp: Path) -> list[tuple[str, bool, str]]:
    """Each bad request through the served app: 4xx with the expected words, never 5xx."""
    from forecast.serving.app import build_app, load_served

    tmp.mkdir(parents=True, exist_ok=True)
    model = load_served(str(save_model(tmp / "served")))
    app = build_app(model)
    shape = tuple(model.unwrap_python_model().metadata["sample_shape"])
    out = []
    for name, (body, ctype, status, words) in sorted(request_cases(shape).items()):
        got, answer = request(app, body, ctype)
        message = str(answer.get("message", ""))
        out.append((f"request: {name}", got == status and words in message, f"{got} {message}"))
    return out


def artifact_inputs(tmp: Path) -> list[tuple[str, bool, str]]:
    """Broken weights at load: one-line ArtifactError naming the file; the pickle runs nothing."""
    from forecast.errors import ArtifactError
    from forecast.serving.app import load_served

    out = []
    tmp.mkdir(parents=True, exist_ok=True)
    for name, (model_dir, words) in sorted(broken_copies(tmp).items()):
        try:
            load_served(str(model_dir))
            message = "loaded"
        except ArtifactError as e:
            message = str(e)
        ok = words in message and "\n" not in message and not (tmp / MARKER).exists()
        out.append((f"artifact: {name}", ok, message))
    return out


def full_disk(tmp: Path) -> tuple[bool, int]:
    """A write that hits ENOSPC: a StorageError, and no file left (visible or temporary)."""
    from forecast.errors import StorageError
    from forecast.runs.forecast import write_atomic

    ds = xr.Dataset(
        {"f": (("time",), np.arange(3.0))}, coords={"time": pd.date_range("2020", periods=3)}
    )
    original = xr.Dataset.to_netcdf

    def fill(self: xr.Dataset, path: Any, *args: Any, **kwargs: Any) -> None:
        Path(path).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    target = tmp / "disk" / "f.nc"
    target.parent.mkdir(parents=True)
    xr.Dataset.to_netcdf = fill  # type: ignore[method-assign]
    try:
        write_atomic(ds, target)
        ok = False
    except StorageError:
        ok = True
    finally:
        xr.Dataset.to_netcdf = original  # type: ignore[method-assign]
    left = list(target.parent.iterdir())
    return ok and not left, len(left)


def serving_faults() -> list[tuple[str, bool]]:
    """A stalled body (408), a forecast past its deadline (503), a raising model (500, hidden)."""
    from forecast.serving.asgi import Guarded
    from forecast.serving.fast_path import Invocations

    class Model:
        def __init__(self, sleep: float, fail: bool) -> None:
            self.sleep, self.fail = sleep, fail

        def predict(self, data: Any, params: Any = None) -> np.ndarray:
            time.sleep(self.sleep)
            if self.fail:
                raise RuntimeError("secret detail")
            return np.zeros(1, np.float32)

    async def stalled(app: Any) -> int:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(1.0)
            return {"type": "http.request", "body": b"{", "more_body": True}

        async def send(m: dict[str, Any]) -> None:
            sent.append(m)

        await app({"type": "http", "method": "POST", "path": "/invocations", "headers": []},
                  receive, send)  # fmt: skip
        return int(sent[0]["status"])

    slow = Invocations(Model(0.5, False), (1,), timeout=0.1)
    failing = Invocations(Model(0.0, True), (1,))
    status_slow, _ = asyncio.run(slow(None, b'{"inputs": [[1.0]]}'))
    status_fail, body = asyncio.run(failing(None, b'{"inputs": [[1.0]]}'))
    guarded = Guarded(lambda *a: None, 100, slow, body_timeout=0.2)  # type: ignore[arg-type]
    return [
        ("fault: stalled request body -> 408", asyncio.run(stalled(guarded)) == 408),
        ("fault: forecast past its deadline -> 503", status_slow == 503),
        ("fault: model raises -> 500, detail not sent",
         status_fail == 500 and b"secret" not in body),
    ]  # fmt: skip


def kill_trials(tmp: Path, n: int, seed: int = 0) -> tuple[int, int, int]:
    """SIGKILL a forecast writer ``n`` times at seeded random moments.

    Returns:
        ``(survived, data_lost, leftover temporaries)``: survived when the file afterwards is
        absent (killed before the first rename) or a complete dataset; lost when a file that
        existed complete before the kill is gone or unreadable; temporaries counted after the
        writer that follows the last kill.
    """
    rng = random.Random(seed)
    path = tmp / "kill" / "forecast.nc"
    path.parent.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    survived = lost = 0
    for _ in range(n):
        existed = path.exists()
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one complete write, then a random moment
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        try:
            with xr.open_dataset(path) as ds:
                complete = (
                    ds["f"].shape == (64, 64, 64) and float(ds["f"][0, 0, 0]) == ds.attrs["n"]
                )
        except (OSError, ValueError, KeyError):
            complete = False
        survived += int(complete)
        lost += int((existed or path.exists()) and not complete)
    # a killed writer's hidden temporary is removed by the next writer: count after one more
    subprocess.run([sys.executable, "-c", WRITER, str(path), "1"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    leftovers = len([p for p in path.parent.iterdir() if p.name != path.name])
    return survived, lost, leftovers


def main() -> None:
    """Run every input and fault; print lines, counts and the JSON line."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--kills", type=int, default=10, help="SIGKILL trials of a forecast writer")
    p.add_argument("--cycle-kills", type=int, default=10, help="SIGKILLs of the scheduled cycle")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ["FORECAST_ROOT"] = str(tmp)
        inputs = [*train_inputs(tmp / "t"), *request_inputs(tmp / "r"), *artifact_inputs(tmp / "a")]
        for name, ok, message in inputs:
            print(f"{'clear' if ok else 'UNCLEAR':8s} {name}: {message[:150]}")
        disk_ok, disk_left = full_disk(tmp)
        faults: list[tuple[str, bool]] = [("fault: full disk while writing", disk_ok)]
        faults += serving_faults()
        faults += checkpoint_faults(tmp / "ckpt")
        faults += tracking_faults()
        faults += connection_faults()
        faults += process_faults(tmp)
        for name, ok in faults:
            print(f"{'survived' if ok else 'FAILED':8s} {name}")
        survived_kills, lost, leftovers = kill_trials(tmp, args.kills)
        print(f"SIGKILL trials: {survived_kills}/{args.kills} left a complete file, "
              f"{lost} lost a complete file, {leftovers} hidden temporaries left")  # fmt: skip
        cycle = cycle_faults(tmp / "cycle", args.cycle_kills)
    result = {
        "inputs_tried": len(inputs),
        "clear": sum(ok for _, ok, _ in inputs),
        "faults_injected": len(faults) + args.kills + cycle["injected"],
        "survived": sum(ok for _, ok in faults) + survived_kills + cycle["survived"],
        "data_lost": lost + cycle["lost"],
        "cycle_kill_phases": cycle["phases"],
        "temporaries_left": leftovers + disk_left,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(
        f"inputs tried {result['inputs_tried']}, clear {result['clear']}; faults injected "
        f"{result['faults_injected']}, survived {result['survived']}; "
        f"data lost {result['data_lost']}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
