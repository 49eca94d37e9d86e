"""HTTP serving latency and throughput of the MLflow scoring server for the project's pyfunc.

Run: python -m benchmarks.serving [--requests N] [--stress N] [--threads T] [--reverse]
Prints a table per model and, as the very last line, one JSON object with every figure.

Two models with seeded random weights (latency does not depend on training): an ETTh1-sized
sensor net (2-layer LSTM, hidden 64, input (96, 1, 7), horizon 24) and the synthetic ConvLSTM of
conf/model/conv_lstm.yaml (input (12, 1, 32, 32), horizon 6). Each is logged, registered and
served as `models:/<name>@champion` on 127.0.0.1 twice in the same run: by `mlflow models serve
--env-manager local` (the reference) and by `python -m forecast.serving.server` (MLflow's app behind
our byte cap and message cleanup, with a fast path for good plain-JSON forecast requests). Both
load the same pyfunc, which runs a traced, frozen graph of the net (forecast.serving.runner), with
the same intra-op thread count (--threads). Single-sample requests over keep-alive HTTP, 1 client
and 16 concurrent clients; ratios are against `mlflow models serve` and against MLflow's three
stages (JSON parse, predict, JSON encode) run in this process without HTTP. Last, 10,000 requests
from 16 clients with malformed ones interleaved (every 4th, one of them over the byte cap) against
our server for the sensor model: count of 5xx answers, whether it is still up, and the resident
memory of the server's processes (/proc VmRSS of its process group) before and after.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from torch import nn

from forecast.data.normalize import Normalizer
from forecast.data.spec import DataSpec
from forecast.serving.packaging import log_forecast_model
from forecast.serving.pyfunc import model_metadata
from forecast.serving.server import free_port, start_server, stop_server, wait_ready
from forecast.tracking.registry import client_for, register

SENSOR = {
    "target": "forecast.models.sequence.SequenceForecaster",
    "kwargs": {
        "in_channels": 7, "horizon": 24, "n_sensors": 1, "residual": True,
        "backbone": {"_target_": "forecast.models.recurrent.StackedRecurrent", "_partial_": True,
                     "hidden_size": 64, "num_layers": 2, "cell": "lstm"},
        "head": {"_target_": "forecast.models.heads.DirectHead", "_partial_": True},
    },
    "spec": DataSpec(7, 7, 96, 24, n_sensors=1, variables=tuple(f"v{i}" for i in range(7))),
}  # fmt: skip
GRID = {
    "target": "forecast.models.conv_lstm.ConvLSTMForecaster",
    "kwargs": {"in_channels": 1, "horizon": 6, "hidden_channels": [32, 32], "kernel_size": 3,
               "patch": 2, "residual": True},
    "spec": DataSpec(1, 1, 12, 6, grid=(32, 32), variables=("field",)),
}  # fmt: skip


SERVERS = ("mlflow", "forecast")  # reference first: `mlflow models serve`, then our guarded app


def build(entry: dict[str, Any]) -> nn.Module:
    """The benchmark net with seeded weights."""
    from forecast.serving.pyfunc import build_net

    torch.manual_seed(0)
    return build_net(entry["target"], entry["kwargs"]).eval()


def publish(uri: str, name: str, entry: dict[str, Any]) -> np.ndarray:
    """Log, register and alias one model as champion; return a raw single-sample input."""
    client = client_for(uri)
    # artifacts beside the sqlite store: without a location MLflow puts them in ./mlruns
    art = Path(uri.removeprefix("sqlite:///")).parent / "artifacts" / name
    run = client.create_run(client.create_experiment(name, artifact_location=art.as_uri()))
    spec: DataSpec = entry["spec"]
    meta = model_metadata(spec)
    c = len(spec.variables)
    norm = Normalizer(spec.variables, tuple([10.0] * c), tuple([2.0] * c))
    rng = np.random.default_rng(0)
    x = (10 + 2 * rng.standard_normal((1, *meta["sample_shape"]))).astype(np.float32)
    net = build(entry)
    _, model_id = log_forecast_model(
        uri, run.info.run_id, net, entry["target"], entry["kwargs"], norm, meta, x
    )
    client.set_terminated(run.info.run_id)
    mv = register(client, name, model_id, run.info.run_id)
    client.set_registered_model_alias(name, "champion", mv.version)
    return x


class Client:
    """One keep-alive HTTP connection posting JSON bodies; returns (status, seconds)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def ping(self) -> float:
        """Seconds for one ``GET /ping`` (the server's floor: no parsing, no model)."""
        t0 = time.perf_counter()
        self.conn.request("GET", "/ping")
        self.conn.getresponse().read()
        return time.perf_counter() - t0

    def post(self, body: bytes) -> tuple[int, float]:
        """Send one request, read the whole answer."""
        t0 = time.perf_counter()
        self.conn.request(
            "POST", "/invocations", body=body, headers={"Content-Type": "application/json"}
        )
        r = self.conn.getresponse()
        r.read()
        return r.status, time.perf_counter() - t0


