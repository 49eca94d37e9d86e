"""Direct chunk reads from a local Zarr store (v2 and v3), with a bounded cache of decoded chunks.

zarr-python spends about 0.4 ms of bookkeeping per chunk even on an uncompressed store, and a
random window touches two chunks: more than the decoding itself. For the layouts handled here
(a regular chunk grid, C order, no filters, the ``bytes`` codec plus at most one of zstd, gzip
or blosc) a window is cut straight out of chunk files decoded with numcodecs. Anything else
(sharding, ``transpose``, filters, checksums, object or string dtypes, a fill value written as
raw bits) makes :func:`open_chunked` return None and the caller keeps zarr-python's path.

Values are raw, exactly what ``zarr.Array.__getitem__`` returns: CF decoding (``_FillValue``,
``scale_factor``, ``add_offset``) is applied by the caller, as for any other backend array.

Why not a library (issue 12's rule: adopt one that reaches 80% of this module). Measured with
``python -m benchmarks.loader`` on 2 otherwise idle CPU cores (2026-12-01, default threads), every
reader on the same ``GridWindows`` path, windows/s as ratios to ours (random windows /
time-ordered windows; zstd store, then uncompressed store; ours: 558 / 2155 and 1729 / 1518):

- zarr-python 3.1.6, best of its ``async.concurrency`` / ``threading.max_workers`` settings:
  0.40 / 0.11 zstd, 0.22 / 0.25 uncompressed; ``xr.open_zarr`` read lazily 0.40 / 0.12 and
  0.18 / 0.26. Below 80% in every case.
- TensorStore 0.1.86 with a cache pool the size of our cache: 1.04 / 0.82 zstd, 0.77 / 1.40
  uncompressed (xarray-tensorstore 0.81 / 0.66, 0.59 / 0.77). Below 80% for random windows of
  an uncompressed store (the layout that reads fastest for training), and it aborts forked
  DataLoader workers ("fork() use detected"; torch forks them by default on Linux), where this
  module and zarr-python work. An earlier run on a busy machine gave the same picture.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np

_V3_CODECS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "zstd": lambda c: numcodecs.Zstd(level=int(c.get("level", 0))),
    "gzip": lambda c: numcodecs.GZip(level=int(c.get("level", 5))),
    "blosc": lambda c: numcodecs.Blosc(),  # decoding reads cname/shuffle from each frame
}
_V2_CODECS = ("zstd", "gzip", "zlib", "blosc", "lz4", "bz2", "lzma")
_SPECIAL_FILLS = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}


class ChunkCache:
    """Least-recently-used decoded chunks, bounded by their total size in bytes.

    Args:
        max_bytes: the bound; 0 disables caching.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> np.ndarray | None:
        """The cached chunk at ``key`` (now the most recent), or None."""
        chunk = self._items.get(key)
        if chunk is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return chunk

    def put(self, key: tuple[Any, ...], chunk: np.ndarray) -> None:
        """Keep ``chunk`` unless it alone exceeds the bound; evicts the oldest to make room."""
        if chunk.nbytes > self.max_bytes or key in self._items:
            return
        while self.nbytes + chunk.nbytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self.nbytes -= old.nbytes
        self._items[key] = chunk
        self.nbytes += chunk.nbytes

    def clear(self) -> None:
        """Drop every chunk."""
        self._items.clear()
        self.nbytes = 0


def _fill(value: Any, dtype: np.dtype) -> Any | None:
    """The store's fill value as a scalar of ``dtype``; None when its spelling is not handled."""
    if isinstance(value, str):
        if value not in _SPECIAL_FILLS or dtype.kind != "f":
            return None  # e.g. v3 raw bits "0x7fc00000": leave it to zarr-python
        value = _SPECIAL_FILLS[value]
    if value is None or isinstance(value, (list, dict)):
        return None
    return np.array(value).astype(dtype)[()]


