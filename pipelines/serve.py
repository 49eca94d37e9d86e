"""Model server: ``python -m pipelines.serve MODEL_URI [--port P --workers N ...] [--debug]``."""

from __future__ import annotations

import argparse
import logging
import os

from forecast.environ import scoped_environ
from pipelines._cli import DEBUG_ENV, guarded

# forecasts run one at a time per worker, on one thread (forecast.serving.torch_thread), so the
# cores are split between workers: grid p50 18.8 ms at 1 thread, 13.4 ms at 2 on 2 cores
THREADS_HELP = "intra-op threads per worker (default: usable cores // workers, at least 1)"


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The server's options; bad values exit 2 with argparse's one-line message."""
    p = argparse.ArgumentParser(
        prog="python -m pipelines.serve",
        description="Serve a registered model (the store is $MLFLOW_TRACKING_URI, default "
        "the project's sqlite file) on 127.0.0.1.",
    )
    p.add_argument("model_uri", help="models:/<name>@<alias> or models:/<name>/<version>")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--max-body-bytes", type=int, default=None, help="request byte cap")
    p.add_argument("--idle-timeout", type=float, default=5.0, help="idle keep-alive seconds")
    p.add_argument("--body-timeout", type=float, default=30.0, help="seconds to send a body")
    p.add_argument("--predict-timeout", type=float, default=30.0, help="seconds per forecast")
    p.add_argument("--debug", action="store_true", help="tracebacks instead of one-line errors")
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = max(1, len(os.sched_getaffinity(0)) // max(1, args.workers))
    for name in ("port", "workers", "threads", "max_body_bytes"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("idle_timeout", "body_timeout", "predict_timeout"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0 seconds, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Check the store and the model, then serve it until SIGTERM/SIGINT."""
    args = parse(argv)
    # 5xx tracebacks go to the server's log, never to the client
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from forecast.serving.server import serve

    with scoped_environ(DEBUG_ENV):
        if args.debug:
            os.environ[DEBUG_ENV] = "1"
        guarded(serve)(
            args.model_uri,
            args.port,
            args.workers,
            args.threads,
            args.max_body_bytes,
            args.idle_timeout,
            args.body_timeout,
            args.predict_timeout,
        )


if __name__ == "__main__":
    main()
