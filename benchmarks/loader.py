"""Random-window read throughput of the data layer, against xbatcher, Zarr libraries and numpy.

Run: ``python -m benchmarks.loader [--quick]``. Writes its stores under a temporary folder
(``benchmarks/stores.py``): a Zarr v3 store (time-chunked, whole grid per chunk, zstd: zarr's
default), the same store uncompressed, and a contiguous NetCDF file with the same field. For
each, random windows of ``context + horizon`` steps over the whole grid are read through

- ``GridWindows`` on a lazy ``FrameReader`` (the data layer's per-window path, no dask; a
  local Zarr store is read chunk file by chunk file, see ``forecast/data/zarr_chunks.py``), with
  a memory budget of half the store so it reads lazily, its decoded-chunk cache at the default
  (an eighth of the budget) and, for Zarr, once more with the cache disabled,
- xbatcher's ``BatchGenerator`` on the same store and window shape (store opened lazily without
  dask, and opened with dask chunks as xbatcher's docs do),
- in-memory numpy slicing of the loaded array (the ceiling), and the data layer's own in-memory
  path (what it does when the store fits ``memory_budget_mb``),
- the maintained Zarr readers (``benchmarks/zarr_libraries.py``) on the same ``GridWindows``
  path: zarr-python 3 under several ``async.concurrency`` / ``threading.max_workers`` settings,
  ``xr.open_zarr`` read lazily, TensorStore with and without a cache pool of our cache's size,
  and xarray-tensorstore; each rate is also given as a ratio to ours on the same store,

and the same for windows in time order (what a validation loader reads: neighbours share
chunks, so the cache decodes each chunk once). It checks whether each Zarr reader works in
forked DataLoader workers (torch's default on Linux), and measures what the default ConvLSTM
training step consumes (windows/s on this CPU), and the peak RSS of a fresh process that scans and
streams a NetCDF file and a Zarr store four times larger than its budget
(``benchmarks/loader_rss.py``; ``--rss N`` runs only that part, N times). The last line is one
JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from benchmarks import loader_rss, zarr_libraries
from benchmarks.stores import CONTEXT, HORIZON, write_stores
from benchmarks.zarr_libraries import Timed
from forecast.data.datasets import GridWindows
from forecast.data.normalize import Normalizer
from forecast.data.reader import FrameReader
from forecast.data.sources import StoreSource

ROUNDS = 5
LAZY_BUDGET_MB = 16.0  # half the 31 MB benchmark field: lazy reads, a 2 MB chunk cache


def _best_rates(readers: dict[str, Timed], rounds: int) -> dict:
    """Calls per second of each reader, best over ``rounds``.

    Readers take turns in every round, so a burst of load from other processes cannot favour one.
    """
    best = dict.fromkeys(readers, np.inf)
    for _ in range(rounds):
        for name, (fn, n, before) in readers.items():
            if before is not None:
                before()
                fn(0)  # the first read after a setting change builds the library's threads
            t0 = time.perf_counter()
            for i in range(n):
                fn(i)
            best[name] = min(best[name], (time.perf_counter() - t0) / n)
    return {name: 1.0 / t for name, t in best.items()}


def _ours(
    path: Path | Any,
    starts: np.ndarray,
    budget_mb: float = LAZY_BUDGET_MB,
    cache_mb: float | None = None,
) -> tuple[Callable[[int], object], FrameReader]:
    """GridWindows items of ``path`` (or of a source), and the reader (for its cache counts)."""
    source = StoreSource(str(path)) if isinstance(path, Path) else path
    reader = FrameReader(source, ["field"], ("lat", "lon"), None, budget_mb, cache_mb)
    assert reader.in_memory == (budget_mb > 100)
    windows = GridWindows(reader, starts, CONTEXT, HORIZON, Normalizer(("field",), (0.0,), (1.0,)))
    return (lambda i: windows[i]), reader


def _xbatcher(path: Path, starts: np.ndarray, dask: bool) -> Callable[[int], object]:
    import xbatcher

    if path.suffix == ".zarr":
        ds = xr.open_dataset(path, engine="zarr", consolidated=False, chunks={} if dask else None)
    else:
        ds = xr.open_dataset(path, engine="h5netcdf", chunks={} if dask else None)
    sizes = {"time": CONTEXT + HORIZON, "lat": ds.sizes["lat"], "lon": ds.sizes["lon"]}
    gen = xbatcher.BatchGenerator(ds, input_dims=sizes, input_overlap={"time": sizes["time"] - 1})
    # the generator's window i starts at time i (overlap = length - 1)
    return lambda i: gen[int(starts[i])]["field"].values


def _numpy(path: Path, starts: np.ndarray) -> Callable[[int], object]:
    arr = xr.open_dataset(path, engine="h5netcdf")["field"].values
    length = CONTEXT + HORIZON
    return lambda i: arr[starts[i] : starts[i] + length].copy()


def _train_step_rate(batch: int = 16, steps: int = 3) -> float:
    """Windows/s the default ConvLSTM (conf/model/conv_lstm.yaml sizes) trains at on this CPU."""
    import torch

    from forecast.models.conv_lstm import ConvLSTMForecaster

    torch.manual_seed(0)
    net = ConvLSTMForecaster(in_channels=1, horizon=HORIZON, hidden_channels=[64, 64])
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4)
    x, y = torch.randn(batch, CONTEXT, 1, 32, 32), torch.randn(batch, HORIZON, 1, 32, 32)

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    """Run every measurement and print the table and the JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="fewer windows (a smoke run)")
    p.add_argument("--rss", type=int, metavar="REPEATS", help="only the RSS part, REPEATS times")
    p.add_argument("--fork-child", nargs=2, metavar=("KIND", "PATH"))
    args = p.parse_args()
    if args.fork_child:
        zarr_libraries.fork_child(*args.fork_child)
        return
    if args.rss:
        loader_rss.repeats(args.rss)
        return
    n = 50 if args.quick else 300
    n_times, side = 2000, 64
    rng = np.random.default_rng(0)
    starts = rng.integers(0, n_times - CONTEXT - HORIZON, size=n)
    in_order = np.arange(n) + 100  # consecutive windows, as a validation loader reads them
    mb_per_window = (CONTEXT + HORIZON) * side * side * 4 / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_stores(Path(tmp), n_times, side, side)
        readers = {
            "numpy_inmemory": Timed(_numpy(paths["netcdf"], starts), n),
            "ours_inmemory": Timed(_ours(paths["netcdf"], starts, budget_mb=1024)[0], n),
        }
        caches = {}
        for fmt, path in paths.items():
            fn, caches[f"ours_{fmt}"] = _ours(path, starts)
            readers[f"ours_{fmt}"] = Timed(fn, n)
            if fmt == "zarr":
                readers["ours_zarr_nocache"] = Timed(_ours(path, starts, cache_mb=0)[0], n)
            readers[f"xbatcher_{fmt}"] = Timed(_xbatcher(path, starts, dask=False), n)
            readers[f"xbatcher_dask_{fmt}"] = Timed(
                _xbatcher(path, starts, dask=True), max(10, n // 5)
            )
        for fmt in ("zarr", "zarr_raw"):
            fn, caches[f"inorder_ours_{fmt}"] = _ours(paths[fmt], in_order)
            readers[f"inorder_ours_{fmt}"] = Timed(fn, n)
        readers["inorder_ours_zarr_nocache"] = Timed(
            _ours(paths["zarr"], in_order, cache_mb=0)[0], n
        )
        readers["inorder_xbatcher_zarr"] = Timed(_xbatcher(paths["zarr"], in_order, dask=False), n)
        readers.update(
            zarr_libraries.readers(
                paths,
                {"": starts, "inorder_": in_order},
                n,
                lambda src, s: _ours(src, s)[0],
                LAZY_BUDGET_MB / 8,
            )
        )
        results = _best_rates(readers, ROUNDS)
        fork = {
            k: zarr_libraries.fork_safe(k, paths["zarr"]) for k in ("ours", "zarr", "tensorstore")
        }
        hit_rates = {
            k: r._cache.hits / max(1, r._cache.hits + r._cache.misses) for k, r in caches.items()
        }
        train_rate = _train_step_rate(steps=1 if args.quick else 3)
        stores = loader_rss.big_stores(Path(tmp), 64.0)
        rss = {fmt: loader_rss.rss(path, 64.0, args.quick) for fmt, path in stores.items()}

    ceiling = results["numpy_inmemory"]
    print(f"random {CONTEXT + HORIZON}x{side}x{side} float32 windows ({mb_per_window:.3f} MB), "
          f"{n} reads per reader, best of {ROUNDS} interleaved rounds")  # fmt: skip
    width = max(map(len, results)) + 2
    print(f"{'reader':<{width}}{'windows/s':>12}{'MB/s':>10}{'vs numpy':>10}")
    for name, rate in results.items():
        print(f"{name:<{width}}{rate:>12.0f}{rate * mb_per_window:>10.0f}{rate / ceiling:>10.3f}")
    ratios = {
        f"ours_vs_xbatcher_{fmt}": results[f"ours_{fmt}"] / results[f"xbatcher_{fmt}"]
        for fmt in paths
    }
    ratios.update({
        f"ours_vs_xbatcher_dask_{fmt}": results[f"ours_{fmt}"] / results[f"xbatcher_dask_{fmt}"]
        for fmt in paths
    })  # fmt: skip
    ratios["ours_zarr_nocache_vs_xbatcher_zarr"] = (
        results["ours_zarr_nocache"] / results["xbatcher_zarr"]
    )
    for k in ("inorder_ours_zarr", "inorder_ours_zarr_nocache"):
        ratios[f"{k}_vs_xbatcher"] = results[k] / results["inorder_xbatcher_zarr"]
    ratios["ours_netcdf_vs_train_step"] = results["ours_netcdf"] / train_rate
    ratios["ours_zarr_vs_train_step"] = results["ours_zarr"] / train_rate
    for k, v in ratios.items():
        print(f"{k:<40}{v:>8.1f}x")
    lib_ratios = zarr_libraries.ratios(results, LAZY_BUDGET_MB / 8)
    zarr_libraries.print_ratios(results, lib_ratios)
    for k, v in fork.items():
        print(f"forked DataLoader workers, {k:<12} {'ok' if v['ok'] else 'FAILED: ' + v['error']}")
    for k, v in hit_rates.items():
        print(f"chunk cache hit rate {k:<22}{v:>8.2f}  ({LAZY_BUDGET_MB / 8:.0f} MB cache)")
    print(f"default ConvLSTM train step (batch 16, 32x32): {train_rate:.1f} windows/s")
    for fmt, r in rss.items():
        loader_rss.print_rss(fmt, r)
    print(json.dumps({
        "window_mb": mb_per_window, "windows_per_s": results, "ratios": ratios,
        "library_vs_ours": lib_ratios, "fork_safe": fork,
        "cache_hit_rate": hit_rates, "train_step_windows_per_s": train_rate, "rss": rss,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