def clients_run(
    port: int, bodies: Callable[[int, int], bytes], n_clients: int, per_client: int
) -> tuple[list[float], Counter[int], float]:
    """``n_clients`` threads each posting ``per_client`` bodies; latencies, statuses, wall time."""
    lat: list[float] = []
    status: Counter[int] = Counter()
    lock = threading.Lock()

    def work(k: int) -> None:
        c = Client(port)
        mine, codes = [], Counter()
        for i in range(per_client):
            try:
                s, dt = c.post(bodies(k, i))
            except (OSError, http.client.HTTPException):
                s, dt = 599, 0.0  # connection-level failure counts as a server error
                c = Client(port)
            codes[s] += 1
            if s == 200:
                mine.append(dt)
        with lock:
            lat.extend(mine)
            status.update(codes)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, status, time.perf_counter() - t0


def pct(xs: list[float], q: float) -> float:
    """The q-th percentile in milliseconds."""
    return float(np.percentile(np.asarray(xs) * 1e3, q)) if xs else float("nan")


def in_process_ms(uri: str, name: str, x: np.ndarray, n: int) -> dict[str, float]:
    """Median ms of the scoring servers' stages run in this process (no HTTP).

    ``parse``: JSON body -> array checked against the signature (MLflow's own parser);
    ``predict``: the loaded pyfunc's predict (validation, normalisation, net); ``encode``: the
    answer to JSON (MLflow's own encoder). ``fast_parse`` / ``fast_encode``: the same two steps
    in our server's fast path (:mod:`forecast.serving.fast_path`). ``total`` is MLflow's path,
    ``fast_total`` ours.
    """
    from io import StringIO

    from mlflow.pyfunc.scoring_server import _parse_json_data, predictions_to_json

    from forecast.serving.fast_path import encode_predictions, parse_request
    from forecast.tracking.registry import load_version

    model = load_version(uri, name, "champion")
    body = json.dumps({"inputs": x.tolist()})
    schema = model.metadata.get_input_schema()
    y = model.predict(x)
    stages: dict[str, Callable[[], Any]] = {
        "parse": lambda: _parse_json_data(body, model.metadata, schema),
        "predict": lambda: model.predict(x),
        "encode": lambda: predictions_to_json(y, StringIO()),
        "fast_parse": lambda: parse_request(body.encode(), x.shape[1:]),
        "fast_encode": lambda: encode_predictions(y),
    }
    out = {}
    for stage, f in stages.items():
        f()
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        out[stage] = statistics.median(ts) * 1e3
    out["total"] = out["parse"] + out["predict"] + out["encode"]
    out["fast_total"] = out["fast_parse"] + out["predict"] + out["fast_encode"]
    return out


def bad_bodies(x: np.ndarray) -> list[bytes]:
    """Malformed requests: broken JSON, wrong context, NaN, strings, oversized."""
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    return [
        b'{"inputs": [[1, 2',
        json.dumps({"inputs": x[:, 1:].tolist()}).encode(),
        json.dumps({"inputs": nan.tolist()}).encode(),
        json.dumps({"inputs": [[["a"]]]}).encode(),
        json.dumps({"inputs": np.repeat(x, 65, axis=0).tolist()}).encode(),
    ]


