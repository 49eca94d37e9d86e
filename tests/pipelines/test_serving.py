"""Real servers of the champion (our CLI and `mlflow models serve`), good and bad HTTP requests.

Both speak MLflow's protocol; ours adds a request byte cap (413) and messages without MLflow's
input summary. Every server is stopped by its PID (process group) in teardown.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from forecast.serving.server import free_port, start_server, stop_server, wait_ready

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "trainer=smoke",
    "registry.min_skill=null",  # a smoke model need not beat persistence to be served
    "data.source.n_times=240",
    "data.source.n_lat=16",
    "data.source.n_lon=16",
    "model.net.hidden_channels=[8]",
]
CTX, H, GRID = 12, 6, (16, 16)


def train_into(root: Path, extra_env: dict[str, str] | None = None) -> None:
    env = {**os.environ, "FORECAST_ROOT": str(root), **(extra_env or {})}
    if not extra_env or "MLFLOW_TRACKING_URI" not in extra_env:
        env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.train", *SMALL],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


def post(port: int, body: bytes | str, content_type: str = "application/json"):
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=data, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    train_into(root)
    return root


@pytest.fixture(scope="module", params=["forecast", "mlflow"])
def server(request, trained):
    port = free_port()
    proc = start_server(
        "models:/forecast-synthetic@champion", port, f"sqlite:///{trained}/mlflow.db",
        log_path=trained / f"{request.param}.log", server=request.param,
    )  # fmt: skip
    try:
        wait_ready(proc, port, timeout=180)
        yield port, proc, request.param
    finally:
        stop_server(proc)


def window(b: int = 1, ctx: int = CTX) -> list:
    return np.full((b, ctx, 1, *GRID), 0.3, dtype=np.float32).tolist()


@pytest.mark.slow
def test_good_requests_any_batch_size(server):
    port, _, _ = server
    for b in (1, 4):
        status, body = post(port, json.dumps({"inputs": window(b)}))
        assert status == 200, body
        y = np.asarray(json.loads(body)["predictions"])
        assert y.shape == (b, H, 1, *GRID) and np.isfinite(y).all()
    status, _ = post(port, json.dumps({"inputs": window(), "params": {"variables": ["field"]}}))
    assert status == 200


@pytest.fixture(scope="module")
def champion(trained):
    from forecast.tracking.registry import load_version

    return load_version(f"sqlite:///{trained}/mlflow.db", "forecast-synthetic", "champion")


@pytest.mark.slow
def test_answers_are_the_pyfuncs_predict(server, champion):
    """Our fast path and MLflow's path both answer exactly what the loaded pyfunc predicts."""
    port, _, _ = server
    x = (0.3 + np.random.default_rng(0).standard_normal((2, CTX, 1, *GRID))).astype(np.float32)
    status, body = post(port, json.dumps({"inputs": x.tolist()}))
    assert status == 200, body[:300]
    got = np.asarray(json.loads(body)["predictions"], dtype=np.float32)
    np.testing.assert_array_equal(got, champion.predict(x))


def nan_window() -> str:
    x = window()
    x[0][3][0][2][2] = float("nan")
    return json.dumps({"inputs": x})  # Python's json writes NaN, as many clients do


BAD = {
    "malformed json": ('{"inputs": [[1, 2', "JSON"),
    "not a dict": ("[1, 2, 3]", ("dictionary", "must be a JSON object")),
    "unknown key": (json.dumps({"inputs": window(), "foo": 1}), ("foo",)),
    "wrong context": (json.dumps({"inputs": window(ctx=CTX - 1)}), "shape"),
    "wrong shape": (json.dumps({"inputs": [[1.0, 2.0]]}), "shape"),
    "nan": (nan_window(), "non-finite"),
    "inf": (nan_window().replace("NaN", "Infinity"), "non-finite"),
    "strings": (json.dumps({"inputs": [[["a", "b"]]]}), ("convert string", "must be numbers")),
    "oversized": (json.dumps({"inputs": window(65)}), "batch size must be 1..64"),
    "wrong variables": (
        json.dumps({"inputs": window(), "params": {"variables": ["t2m"]}}),
        "variables must be ['field']",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_requests_get_400_with_a_message_and_no_trace(server, case):
    port, proc, kind = server
    if case == "unknown key" and kind == "mlflow":
        pytest.skip("`mlflow models serve` ignores unknown top-level keys")
    body, needle = BAD[case]
    status, text = post(port, body)
    assert status == 400, text[-500:]
    answer = json.loads(text)
    needles = (needle,) if isinstance(needle, str) else needle  # MLflow's words, or ours
    assert any(n in answer["message"] for n in needles), answer["message"][:300]
    assert "stack_trace" not in answer and "Traceback" not in text
    if kind == "forecast":  # our server drops MLflow's "Failed to predict data '<array>'"
        assert "Failed to predict" not in answer["message"], answer["message"][:300]
    assert proc.poll() is None  # still up


@pytest.mark.slow
def test_wrong_content_type_is_refused_and_server_stays_up(server):
    port, proc, _ = server
    status, _ = post(port, json.dumps({"inputs": window()}), "text/plain")
    assert status == 415
    assert post(port, json.dumps({"inputs": window()}))[0] == 200
    assert proc.poll() is None


@pytest.mark.slow
def test_oversized_payload_gets_413_and_server_stays_up(server):
    port, proc, kind = server
    if kind == "mlflow":
        pytest.skip("`mlflow models serve` has no byte cap: use python -m pipelines.serve")
    big = json.dumps({"inputs": window(100)}).encode()  # over 64 samples' worth of JSON
    status, text = post(port, big)
    assert status == 413, text[:300]
    assert "cap of" in json.loads(text)["message"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))  # no Content-Length
    conn.request("POST", "/invocations", body=chunks, encode_chunked=True,
                 headers={"Content-Type": "application/json"})  # fmt: skip
    r = conn.getresponse()
    assert r.status == 413 and "cap of" in json.loads(r.read())["message"]
    conn.close()
    assert post(port, json.dumps({"inputs": window()}))[0] == 200
    assert proc.poll() is None


@pytest.mark.slow
def test_server_stops_by_pid(tmp_path, server):
    port, proc, _ = server
    stop_server(proc)
    assert proc.poll() is not None
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
