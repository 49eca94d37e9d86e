"""Timing helpers shared by the cell benchmarks (benchmarks.cells and benchmarks.cells_options).

They live apart so that neither benchmark module imports the other at load time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_step_seconds(
    steps: dict[str, Callable[[], None]], device: torch.device, repeats: int, warmup: int = 2
) -> dict[str, float]:
    """Median wall time of each step over `repeats` rounds after `warmup` rounds.

    Rounds interleave the variants (A B C, A B C, ...) so that load from other processes on a
    shared machine falls on all of them alike instead of on whichever ran during a busy spell.
    """
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def train_step(model: nn.Module, forward: Callable[[], Tensor]) -> Callable[[], None]:
    """Forward, backward and one Adam step; the loss is a mean square of the outputs."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        forward().float().pow(2).mean().backward()
        opt.step()

    return step
