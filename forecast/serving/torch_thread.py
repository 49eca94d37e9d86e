"""One thread per process runs every torch op of a served model.

Why: with OpenMP, each thread that runs torch ops keeps its own team of intra-op threads, and
the teams of different threads contend for the same cores. Measured on this project's 2-core CPU
with the benchmark ConvLSTM (two intra-op threads): 10 ms a forecast while one thread ran them
all, 23-26 ms in every thread once a second thread had run forecasts too. A server calls the
model from several threads (MLflow's request pool, the fast path's worker, the loading thread),
so every forward, trace and probe is handed to this one thread. It also runs them one at a time,
which concurrent requests need anyway: parallel forwards would contend the same way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

T = TypeVar("T")
THREAD_PREFIX = "forecast-torch"

_executor: ThreadPoolExecutor | None = None
_guard = threading.Lock()


def _init_thread() -> None:
    # OpenMP team sizes are per thread: give this one the process's setting explicitly
    torch.set_num_threads(torch.get_num_threads())


def _forget_after_fork() -> None:
    # a forked child has no copy of the thread; it starts its own on first use
    global _executor, _guard
    _executor, _guard = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def on_torch_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on the process's torch thread and return its result (or raise its error).

    Grad mode and ``inference_mode`` are thread-local: ``fn`` must set what it needs itself.
    A call from the torch thread itself runs inline (no deadlock on nesting).
    """
    global _executor
    if threading.current_thread().name.startswith(THREAD_PREFIX):
        return fn(*args)
    with _guard:
        if _executor is None:
            _executor = ThreadPoolExecutor(1, THREAD_PREFIX, initializer=_init_thread)
        executor = _executor
    return executor.submit(fn, *args).result()