class ChunkedArray:
    """Read-only view of one local Zarr array, indexed with a tuple of slices.

    Built by :func:`open_chunked`, which checks that the layout is one this class decodes.

    Args:
        folder: the array's directory.
        shape: array shape.
        chunks: chunk shape (edge chunks are stored padded to it).
        dtype: on-disk dtype, endianness included.
        fill: value of a missing chunk file.
        codec: numcodecs codec of the compressed bytes, or None for raw bytes.
        chunk_name: chunk grid index -> file name relative to ``folder``.
    """

    def __init__(
        self,
        folder: Path,
        shape: tuple[int, ...],
        chunks: tuple[int, ...],
        dtype: np.dtype,
        fill: Any,
        codec: Any,
        chunk_name: Callable[[tuple[int, ...]], str],
    ) -> None:
        self.folder = folder
        self.shape = shape
        self.chunks = chunks
        self.dtype = dtype.newbyteorder("=")  # what a read returns: native byte order
        self.disk_dtype = dtype
        self.fill = fill
        self.codec = codec
        self.chunk_name = chunk_name
        self.chunk_nbytes = math.prod(chunks) * dtype.itemsize
        self.cache = ChunkCache(0)

    def _decode(self, index: tuple[int, ...]) -> np.ndarray | None:
        """The chunk at grid ``index`` as an array of chunk shape; None when its file is absent."""
        path = self.folder / self.chunk_name(index)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        raw = data if self.codec is None else self.codec.decode(data)
        buf = memoryview(raw).cast("B")
        if buf.nbytes != self.chunk_nbytes:
            raise ValueError(
                f"chunk '{path}' decodes to {buf.nbytes} bytes, expected {self.chunk_nbytes} "
                f"({self.chunks} x {self.disk_dtype})"
            )
        return np.frombuffer(buf, dtype=self.disk_dtype).reshape(self.chunks)

    def _chunk(self, index: tuple[int, ...]) -> np.ndarray | None:
        """The chunk at ``index``, from the cache or decoded (and then cached)."""
        key = (id(self), index)
        chunk = self.cache.get(key)
        if chunk is None:
            chunk = self._decode(index)
            if chunk is not None:
                self.cache.put(key, chunk)
        return chunk

    def _read_rows(self, index: tuple[int, ...], rows: slice, target: np.ndarray) -> None:
        """Read chunk rows straight into ``target`` (raw bytes, C-contiguous rows: no decode)."""
        path = self.folder / self.chunk_name(index)
        try:
            f = open(path, "rb", buffering=0)  # closed by the with below
        except FileNotFoundError:
            target[...] = self.fill
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            if size != self.chunk_nbytes:
                raise ValueError(
                    f"chunk '{path}' holds {size} bytes, expected {self.chunk_nbytes} "
                    f"({self.chunks} x {self.disk_dtype})"
                )
            f.seek(rows.start * (self.chunk_nbytes // self.chunks[0]))
            f.readinto(memoryview(target).cast("B"))  # type: ignore[arg-type]

    def _contiguous(self, inner: tuple[slice, ...], shape: tuple[int, ...]) -> bool:
        """Whether the chunk part ``inner`` is whole rows of the chunk and of the output."""
        if self.codec is not None or self.disk_dtype != self.dtype or inner[0].step != 1:
            return False
        return all(
            k.start == 0 and k.stop == c and k.step == 1 and n == c
            for k, c, n in zip(inner[1:], self.chunks[1:], shape[1:], strict=True)
        )

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        """Values at ``key`` (one slice per dim, steps allowed), a fresh native-order array."""
        if len(key) != len(self.shape) or not all(isinstance(k, slice) for k in key):
            raise TypeError(f"expected {len(self.shape)} slices, got {key!r}")
        ranges = [range(*k.indices(n)) for k, n in zip(key, self.shape, strict=True)]
        out = np.empty(tuple(len(r) for r in ranges), dtype=self.dtype)
        if out.size == 0:
            return out
        # per dim: (chunk index, slice inside the chunk, slice of the output) for each chunk hit
        pieces = []
        for r, c in zip(ranges, self.chunks, strict=True):
            hits = []
            for k in range(r[0] // c, r[-1] // c + 1):
                lo, hi = k * c, (k + 1) * c
                # first element of the range at or after the chunk's first index
                first = r.start + max(0, -(-(lo - r.start) // r.step)) * r.step
                if first >= min(hi, r.stop):
                    continue  # a step larger than the chunk jumps over it
                o0 = (first - r.start) // r.step
                n = len(range(first, min(hi, r.stop), r.step))
                hits.append((k, slice(first - lo, first - lo + (n - 1) * r.step + 1, r.step),
                             slice(o0, o0 + n)))  # fmt: skip
            pieces.append(hits)
        for combo in itertools.product(*pieces):
            index = tuple(h[0] for h in combo)
            inner, target = tuple(h[1] for h in combo), tuple(h[2] for h in combo)
            if self._contiguous(inner, out.shape):
                self._read_rows(index, inner[0], out[target])  # only the bytes needed
                continue
            chunk = self._chunk(index)
            if chunk is None:
                out[target] = self.fill  # a chunk never written holds the fill value
            else:
                out[target] = chunk[inner]
        return out


def _v3(folder: Path, meta: dict[str, Any]) -> ChunkedArray | None:
    if meta.get("node_type") != "array" or meta.get("storage_transformers"):
        return None
    grid, keys = meta.get("chunk_grid", {}), meta.get("chunk_key_encoding", {})
    if grid.get("name") != "regular" or not isinstance(meta.get("data_type"), str):
        return None
    try:
        dtype = np.dtype(meta["data_type"])
    except TypeError:
        return None
    codecs = meta.get("codecs", [])
    if not codecs or codecs[0].get("name") != "bytes" or len(codecs) > 2:
        return None  # transpose, sharding or a checksum: zarr-python's path
    endian = codecs[0].get("configuration", {}).get("endian", "little")
    dtype = dtype.newbyteorder("<" if endian == "little" else ">")
    codec = None
    if len(codecs) == 2:
        make = _V3_CODECS.get(codecs[1].get("name", ""))
        if make is None:
            return None
        codec = make(codecs[1].get("configuration", {}))
    default_sep = "/" if keys.get("name") == "default" else "."
    sep = keys.get("configuration", {}).get("separator", default_sep)
    if keys.get("name") == "default":
        name: Callable[[tuple[int, ...]], str] = lambda i: sep.join(["c", *map(str, i)])  # noqa: E731
    elif keys.get("name") == "v2":
        name = lambda i: sep.join(map(str, i)) or "0"  # noqa: E731
    else:
        return None
    chunks = grid.get("configuration", {}).get("chunk_shape")
    return _build(folder, meta, chunks, dtype, codec, name)


def _v2(folder: Path, meta: dict[str, Any]) -> ChunkedArray | None:
    if meta.get("filters") or meta.get("order", "C") != "C":
        return None
    if not isinstance(meta.get("dtype"), str):
        return None  # structured dtypes
    try:
        dtype = np.dtype(meta["dtype"])
    except TypeError:
        return None
    compressor = meta.get("compressor")
    codec = None
    if compressor is not None:
        if compressor.get("id") not in _V2_CODECS:
            return None
        codec = numcodecs.get_codec(dict(compressor))
    sep = meta.get("dimension_separator") or "."
    name: Callable[[tuple[int, ...]], str] = lambda i: sep.join(map(str, i)) or "0"  # noqa: E731
    return _build(folder, meta, meta.get("chunks"), dtype, codec, name)


def _build(
    folder: Path,
    meta: dict[str, Any],
    chunks: Any,
    dtype: np.dtype,
    codec: Any,
    name: Callable[[tuple[int, ...]], str],
) -> ChunkedArray | None:
    if dtype.kind not in "biuf" or not isinstance(chunks, list):
        return None
    fill = _fill(meta.get("fill_value"), dtype)
    shape = tuple(int(n) for n in meta.get("shape", []))
    if fill is None or len(chunks) != len(shape) or not shape or min(chunks) < 1:
        return None
    return ChunkedArray(folder, shape, tuple(int(c) for c in chunks), dtype, fill, codec, name)


def open_chunked(folder: str | Path) -> ChunkedArray | None:
    """A direct reader for the Zarr array in ``folder``, or None when its layout is not handled.

    Args:
        folder: a local array directory holding ``zarr.json`` (v3) or ``.zarray`` (v2).

    Returns:
        The :class:`ChunkedArray`, or None (no metadata here, or a codec, chunk grid, key
        encoding, dtype or fill value this module does not decode).
    """
    folder = Path(folder)
    for fname, parse in (("zarr.json", _v3), (".zarray", _v2)):
        meta_path = folder / fname
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                return None
            if fname == "zarr.json" and meta.get("zarr_format") != 3:
                return None
            return parse(folder, meta)
    return None
