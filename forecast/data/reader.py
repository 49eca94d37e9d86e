"""Reading windows from an opened store: whole array in memory when it fits a budget, else lazily.

Per-window reads use xarray's plain lazy indexing on the backend array (no dask: dask-backed
per-window reads measured 2-12x slower here). The reader is picklable for loader workers: the open
store is dropped on pickling and reopened once per process, so no file handle crosses a fork.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import xarray as xr

from forecast.data.zarr_chunks import ChunkCache, ChunkedArray
from forecast.errors import DataError


class Source(Protocol):
    """Anything that opens an ``xr.Dataset`` in the project schema (see ``sources.py``)."""

    path: str

    def open(self) -> xr.Dataset:
        """Open the dataset (lazily where the format allows)."""
        ...


@dataclass
class _Direct:
    """Raw on-disk array plus its CF decoding (scale, offset, fill) and the crop offsets."""

    array: Any
    scale: float
    offset: float
    fills: tuple[float, ...]
    bounds: tuple[tuple[int, int], ...]

    @classmethod
    def make(
        cls, backend: Any, name: str, encoding: dict[str, Any], crop: tuple[slice, ...]
    ) -> _Direct | None:
        if backend is None or "_Unsigned" in encoding:  # rarer CF encodings: xarray decodes
            return None
        try:
            array = backend(name)
        except (KeyError, OSError, ValueError):  # not a plain on-disk array: use xarray's path
            return None
        fills = tuple(
            float(np.asarray(encoding[k]).ravel()[0])
            for k in ("_FillValue", "missing_value")
            if k in encoding and encoding[k] is not None
        )
        return cls(
            array,
            float(encoding.get("scale_factor", 1.0)),
            float(encoding.get("add_offset", 0.0)),
            fills,
            tuple((int(s.start), int(s.stop)) for s in crop),
        )

    def read(self, key: tuple[slice, ...]) -> np.ndarray:
        """Decoded float32 values at ``key`` (relative to the crop)."""
        key = key + (slice(None),) * (len(self.bounds) - len(key))
        full = tuple(
            slice(lo + (k.start or 0), lo + (hi - lo if k.stop is None else k.stop), k.step)
            for k, (lo, hi) in zip(key, self.bounds, strict=True)
        )
        raw = np.asarray(self.array[full])
        out = raw.astype(np.float32, copy=False)  # a fresh array already: no second copy
        for fill in self.fills:
            if not np.isnan(fill):
                out[raw == fill] = np.nan  # before scaling: fills compare in the packed type
        if self.scale != 1.0 or self.offset != 0.0:
            out = out * np.float32(self.scale) + np.float32(self.offset)
        return out


@dataclass
class Scan:
    """What one streamed pass over the data learns.

    Attributes:
        missing: missing values per time step and variable, ``(T, C)``, over all space.
        mean, std, vmin, vmax: per-variable statistics over the training rows, NaNs ignored.
        count: finite training values per variable.
    """

    missing: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray
    count: np.ndarray


class FrameReader:
    """Windows ``(T, C, *space)`` of a set of variables sharing dims ``("time", *space_dims)``.

    Args:
        source: opens the schema dataset (reopened per process when reading lazily).
        variables: variables read as channels, in order.
        space_dims: the non-time dims, e.g. ``("lat", "lon")`` or ``("sensor",)``.
        crop: optional index ranges per dim, e.g. ``{"lat": (0, 16)}``; ``time`` too (to put
            two stores on one time axis).
        memory_budget_mb: load the whole array when it is at most this big (float32), else
            read each window on demand.
        cache_mb: bound of the decoded-chunk cache of directly read Zarr stores (lazy reads
            only, per process); None gives an eighth of ``memory_budget_mb``, 0 disables it.
    """

    def __init__(
        self,
        source: Source,
        variables: list[str],
        space_dims: tuple[str, ...],
        crop: dict[str, tuple[int, int]] | None = None,
        memory_budget_mb: float = 1024.0,
        cache_mb: float | None = None,
    ) -> None:
        self.source = source
        self.variables = list(variables)
        self.space_dims = space_dims
        self.crop = {k: (int(v[0]), int(v[1])) for k, v in (crop or {}).items()}
        unknown = sorted(set(self.crop) - {"time", *space_dims})
        if unknown:
            raise DataError(f"{source.path}: crop names {unknown}, not space dims {space_dims}")
        self.memory_budget_mb = float(memory_budget_mb)
        # the cache is part of the budget: overlapping windows then decode a chunk once
        self.cache_mb = self.memory_budget_mb / 8 if cache_mb is None else float(cache_mb)
        self._cache = ChunkCache(0)
        self._pid: int | None = None
        self._vars: list[xr.Variable] = []
        self._direct: list[_Direct | None] = []
        self._array: np.ndarray | None = None
        ds = self._open()
        t = self._crop_slice("time", int(ds.sizes["time"]))
        self.n_times = int(t.stop - t.start)
        spans = [self._crop_slice(d, int(ds.sizes[d])) for d in space_dims]
        self.space_shape = tuple(int(s.stop - s.start) for s in spans)
        self.in_memory = self.nbytes <= self.memory_budget_mb * 2**20
        if self.in_memory:
            self._array = self.read(slice(0, self.n_times))
            self._cache.clear()  # every later read hits the loaded array
            self._cache.max_bytes = 0

    @property
    def nbytes(self) -> int:
        """Size of the whole selection as float32."""
        return 4 * self.n_times * len(self.variables) * int(np.prod(self.space_shape, dtype=int))

    def _crop_slice(self, dim: str, size: int) -> slice:
        lo, hi = self.crop.get(dim, (0, size))
        if not 0 <= lo < hi <= size:
            raise DataError(f"{self.source.path}: crop {dim}=[{lo}, {hi}) outside [0, {size})")
        return slice(lo, hi)

    def _open(self) -> xr.Dataset:
        ds = self.source.open()
        self._vars, self._direct = [], []
        self._cache = ChunkCache(0 if self._array is not None else int(self.cache_mb * 2**20))
        backend = getattr(self.source, "backend", None)
        for v in self.variables:
            var = ds[v].variable.transpose("time", *self.space_dims)
            key = tuple(self._crop_slice(d, int(ds.sizes[d])) for d in ("time", *self.space_dims))
            self._vars.append(var[key] if self.crop else var)
            in_order = tuple(map(str, ds[v].dims)) == ("time", *self.space_dims)
            direct = _Direct.make(backend, v, ds[v].encoding, key) if in_order else None
            if direct is not None and isinstance(direct.array, ChunkedArray):
                direct.array.cache = self._cache  # one bound for all variables
            self._direct.append(direct)
        self._pid = os.getpid()
        return ds

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # reopen in the worker; never share a file handle across processes
        state["_vars"], state["_direct"], state["_pid"] = [], [], None
        state["_cache"] = ChunkCache(0)  # each process fills its own
        return state

    def read(self, rows: slice, space: tuple[slice, ...] = ()) -> np.ndarray:
        """Read time ``rows`` (a slice, possibly strided) and optional space slices.

        Returns:
            float32 array ``(T, C, *space)``; missing values stay NaN.
        """
        key = (rows, *space)
        if self._array is not None:
            return self._array[(key[0], slice(None), *key[1:])]
        if self._pid != os.getpid():
            self._open()
        out = []
        for name, var, direct in zip(self.variables, self._vars, self._direct, strict=True):
            try:
                if direct is not None:
                    out.append(direct.read(key))
                else:
                    out.append(np.asarray(var[key].values, dtype=np.float32))
            except Exception as e:  # codec/IO errors differ per backend; all mean unreadable data
                raise DataError(
                    f"{self.source.path}: cannot read variable '{name}' at time rows "
                    f"{rows.start}:{rows.stop} ({type(e).__name__}: {e}); the store is corrupt "
                    "there (e.g. a damaged Zarr chunk): re-create or re-download it"
                ) from e
        if len(out) == 1 and self._direct[0] is not None:
            return out[0][:, None]  # a fresh array already: a view, not a second copy
        return np.stack(out, axis=1)

    def scan(self, train: tuple[int, int], block_mb: float | None = None) -> Scan:
        """One pass in time blocks: missing counts everywhere, statistics on ``train`` rows.

        Args:
            train: ``(start, stop)`` rows of the training split.
            block_mb: size of a block read at once; defaults to an eighth of the memory budget.

        Returns:
            The :class:`Scan`.
        """
        per_step = max(1, self.nbytes // max(1, self.n_times))
        # a block plus its temporaries (mask, finite values, squares) stays near 2 blocks
        budget = (block_mb or self.memory_budget_mb / 8) * 2**20
        block = max(1, int(budget // per_step))
        if self._array is None and self._pid != os.getpid():
            self._open()
        # one sequential pass reuses no chunk: keep the cache (and its memory) for the windows
        self._cache.clear()
        limit, self._cache.max_bytes = self._cache.max_bytes, 0
        try:
            return self._scan(train, block)
        finally:
            self._cache.max_bytes = limit

    def _scan(self, train: tuple[int, int], block: int) -> Scan:
        c = len(self.variables)
        missing = np.zeros((self.n_times, c), dtype=np.int64)
        count, mean, m2 = np.zeros(c), np.zeros(c), np.zeros(c)
        vmin, vmax = np.full(c, np.inf), np.full(c, -np.inf)
        for b0 in range(0, self.n_times, block):
            b1 = min(self.n_times, b0 + block)
            flat = self.read(slice(b0, b1)).reshape(b1 - b0, c, -1)
            lo, hi = max(b0, train[0]) - b0, min(b1, train[1]) - b0
            for ch in range(c):  # one channel at a time keeps temporaries small
                ok = np.isfinite(flat[:, ch])
                missing[b0:b1, ch] = ok.shape[1] - ok.sum(axis=1)
                if lo >= hi:
                    continue
                vals = flat[lo:hi, ch][ok[lo:hi]]  # finite training values, 1-D copy
                if vals.size == 0:
                    continue
                n_b = float(vals.size)
                vmin[ch] = min(vmin[ch], float(vals.min()))
                vmax[ch] = max(vmax[ch], float(vals.max()))
                mean_b = float(vals.sum(dtype=np.float64)) / n_b
                vals -= np.float32(mean_b)
                m2_b = float(np.square(vals, out=vals).sum(dtype=np.float64))
                # Chan et al.'s pairwise merge keeps the variance exact across blocks
                tot = count[ch] + n_b
                delta = mean_b - mean[ch]
                mean[ch] += delta * n_b / tot
                m2[ch] += m2_b + delta**2 * count[ch] * n_b / tot
                count[ch] = tot
        std = np.sqrt(m2 / np.maximum(count, 1))
        return Scan(missing, mean, std, vmin, vmax, count)
