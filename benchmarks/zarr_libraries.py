"""Maintained Zarr readers on the data layer's window path, and their ratios to ours.

Used by ``benchmarks.loader``, which times them in the same interleaved rounds as ours.

Each library is read through the same ``GridWindows`` on ``FrameReader`` path as ours, so a
ratio compares only the chunk reading: as the reader's raw array (``backend``: zarr-python's
``zarr.Array``, a TensorStore array) or as the dataset xarray indexes lazily (``open``:
``xr.open_zarr`` on zarr-python, ``xarray_tensorstore.open_zarr``). Sources hold plain settings
only, so a reader pickled into a loader worker opens its library there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from forecast.data.datasets import GridWindows
from forecast.data.normalize import Normalizer
from forecast.data.reader import FrameReader
from forecast.data.sources import StoreSource

# zarr-python 3: (async.concurrency, threading.max_workers); (10, None) are its defaults, 2 is
# the chunks a window touches and the cores here, 1 what one loader worker per core would use
ZARR_SETTINGS = ((10, None), (2, 2), (1, 1))
# TensorStore: (cache_pool MB, data_copy_concurrency); None is its default (all cores)
TS_SETTINGS = (("ours", None), ("ours", 1), (0.0, None))


class Timed(NamedTuple):
    """A reader called with 0..n-1; ``before`` (untimed) sets up process-wide settings."""

    fn: Callable[[int], object]
    n: int
    before: Callable[[], None] | None = None


def zarr_threads(max_workers: int | None) -> None:
    """Give zarr-python a thread pool of ``max_workers`` (None: its default).

    zarr builds its pool once per process from ``threading.max_workers``; its own
    ``cleanup_resources`` (what it runs at exit) drops the pool and the loop, so the next read
    builds them anew under the new setting.
    """
    import zarr
    from zarr.core import sync

    if zarr.config.get("threading.max_workers", None) != max_workers:
        sync.cleanup_resources()
        zarr.config.set({"threading.max_workers": max_workers})


@dataclass
class ZarrPythonSource(StoreSource):
    """The store read as a ``zarr.Array`` under ``async.concurrency`` = ``concurrency``."""

    concurrency: int = 10

    def backend(self, name: str) -> Any:
        """zarr-python's array for ``name``, reading under this source's concurrency."""
        import zarr

        return _ZarrArray(zarr.open_array(Path(self.path) / name, mode="r"), self.concurrency)


class _ZarrArray:
    """A ``zarr.Array`` whose reads run under one ``async.concurrency`` setting."""

    def __init__(self, array: Any, concurrency: int) -> None:
        self.array, self.concurrency = array, concurrency

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        import zarr

        with zarr.config.set({"async.concurrency": self.concurrency}):
            return np.asarray(self.array[key])


def _ts_context(cache_mb: float, copy_limit: int | None) -> Any:
    import tensorstore as ts

    spec: dict[str, Any] = {"cache_pool": {"total_bytes_limit": int(cache_mb * 2**20)}}
    if copy_limit is not None:
        spec["data_copy_concurrency"] = {"limit": copy_limit}
    return ts.Context(spec)


@dataclass
class TensorStoreSource(StoreSource):
    """The store read as TensorStore arrays with a ``cache_mb`` cache pool.

    ``recheck_cached_data="open"`` trusts cached chunks after opening, as our chunk cache does.
    """

    cache_mb: float = 0.0
    copy_limit: int | None = None

    def backend(self, name: str) -> Any:
        """TensorStore's array for ``name`` (indexing it with numpy reads synchronously)."""
        import tensorstore as ts

        spec = {
            "driver": "zarr3" if (Path(self.path) / name / "zarr.json").exists() else "zarr",
            "kvstore": {"driver": "file", "path": str(Path(self.path) / name)},
            "recheck_cached_data": "open",
        }
        ctx = _ts_context(self.cache_mb, self.copy_limit)
        return ts.open(spec, read=True, context=ctx).result()


@dataclass
class XarraySource:
    """The store as xarray opens it lazily (no ``backend``: the reader indexes the dataset)."""

    path: str
    library: str = "zarr"  # or "tensorstore": xarray-tensorstore's open_zarr
    cache_mb: float = 0.0
    rename: dict[str, str] = field(default_factory=dict)

    def open(self) -> xr.Dataset:
        """``xr.open_zarr`` without dask, or ``xarray_tensorstore.open_zarr``."""
        if self.library == "zarr":
            return xr.open_zarr(self.path, consolidated=False, chunks=None)
        import xarray_tensorstore

        ctx = _ts_context(self.cache_mb, None)
        return xarray_tensorstore.open_zarr(self.path, context=ctx, consolidated=False)


