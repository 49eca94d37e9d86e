"""Peak RSS of a fresh process that scans and streams a store four times larger than its budget.

Run by ``python -m benchmarks.loader`` (and ``--rss N``, only this part, N times); each
measurement is a child process, ``python -m benchmarks.loader_rss PATH BUDGET_MB N``, so no
earlier allocation of the benchmark inflates the peak.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.stores import CONTEXT, HORIZON, write_stores


def child(path: str, budget_mb: float, n: int) -> None:
    """In a fresh process: scan + stream windows lazily; print baseline and peak RSS in MB."""
    import torch

    from forecast.data.datamodule import GridDataModule
    from forecast.data.sources import StoreSource

    def status(key: str) -> float:  # VmHWM is this process's own peak (ru_maxrss survives exec)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024
        raise RuntimeError(f"no {key} in /proc/self/status")

    torch.zeros(1)
    base = status("VmRSS")
    dm = GridDataModule(
        StoreSource(path), ["field"], CONTEXT, HORIZON, memory_budget_mb=budget_mb, batch_size=8
    )
    dm.describe()  # opening the store costs library state (h5py, indexes), not data buffers
    opened = status("VmRSS")
    dm.setup()
    seen = 0
    for batch in dm.train_dataloader():
        seen += len(batch["x"])
        if seen >= n:
            break
    peak = status("VmHWM")
    lazy = not dm.datasets["train"].reader.in_memory
    print(json.dumps({"base_mb": base, "opened_mb": opened, "peak_mb": peak, "lazy": lazy,
                      "windows": seen}))  # fmt: skip


def big_stores(folder: Path, budget_mb: float) -> dict[str, Path]:
    """A 128x128 field four times the budget (as float32), as NetCDF and as Zarr (zstd)."""
    side = 128
    n_times = int(4 * budget_mb * 2**20 / (4 * side * side)) + 1
    return write_stores(folder / "big", n_times, side, side, seed=1, raw=False)


def rss(path: Path, budget_mb: float, quick: bool) -> dict[str, float]:
    """Budget, store size and the child's RSS figures (growth over baseline and after opening)."""
    store_mb = sum(f.stat().st_size for f in [path, *path.rglob("*")] if f.is_file()) / 2**20
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.loader_rss", str(path), str(budget_mb),
         str(200 if quick else 1000)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    r = json.loads(out.stdout.strip().splitlines()[-1])
    growth = {"growth_mb": r["peak_mb"] - r["base_mb"]}
    growth["growth_after_open_mb"] = r["peak_mb"] - r["opened_mb"]
    return {"budget_mb": budget_mb, "store_mb": store_mb, **r, **growth}


def print_rss(fmt: str, rss: dict[str, float]) -> None:
    """One line per store format."""
    print(
        f"streaming a {rss['store_mb']:.0f} MB {fmt} store with a {rss['budget_mb']:.0f} MB budget "
        f"(lazy={rss['lazy']}): RSS {rss['base_mb']:.0f} MB after imports, "
        f"{rss['opened_mb']:.0f} MB with the store open, peak {rss['peak_mb']:.0f} MB: growth "
        f"{rss['growth_mb']:.0f} MB ({rss['growth_after_open_mb']:.0f} MB after opening), "
        f"within budget: {rss['growth_mb'] <= rss['budget_mb']}"
    )


def repeats(n: int, budget_mb: float = 64.0) -> None:
    """Only the RSS part, ``n`` times per store format (is the peak stable?)."""
    with tempfile.TemporaryDirectory() as tmp:
        stores = big_stores(Path(tmp), budget_mb)
        runs = {fmt: [rss(path, budget_mb, False) for _ in range(n)]
                for fmt, path in stores.items()}  # fmt: skip
    for fmt, rs in runs.items():
        for r in rs:
            print_rss(fmt, r)
    print(json.dumps({fmt: [r["growth_mb"] for r in rs] for fmt, rs in runs.items()}))


if __name__ == "__main__":
    child(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))
