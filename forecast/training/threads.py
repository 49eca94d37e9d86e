"""Intra-op threads for training: one OpenMP team sized to the usable cores, one per worker.

Two OpenMP threads on a loaded two-core machine collapse (measured: a SegRNN step 0.12 s at one
thread against 3.3 s at two beside another job), so the count is a setting, defaulting to the
cores this process may run on (its CPU affinity, not the machine's core count).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from forecast.training.gradients import TrainingConfigError


def usable_cores() -> int:
    """Cores in this process's CPU affinity (``os.cpu_count()`` where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads; return the count set.

    Args:
        threads: thread count (>= 1), or None for :func:`usable_cores`.

    Returns:
        The count now in effect.
    """
    n = usable_cores() if threads is None else int(threads)
    if n < 1:
        raise TrainingConfigError(f"trainer.threads: expected >= 1 or null, got {threads}")
    torch.set_num_threads(n)
    return n


def one_thread_worker(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=...)``: each loader worker computes on one thread.

    Workers run beside the training process, which already holds the usable cores. A loader
    with its own ``worker_init_fn`` gets no seeding from Lightning, so numpy's and Python's
    generators are seeded here from torch's per-worker seed (itself derived from the loader's
    generator, so reproducible).
    """
    torch.set_num_threads(1)
    seed = torch.initial_seed()
    random.seed(seed)
    np.random.seed(seed % 2**32)
