"""In-process faults for ``python -m benchmarks.faults``: checkpoints, tracking, connections.

Each function injects its faults and returns ``(name, survived)`` pairs.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import torch


def checkpoint_faults(tmp: Path) -> list[tuple[str, bool]]:
    """Checkpoints written by the checksum IO, then truncated, bit-flipped or crafted."""
    from benchmarks.fault_artifacts import MARKER, Evil, corrupt
    from forecast.errors import ArtifactError
    from forecast.training.checkpoints import (
        ChecksumCheckpointIO,
        checkpoint_problem,
        load_checkpoint_file,
        resume_checkpoint,
        sidecar,
    )

    tmp.mkdir(parents=True, exist_ok=True)
    io = ChecksumCheckpointIO()

    def fresh() -> tuple[Path, Path]:
        for name in ("best.ckpt", "last.ckpt"):
            io.save_checkpoint({"state_dict": {"w": torch.ones(64)}, "epoch": 0}, tmp / name)
        return tmp / "best.ckpt", tmp / "last.ckpt"

    def refused(path: Path, words: str) -> bool:
        try:
            load_checkpoint_file(path)
        except ArtifactError as e:
            return words in str(e) and "\n" not in str(e)
        return False

    out = []
    best, last = fresh()
    corrupt(last)
    out.append(("fault: truncated checkpoint refused", refused(last, "does not match")))
    out.append(("fault: resume skips it for the previous good one",
                resume_checkpoint(last) == str(best)))  # fmt: skip
    best, last = fresh()
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF
    last.write_bytes(bytes(data))
    out.append(("fault: one flipped byte in a checkpoint refused", refused(last, "sha256")))
    evil = tmp / "evil.ckpt"
    torch.save({"state_dict": {"w": Evil(str(tmp / MARKER))}}, evil)
    out.append(("fault: crafted pickle checkpoint refused, nothing run",
                refused(evil, "not plain tensors") and not (tmp / MARKER).exists()))  # fmt: skip
    best, last = fresh()
    sidecar(last).unlink()  # killed between the checkpoint's rename and its digest's
    out.append(("fault: kill between checkpoint and checksum: still loads",
                checkpoint_problem(last) is None))  # fmt: skip
    return out


def tracking_faults() -> list[tuple[str, bool]]:
    """The run logger against a server that stopped answering: records it, never raises."""
    from forecast.errors import ForecastError
    from forecast.serving.server import free_port
    from forecast.tracking.logger import TrackingLogger, stop_if_lost

    saved = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        logger = TrackingLogger(experiment_name="x", tracking_uri=f"http://127.0.0.1:{free_port()}")
        try:
            logger.log_hyperparams({"a": 1})
            logger.log_metrics({"val/rmse": 1.0}, step=0)
            logger.finalize("success")
            quiet = bool(logger.lost)
        except Exception:  # noqa: BLE001 (any escape is the fault not survived)
            quiet = False
        try:
            stop_if_lost(logger, "http://dead", None)
            refused = False
        except ForecastError as e:
            refused = "went away" in str(e)
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
        else:
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = saved
    return [("fault: tracking lost mid-run: logging stops, the run refuses to register",
             quiet and refused)]  # fmt: skip


def _held(port: int, first: bytes, trickle: bytes, limit: float) -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as s:
        s.sendall(first)
        t0 = time.monotonic()
        for i in range(int(limit / 0.25)):
            s.settimeout(0.25)
            try:
                if not s.recv(4096):
                    return time.monotonic() - t0
            except TimeoutError:
                pass
            except ConnectionResetError:
                return time.monotonic() - t0
            if trickle and i % 4 == 0 and i // 4 < len(trickle):  # one byte a second
                try:
                    s.send(trickle[i // 4 : i // 4 + 1])
                except (BrokenPipeError, ConnectionResetError):
                    return time.monotonic() - t0
    return limit


def connection_faults(head_timeout: float = 2.0) -> list[tuple[str, bool]]:
    """Idle, slowloris and kept-alive connections against uvicorn with our protocol."""
    import uvicorn

    from forecast.serving.protocol import ENV_HEAD_TIMEOUT, PROTOCOL
    from forecast.serving.server import free_port

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    os.environ[ENV_HEAD_TIMEOUT] = str(head_timeout)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=PROTOCOL, log_level="error",
                            timeout_keep_alive=1, lifespan="off")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    head = b"GET /ping HTTP/1.1\r\nHost: x\r\nUser-Agent: slowloris\r\n\r\n"
    limit = 3 * head_timeout
    try:
        t_idle = _held(port, b"", b"", limit)
        t_loris = _held(port, b"", head, limit)
        t_kept = _held(port, head, b"", limit)
    finally:
        server.should_exit = True
        thread.join(10)
        os.environ.pop(ENV_HEAD_TIMEOUT, None)
    return [
        ("fault: idle new connection closed", t_idle < limit),
        ("fault: slowloris head (a byte a second) closed", t_loris < limit),
        ("fault: idle keep-alive connection closed", t_kept < limit),
    ]