def group_rss_mb(pgid: int) -> float:
    """Resident memory (MiB) of every process in group ``pgid`` (the server and its workers)."""
    kib = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if int((d / "stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue  # after the command name: state, ppid, pgrp
            status = (d / "status").read_text().splitlines()
            kib += next(int(ln.split()[1]) for ln in status if ln.startswith("VmRSS:"))
        except (OSError, ValueError, IndexError, StopIteration):
            continue  # gone meanwhile, or a kernel thread without RSS
    return kib / 1024


def serve_and_measure(
    server: str, uri: str, key: str, name: str, x: np.ndarray, args: Any, tmp: str
) -> dict[str, Any]:
    """Start one server kind for ``models:/<name>@champion`` and measure it; stop it."""
    body = json.dumps({"inputs": x.tolist()}).encode()
    bad = bad_bodies(x)
    if server == "forecast":  # one body over the byte cap: 413 from our server's guard
        bad.append(json.dumps({"inputs": np.repeat(x, 200, axis=0).tolist()}).encode())

    def good(k: int, i: int) -> bytes:
        return body

    def mixed(k: int, i: int) -> bytes:
        return bad[(k + i) % len(bad)] if i % 4 == 3 else body

    port = free_port()
    proc = start_server(
        f"models:/{name}@champion", port, uri, Path(tmp) / f"{key}-{server}.log",
        threads=args.threads, server=server,
    )  # fmt: skip
    row: dict[str, Any] = {}
    try:
        wait_ready(proc, port, timeout=180)
        clients_run(port, good, 1, 20)  # warm-up
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        row["_answer"] = np.asarray(json.loads(conn.getresponse().read())["predictions"])
        conn.close()
        c = Client(port)
        row["ping_p50_ms"] = statistics.median(c.ping() for _ in range(100)) * 1e3
        for n in (1, 16):
            per = args.requests if n == 1 else max(1, args.requests // 4)
            lat, status, wall = clients_run(port, good, n, per)
            row[f"c{n}"] = {
                "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                "req_per_s": sum(status.values()) / wall,
                "non_200": sum(v for s, v in status.items() if s != 200),
            }  # fmt: skip
        if key == "sensor" and server == "forecast" and args.stress:
            rss_before = group_rss_mb(proc.pid)  # warm: model loaded, latency runs done
            _, status, wall = clients_run(port, mixed, 16, args.stress // 16)
            alive = proc.poll() is None and Client(port).post(body)[0] == 200
            row["stress"] = {
                "requests": sum(status.values()),
                "status": {str(k): v for k, v in sorted(status.items())},
                "n_5xx": sum(v for s, v in status.items() if s >= 500),
                "alive": alive, "req_per_s": sum(status.values()) / wall,
                "rss_mb_before": round(rss_before, 1),
                "rss_mb_after": round(group_rss_mb(proc.pid), 1),
            }  # fmt: skip
    finally:
        stop_server(proc)
    return row


def measure(uri: str, key: str, name: str, entry: dict[str, Any], args: Any, tmp: str) -> dict:
    """Publish one model; serve it with `mlflow models serve` (reference), then with our CLI."""
    x = publish(uri, name, entry)
    ref = in_process_ms(uri, name, x, max(50, args.requests // 4))
    row: dict[str, Any] = {"payload_bytes": len(json.dumps({"inputs": x.tolist()}))}
    row["in_process_ms"] = ref
    for server in SERVERS[::-1] if args.reverse else SERVERS:
        row[server] = serve_and_measure(server, uri, key, name, x, args, tmp)
    answers = [row[server].pop("_answer") for server in SERVERS]
    row["same_answer"] = bool(np.array_equal(*answers))  # both servers, the same numbers
    return row


def main() -> None:
    """Serve both models in turn, measure, print the tables and the final JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=300, help="per latency measurement")
    p.add_argument("--stress", type=int, default=10_000, help="requests in the stress run")
    p.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)),
        help="intra-op threads of both servers (default: usable cores, our server's default)",
    )  # fmt: skip
    p.add_argument("--reverse", action="store_true", help="serve with our CLI first (order check)")
    args = p.parse_args()
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    torch.set_num_threads(args.threads)  # the in-process reference uses the server's threads
    print(f"torch {torch.__version__}, mlflow {mlflow.__version__}, server threads {args.threads}")
    result: dict[str, Any] = {"server_threads": args.threads, "reverse": args.reverse}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        for key, name, entry in (("sensor", "bench-sensor", SENSOR), ("grid", "bench-grid", GRID)):
            result[key] = measure(uri, key, name, entry, args, tmp)

    print(f"\n{'model':8s} {'server':9s} {'clients':>7s} {'p50 ms':>8s} {'p99 ms':>8s} "
          f"{'req/s':>8s} {'p50 / mlflow':>12s} {'req/s / mlflow':>14s} "
          f"{'p50 / in-proc':>13s}")  # fmt: skip
    for key in ("sensor", "grid"):
        r = result[key]
        ref = r["in_process_ms"]
        for server in SERVERS:
            for n in (1, 16):
                c, m = r[server][f"c{n}"], r["mlflow"][f"c{n}"]
                print(f"{key:8s} {server:9s} {n:7d} {c['p50_ms']:8.1f} {c['p99_ms']:8.1f} "
                      f"{c['req_per_s']:8.1f} {c['p50_ms'] / m['p50_ms']:12.2f} "
                      f"{c['req_per_s'] / m['req_per_s']:14.2f} "
                      f"{c['p50_ms'] / ref['total']:13.2f}")  # fmt: skip
        print(f"{key:8s} in-process reference (median ms): parse JSON {ref['parse']:.2f} + "
              f"predict {ref['predict']:.2f} + encode JSON {ref['encode']:.2f} = "
              f"{ref['total']:.2f}; fast path: parse {ref['fast_parse']:.2f} + predict + "
              f"encode {ref['fast_encode']:.2f} = {ref['fast_total']:.2f}; "
              f"request body {r['payload_bytes']} bytes; GET /ping p50 "
              f"mlflow {r['mlflow']['ping_p50_ms']:.2f} ms, forecast "
              f"{r['forecast']['ping_p50_ms']:.2f} ms; same forecast from both servers: "
              f"{r['same_answer']}")  # fmt: skip
    s = result["sensor"]["forecast"].get("stress")
    if s:
        print(f"\nstress (forecast server): {s['requests']} requests from 16 clients, every 4th "
              f"malformed or over the byte cap: status {s['status']}, 5xx {s['n_5xx']}, "
              f"still up: {s['alive']}, {s['req_per_s']:.0f} req/s; server RSS "
              f"{s['rss_mb_before']:.0f} -> {s['rss_mb_after']:.0f} MiB")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
