"""The model server CLI and helpers to start and stop a local server process (tests, benchmarks).

``python -m forecast.serving.server MODEL_URI`` serves MLflow's own scoring app (same protocol as
``mlflow models serve``) under uvicorn on 127.0.0.1, with a request byte cap, clean 400
messages (:mod:`forecast.serving.app`) and a faster JSON path for good forecast requests
(:mod:`forecast.serving.fast_path`). ``mlflow models serve --env-manager local`` still works
for the same model, without the cap.
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
            sys.executable, "-m", "forecast.serving.server", model_uri,
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


def main(argv: list[str] | None = None) -> None:
    """Serve a registered model: ``python -m forecast.serving.server MODEL_URI [options]``.

    Options: ``--port P --workers N --threads T --max-body-bytes B``. Checks the store and the
    model reference, downloads the model once, then serves MLflow's scoring app with the byte
    cap under uvicorn on 127.0.0.1. SIGTERM/SIGINT stop uvicorn
    gracefully (and its workers with it).

    The tracking store comes from ``MLFLOW_TRACKING_URI`` (default: the project's sqlite file).
    """
    import argparse

    from forecast.errors import ForecastError
    from forecast.serving.app import ENV_MAX_BYTES, ENV_MODEL
    from forecast.tracking.mlflow import absolute_tracking_uri

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("model_uri")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--workers", type=int, default=1)
    # forecasts run one at a time per worker, on one thread (forecast.serving.torch_thread), so
    # the cores are split between workers: grid p50 18.8 ms at 1 thread, 13.4 ms at 2 on 2 cores
    p.add_argument(
        "--threads", type=int, default=None,
        help="intra-op threads per worker (default: usable cores // workers, at least 1)",
    )  # fmt: skip
    p.add_argument(
        "--max-body-bytes", type=int, default=None,
        help="request byte cap (default: max_samples full samples as JSON)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = max(1, len(os.sched_getaffinity(0)) // max(1, args.workers))
    if args.threads < 1:
        p.error(f"--threads must be a positive thread count, got {args.threads}")
    if args.max_body_bytes is not None and args.max_body_bytes <= 0:
        p.error(f"--max-body-bytes must be a positive byte count, got {args.max_body_bytes}")
    uri = absolute_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    try:
        version = preflight(args.model_uri, uri)
    except ForecastError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    # workers are spawned after this: they inherit it (torch reads it when first imported)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    import mlflow
    import uvicorn

    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    local = mlflow.artifacts.download_artifacts(artifact_uri=args.model_uri, tracking_uri=uri)
    os.environ[ENV_MODEL] = local
    if args.max_body_bytes:
        os.environ[ENV_MAX_BYTES] = str(args.max_body_bytes)
    import torch

    torch.set_num_threads(args.threads)  # this process is the worker when --workers 1
    where = f"http://127.0.0.1:{args.port}"
    print(f"serving {args.model_uri} (version {version}) on {where}", flush=True)
    uvicorn.run(
        "forecast.serving.app:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
