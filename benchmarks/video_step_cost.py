"""What the Moving MNIST presets' training budgets cost on this machine's CPU.

Run: python -m benchmarks.video_step_cost [--presets moving_mnist,moving_mnist_fast] [--steps 3]
Each preset's net (from its composed config) takes ``--steps`` timed training steps (forward,
backward, AdamW) on one batch of its own size after one warm-up step; the median step time gives
sequences a second and the hours its whole budget (epochs x training sequences) would take on the
CPU threads this process has. Random frames stand in for digits: the cost does not depend on
them. The last line is one JSON object ``{"cases": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table

from benchmarks.skill_rows import compose_case


def step_seconds(preset: str, steps: int) -> tuple[float, int, int]:
    """(median seconds a training step, batch size, training sequences of the whole budget)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_case(preset, None, 0, Path(tmp), [])
    torch.manual_seed(0)
    t, h, batch = int(cfg.context_steps), int(cfg.horizon), int(cfg.data.batch_size)
    net = instantiate(cfg.model.net)(in_channels=1, horizon=h)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x, y = torch.rand(batch, t, 1, 64, 64), torch.rand(batch, h, 1, 64, 64)
    times = []
    for _ in range(steps + 1):
        began = time.perf_counter()
        opt.zero_grad()
        (net(x) - y).pow(2).mean().backward()
        opt.step()
        times.append(time.perf_counter() - began)
    budget = int(cfg.trainer.max_epochs) * int(cfg.data.n_train)
    return statistics.median(times[1:]), batch, budget


def main(argv: list[str] | None = None) -> None:
    """Time each preset's step; print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="moving_mnist,moving_mnist_fast")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    table = Table(title=f"Training cost on this CPU ({torch.get_num_threads()} threads)")
    for col in ("preset", "batch", "s / step", "sequences / s", "budget sequences", "hours"):
        table.add_column(col, justify="right")
    cases = []
    for preset in args.presets.split(","):
        seconds, batch, budget = step_seconds(preset, args.steps)
        rate = batch / seconds
        hours = budget / rate / 3600
        table.add_row(preset, str(batch), f"{seconds:.2f}", f"{rate:.2f}", f"{budget:,}",
                      f"{hours:,.1f}")  # fmt: skip
        cases.append({"case": preset, "metric": "step_seconds", "value": seconds,
                      "batch": batch, "budget_sequences": budget, "hours": hours})  # fmt: skip
    Console(width=120).print(table)
    print(json.dumps({"cases": cases}))


if __name__ == "__main__":
    main()
