"""The real server process: a bad model exits 2 at start; bad and slow clients never get a 5xx."""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from benchmarks.fault_artifacts import corrupt, crafted
from forecast.serving.server import free_port, start_server, stop_server, wait_ready

ROOT = Path(__file__).resolve().parents[2]
NAME = "faults"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A sqlite store with a good champion (v1) and two broken versions (v2 truncated, v3 evil)."""
    import torch

    from forecast.data.normalize import Normalizer
    from forecast.data.spec import DataSpec
    from forecast.models.conv_lstm import ConvLSTMForecaster
    from forecast.serving.packaging import log_forecast_model
    from forecast.serving.pyfunc import model_metadata
    from forecast.tracking.registry import client_for, register

    tmp = tmp_path_factory.mktemp("server")
    uri = f"sqlite:///{tmp}/mlflow.db"
    client = client_for(uri)
    exp = client.create_experiment("faults", artifact_location=(tmp / "art").as_uri())
    kwargs = {"in_channels": 1, "horizon": 2, "hidden_channels": [2], "kernel_size": 3}
    meta = model_metadata(DataSpec(1, 1, 3, 2, grid=(4, 4), variables=("field",)), max_samples=4)
    norm = Normalizer(("field",), (0.0,), (1.0,))
    for version in (1, 2, 3):
        torch.manual_seed(0)
        run = client.create_run(exp)
        _, model_id = log_forecast_model(
            uri, run.info.run_id, ConvLSTMForecaster(**kwargs),
            "forecast.models.conv_lstm.ConvLSTMForecaster", kwargs, norm, meta,
            np.zeros((1, 3, 1, 4, 4), np.float32),
        )  # fmt: skip
        register(client, NAME, model_id, run.info.run_id)
        if version > 1:
            stored = Path(client.get_model_version_download_uri(NAME, str(version))[7:])
            weights = next(stored.rglob("weights.pt"))
            corrupt(weights) if version == 2 else crafted(weights, tmp)
    client.set_registered_model_alias(NAME, "champion", "1")
    return uri, tmp


@pytest.mark.parametrize(("version", "words"), [("2", "corrupt or truncated"), ("3", "refused")])
def test_bad_model_exits_2_at_start_in_one_line(store, version, words):
    uri, tmp = store
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.serve", f"models:/{NAME}/{version}", "--port",
         str(free_port())], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1 and words in lines[0], proc.stderr[-800:]
    assert "Traceback" not in proc.stderr and time.monotonic() - t0 < 60
    assert not (tmp / "forecast-fault-pickle-ran").exists()


def post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/invocations", body=body, headers=headers)
    r = conn.getresponse()
    out = r.status, json.loads(r.read() or b"{}")
    conn.close()
    return out


def held_open(port: int, first: bytes = b"", trickle: bytes = b"", limit: float = 40.0):
    """Seconds until the server closes a raw connection, and the trickled bytes it took.

    ``first`` is sent at once; then ``trickle`` one byte a second (slowloris) while it is open.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as s:
        s.sendall(first)
        t0, sent = time.monotonic(), 0
        while time.monotonic() - t0 < limit:
            if select.select([s], [], [], 1.0)[0]:
                try:
                    if not s.recv(65536):  # b"": closed by the server (answers are skipped)
                        return time.monotonic() - t0, sent
                except ConnectionResetError:
                    return time.monotonic() - t0, sent
            if sent < len(trickle):
                try:
                    s.send(trickle[sent : sent + 1])
                    sent += 1
                except (BrokenPipeError, ConnectionResetError):
                    return time.monotonic() - t0, sent
    return float("inf"), sent


