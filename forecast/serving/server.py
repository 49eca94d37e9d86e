"""Serving a registered model: :func:`serve`, and helpers to start and stop a server process.

``python -m pipelines.serve MODEL_URI`` (the CLI, in ``pipelines/``) serves MLflow's scoring
protocol (the same as ``mlflow models serve``) under uvicorn on 127.0.0.1, through our ASGI
layer (:mod:`forecast.serving.app`): a request byte cap, read and forecast deadlines, and
``/invocations`` parsed, predicted and answered once (:mod:`forecast.serving.fast_path`).
``mlflow models serve --env-manager local`` still works for the same model, without the cap.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    model_uri: str,
    port: int,
    tracking_uri: str | None = None,
    log_path: str | Path | None = None,
    workers: int = 1,
    threads: int | None = None,
    server: str = "forecast",
    max_body_bytes: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start a model server process on 127.0.0.1 only.

    The server runs in its own process group so :func:`stop_server` ends it and its uvicorn
    children together, by PID. The venv's ``bin`` goes first on PATH: mlflow execs ``uvicorn``.

    Args:
        model_uri: e.g. ``models:/forecast-synthetic@champion``.
        port: the port to bind.
        tracking_uri: the store that resolves ``models:/`` URIs (default: the environment's).
        log_path: where the server's output goes (default: discarded).
        workers: uvicorn worker processes.
        threads: intra-op threads per worker (OMP/MKL; torch reads them at start); default: the
            ``"forecast"`` CLI's default (usable cores // workers), torch's for ``"mlflow"``.
        server: ``"forecast"`` (this module's CLI: byte cap, clean messages) or ``"mlflow"``
            (``mlflow models serve --env-manager local``).
        max_body_bytes: the request byte cap of the ``"forecast"`` server (default: from the
            model's metadata, see :func:`forecast.serving.app.default_max_bytes`).

    Returns:
        The server process.
    """
    if server not in ("forecast", "mlflow"):
        raise ValueError(f"server must be 'forecast' or 'mlflow', got {server!r}")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    if server == "mlflow":
        cmd = [
            sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
            "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", str(workers),
        ]  # fmt: skip
    else:
        cmd = [
            sys.executable, "-m", "pipelines.serve", model_uri,
            "--port", str(port), "--workers", str(workers),
        ]  # fmt: skip
        if threads:
            cmd += ["--threads", str(threads)]
        if max_body_bytes:
            cmd += ["--max-body-bytes", str(max_body_bytes)]
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 (child owns it)
    return subprocess.Popen(
        cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 120.0) -> None:
    """Poll ``/ping`` until the server answers 200; raise if it exits or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"model server exited with code {proc.returncode} before ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"model server on port {port} not ready after {timeout:.0f} s")


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop the server's process group (SIGTERM, then SIGKILL) and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    # uvicorn workers may outlive the parent briefly; the group id is the server's PID
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def preflight(model_uri: str, tracking_uri: str) -> str:
    """Check the store answers and the model reference exists before a server starts.

    ``mlflow models serve`` alone retries an unreachable server for minutes and then dies with a
    stack trace; this says what is wrong in one line.

    Args:
        model_uri: ``models:/<name>@<alias>`` or ``models:/<name>/<version>``.
        tracking_uri: the tracking/registry store.

    Returns:
        The model version the reference resolves to.
    """
    from forecast.errors import ForecastError
    from forecast.tracking.mlflow import check_reachable
    from forecast.tracking.registry import client_for, resolve

    prefix = "models:/"
    if not model_uri.startswith(prefix):
        raise ForecastError(
            f"expected models:/<name>@<alias> or models:/<name>/<version>, got {model_uri}"
        )
    ref = model_uri[len(prefix) :]
    name, sep, alias = ref.partition("@")
    if not sep:
        name, _, alias = ref.rpartition("/")
    if not name or not alias:
        raise ForecastError(
            f"expected models:/<name>@<alias> or models:/<name>/<version>, got {model_uri}"
        )
    check_reachable(tracking_uri)
    return str(resolve(client_for(tracking_uri), name, alias).version)


def serve(
    model_uri: str,
    port: int,
    workers: int,
    threads: int,
    max_body_bytes: int | None = None,
    idle_timeout: float = 5.0,
    body_timeout: float = 30.0,
    predict_timeout: float = 30.0,
    head_timeout: float = 10.0,
) -> None:
    """Check the store and model, load the model once, then serve it under uvicorn on 127.0.0.1.

    Everything that can fail on a bad model (an unreachable store, an unknown reference, weights
    that do not load) fails here, before the port is bound, as a ``ForecastError``.
    SIGTERM/SIGINT stop uvicorn gracefully (and its workers with it).

    Args:
        model_uri: ``models:/<name>@<alias>`` or ``models:/<name>/<version>``.
        port: the port to bind on 127.0.0.1.
        workers: uvicorn worker processes.
        threads: intra-op threads per worker.
        max_body_bytes: the request byte cap (default: from the model's metadata).
        idle_timeout: seconds an idle keep-alive connection stays open.
        body_timeout: seconds a client may take to send a request body (408 after).
        predict_timeout: seconds a request may wait for its forecast (503 after).
        head_timeout: seconds a connection may take to send a complete request head, from
            connecting or from its previous answer (closed after: idle and slowloris clients).
    """
    from forecast.serving import app, protocol
    from forecast.tracking.mlflow import absolute_tracking_uri
    from forecast.tracking.store import default_tracking_uri

    uri = absolute_tracking_uri(default_tracking_uri())  # as the pipelines: FORECAST_ROOT, then cwd
    version = preflight(model_uri, uri)
    # workers are spawned after this: they inherit it (torch reads it when first imported)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    import mlflow
    import uvicorn

    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, tracking_uri=uri)
    os.environ[app.ENV_MODEL] = local
    os.environ[app.ENV_BODY_TIMEOUT] = str(body_timeout)
    os.environ[app.ENV_PREDICT_TIMEOUT] = str(predict_timeout)
    os.environ[protocol.ENV_HEAD_TIMEOUT] = str(head_timeout)
    if max_body_bytes:
        os.environ[app.ENV_MAX_BYTES] = str(max_body_bytes)
    import torch

    torch.set_num_threads(threads)  # this process is the worker when --workers 1
    # loaded here so a bad model exits before binding; one worker serves this very app
    served = app.build_app(app.load_served(local), max_body_bytes, body_timeout, predict_timeout)
    target: Any = served if workers == 1 else "forecast.serving.app:create_app"
    where = f"http://127.0.0.1:{port}"
    print(f"serving {model_uri} (version {version}) on {where}", flush=True)
    uvicorn.run(
        target,
        factory=workers > 1,
        host="127.0.0.1",
        port=port,
        workers=workers,
        log_level="warning",
        timeout_keep_alive=int(max(1, idle_timeout)),
        http=protocol.PROTOCOL,  # h11 with a request-head deadline
    )