def sources(path: Path, cache_mb: float) -> dict[str, tuple[Any, int | None]]:
    """Every library source for the store at ``path``, with zarr's thread setting (or None).

    Args:
        path: the benchmark's Zarr store.
        cache_mb: our chunk cache's bound, given to TensorStore's cache pool where it says "ours".
    """
    out: dict[str, tuple[Any, int | None]] = {}
    for conc, workers in ZARR_SETTINGS:
        out[f"zarr_c{conc}_w{workers or 'default'}"] = (
            ZarrPythonSource(str(path), {}, conc),
            workers,
        )
    out["xarray_open_zarr"] = (XarraySource(str(path)), None)
    for cache, copy in TS_SETTINGS:
        mb = cache_mb if cache == "ours" else float(cache)
        name = f"tensorstore_cache{mb:g}mb_copy{copy or 'default'}"
        out[name] = (TensorStoreSource(str(path), {}, mb, copy), None)
    out["xarray_tensorstore"] = (XarraySource(str(path), "tensorstore", cache_mb), None)
    return out


def fork_child(kind: str, path: str) -> None:
    """Read windows in two forked loader workers after the parent read one; print a JSON line."""
    import torch

    source = {
        "ours": StoreSource(path),
        "zarr": ZarrPythonSource(path),
        "tensorstore": TensorStoreSource(path, cache_mb=2.0),
    }[kind]
    reader = FrameReader(source, ["field"], ("lat", "lon"), None, 1e-3)
    windows = GridWindows(reader, np.arange(8) * 7, 12, 6, Normalizer(("field",), (0.0,), (1.0,)))
    windows[0]  # the parent has used the library before the fork
    loader = torch.utils.data.DataLoader(windows, batch_size=2, num_workers=2, timeout=60)
    print(json.dumps({"windows": sum(len(b["x"]) for b in loader)}))


def fork_safe(kind: str, path: Path) -> dict[str, Any]:
    """Whether ``kind``'s reader works in forked DataLoader workers (torch's default on Linux).

    Runs :func:`fork_child` in a fresh process; a library that aborts or hangs there fails.
    """
    cmd = [sys.executable, "-m", "benchmarks.loader", "--fork-child", kind, str(path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": "timed out (workers hung)"}
    if out.returncode == 0:
        return {"ok": True, **json.loads(out.stdout.strip().splitlines()[-1])}
    lines = [x for x in out.stderr.splitlines() if x.strip() and not x.startswith(" ")]
    return {"ok": False, "error": " | ".join(dict.fromkeys(lines[:3]))}


def readers(
    paths: dict[str, Path],
    orders: dict[str, np.ndarray],
    n: int,
    windows: Callable[[Any, np.ndarray], Callable[[int], Any]],
    cache_mb: float,
) -> dict[str, Timed]:
    """Every library reader, per store and window order, checked against ours first.

    Args:
        paths: the benchmark's stores; ``zarr`` (zstd) and ``zarr_raw`` are read.
        orders: window order name prefix ("" or "inorder_") -> window start rows.
        n: reads per timing (a fifth of it for the slower xarray paths).
        windows: (path or source, starts) -> ``GridWindows`` items, as the loader builds ours.
        cache_mb: our chunk cache's bound (TensorStore's cache pool gets the same).
    """
    out = {}
    for fmt in ("zarr", "zarr_raw"):
        for order, starts in orders.items():
            ref = windows(paths[fmt], starts)(0)["x"]
            for lib, (source, workers) in sources(paths[fmt], cache_mb).items():
                zarr_threads(workers)
                fn = windows(source, starts)
                if not np.array_equal(fn(0)["x"], ref):
                    raise AssertionError(f"{lib} reads other values than ours from {fmt}")
                before = (lambda w=workers: zarr_threads(w)) if workers else None
                slow = lib.startswith("xarray")  # several times slower per window: fewer reads
                out[f"{order}{lib}_{fmt}"] = Timed(fn, max(10, n // 5) if slow else n, before)
    zarr_threads(None)
    return out


# case -> (window order prefix, store): zstd is zarr's default codec, raw the fastest layout
CASES = {
    "random_zstd": ("", "zarr"),
    "inorder_zstd": ("inorder_", "zarr"),
    "random_raw": ("", "zarr_raw"),
    "inorder_raw": ("inorder_", "zarr_raw"),
}


def ratios(results: dict[str, float], cache_mb: float) -> dict[str, dict[str, float]]:
    """Per case, each library reader's rate over ours on the same store and window order."""
    libs = sources(Path("."), cache_mb)  # names only: opens nothing
    return {
        case: {lib: results[f"{order}{lib}_{fmt}"] / results[f"{order}ours_{fmt}"] for lib in libs}
        for case, (order, fmt) in CASES.items()
    }


def print_ratios(results: dict[str, float], table: dict[str, dict[str, float]]) -> None:
    """The table of :func:`ratios`, with our own rates on top."""
    print("Zarr libraries on the same GridWindows path: windows/s as a ratio to ours")
    print(f"{'reader':<40}" + "".join(f"{case:>14}" for case in CASES))
    ours = [results[f"{order}ours_{fmt}"] for order, fmt in CASES.values()]
    print(f"{'ours (windows/s)':<40}" + "".join(f"{r:>14.0f}" for r in ours))
    for lib in table["random_zstd"]:
        print(f"{lib:<40}" + "".join(f"{table[case][lib]:>14.2f}" for case in CASES))