def test_bad_and_slow_clients_get_4xx_and_the_server_stays_up(store, tmp_path):
    uri, _ = store
    port = free_port()
    log = tmp_path / "server.log"
    proc = start_server(f"models:/{NAME}@champion", port, uri, log, threads=1)
    try:
        wait_ready(proc, port)
        good = json.dumps({"inputs": np.zeros((1, 3, 1, 4, 4)).tolist()}).encode()
        assert post(port, good, {})[0] == 200  # no Content-Type: JSON by default
        cases = [
            (b"[" * 3000 + b"]" * 3000, {"Content-Type": "application/json"}, 400, "nests"),
            (good[:-1] + b', "foo": 1}', {}, 400, "'foo'"),
            (good, {"Content-Type": "text/csv"}, 415, "application/json"),
        ]
        for body, headers, status, words in cases:
            got, answer = post(port, body, headers)
            assert got == status and words in answer["message"], (got, answer)
        # a client that sends half its body and stalls is not kept forever (idle/slow limit)
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            s.settimeout(60)
            t0 = time.monotonic()
            reply = s.recv(4096)
            assert time.monotonic() - t0 < 45 and (reply == b"" or b" 408 " in reply)
        # idle and slow connections, all at once: raw sockets the server must close
        head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        with ThreadPoolExecutor(3) as pool:
            fresh = pool.submit(held_open, port)  # connects, never sends a byte
            loris = pool.submit(held_open, port, b"", head)  # its head, one byte a second
            idle = pool.submit(held_open, port, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            (t_fresh, _), (t_loris, n_loris), (t_idle, _) = (
                fresh.result(),
                loris.result(),
                idle.result(),
            )
        assert t_fresh < 15 and t_loris < 15 and n_loris < len(head), (t_fresh, t_loris)
        assert t_idle < 9, t_idle  # keep-alive after an answer: --idle-timeout (5 s)
        assert post(port, good, {"Content-Type": "application/json"})[0] == 200
    finally:
        stop_server(proc)
    assert b"Traceback" not in log.read_bytes()


def test_forecast_job_on_a_store_lacking_the_models_variables(store, tmp_path):
    from benchmarks.fault_cases import grid_store

    uri, _ = store
    path = grid_store(tmp_path / "ab.nc")  # variables a, b; the model reads "field"
    env = {**os.environ, "FORECAST_ROOT": str(tmp_path)}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.forecast", "data=grid_store", f"data.source.path={path}",
         "data.variables=[a]", f"tracking_uri={uri}", f"model_name={NAME}",
         f"output_dir={tmp_path / 'out'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-800:]
    assert "lacks the model's variables ['field']" in lines[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


FILL_TMPFS = """
mount -t tmpfs -o size=256k tmpfs "$DISK" || exit 97
dd if=/dev/zero of="$DISK/filler" bs=4k 2>/dev/null  # the disk is full before the job starts
"$@" 2>"$DISK.stderr"; rc=$?
ls -A "$DISK/out" > "$DISK.left" 2>/dev/null
exit $rc
"""


def test_forecast_job_on_a_full_disk_fails_in_one_line_and_leaves_no_file(store, tmp_path):
    """A real full filesystem: a 256 KiB tmpfs, filled, mounted in a user+mount namespace."""
    import pandas as pd
    import xarray as xr

    uri, _ = store
    times = pd.date_range("2020-01-01", periods=40, freq="6h")
    field = np.random.default_rng(0).standard_normal((40, 4, 4)).astype("float32")
    coords = {"time": times, "lat": np.linspace(-5, 5, 4), "lon": np.linspace(0, 10, 4)}
    path = tmp_path / "field.nc"
    xr.Dataset({"field": (("time", "lat", "lon"), field)}, coords=coords).to_netcdf(path)
    disk = tmp_path / "disk"
    disk.mkdir()
    env = {**os.environ, "FORECAST_ROOT": str(tmp_path), "DISK": str(disk)}
    env.pop("HYDRA_FULL_ERROR", None)
    job = [sys.executable, "-m", "pipelines.forecast", "data=grid_store",
           f"data.source.path={path}", "data.variables=[field]", f"tracking_uri={uri}",
           f"model_name={NAME}", f"output_dir={disk / 'out'}"]  # fmt: skip
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", FILL_TMPFS, "sh", *job],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if proc.returncode == 97 or "unshare:" in proc.stderr:
        pytest.skip(f"no user and mount namespaces here: {proc.stderr.strip()[:200]}")
    stderr = Path(f"{disk}.stderr").read_text()
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1, stderr[-1500:]
    assert "No space left on device" in lines[0] and str(disk / "out") in lines[0], lines[0]
    assert "Traceback" not in stderr
    assert Path(f"{disk}.left").read_text().split() == []  # no forecast, no temporary
