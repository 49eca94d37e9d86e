"""Direct Zarr chunk reads: the same values as xarray and zarr-python, or zarr-python's path."""

from __future__ import annotations

import numcodecs
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
import zarr.codecs

from forecast.data.reader import FrameReader
from forecast.data.sources import StoreSource
from forecast.data.zarr_chunks import ChunkCache, ChunkedArray, open_chunked
from forecast.errors import DataError

CODECS = {
    3: {
        "zstd": [zarr.codecs.ZstdCodec()],
        "none": None,
        "gzip": [zarr.codecs.GzipCodec()],
        "blosc": [zarr.codecs.BloscCodec(cname="lz4", shuffle="bitshuffle")],
    },
    2: {
        "zstd": [numcodecs.Zstd()],
        "none": None,
        "gzip": [numcodecs.GZip()],
        "blosc": [numcodecs.Blosc(cname="zstd", shuffle=numcodecs.Blosc.SHUFFLE)],
    },
}


def _dataset(seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    u = rng.normal(5, 2, (23, 7, 9)).astype("f4")
    u[3, 2, 4] = np.nan
    u[10:12] = np.nan
    packed = rng.normal(280, 10, (23, 7, 9))
    packed[5, 0, 0] = np.nan  # written as the int16 _FillValue
    return xr.Dataset(
        {"u": (("time", "lat", "lon"), u), "air": (("time", "lat", "lon"), packed)},
        coords={"time": pd.date_range("2020-01-01", periods=23, freq="h")},
    )


def _write(tmp_path, fmt: int, codec: str, chunks=(5, 4, 5)):
    path = tmp_path / f"s{fmt}_{codec}.zarr"
    comp = CODECS[fmt][codec]
    enc = {
        "u": {"compressors": comp, "chunks": chunks},
        "air": {
            "compressors": comp,
            "chunks": chunks,
            "dtype": "int16",
            "scale_factor": 0.01,
            "add_offset": 280.0,
            "_FillValue": -32767,
        },
    }
    _dataset().to_zarr(path, zarr_format=fmt, encoding=enc, consolidated=fmt == 2)
    return path


def _random_keys(rng, shape, n):
    for _ in range(n):
        key = []
        for size in shape:
            lo = int(rng.integers(0, size))
            hi = int(rng.integers(lo + 1, size + 1))
            key.append(slice(lo, hi, int(rng.integers(1, 7))))
        yield tuple(key)


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("codec", ["zstd", "none", "gzip", "blosc"])
def test_direct_reads_equal_xarray_isel(tmp_path, fmt, codec):
    path = _write(tmp_path, fmt, codec)
    # a missing chunk file reads as the fill value (masked to NaN by the CF decoding)
    chunk_dir = path / "u" / "c" if fmt == 3 else path / "u"
    missing = chunk_dir / ("1/1/0" if fmt == 3 else "1.1.0")
    missing.unlink()
    (path / "air" / ("c/2/0/1" if fmt == 3 else "2.0.1")).unlink()
    src = StoreSource(str(path))
    want = src.open()
    r = FrameReader(src, ["u", "air"], ("lat", "lon"), memory_budget_mb=1e-4, cache_mb=0.01)
    assert all(isinstance(d.array, ChunkedArray) for d in r._direct)  # the direct path
    rng = np.random.default_rng(fmt)
    for key in _random_keys(rng, (23, 7, 9), 25):
        got = r.read(key[0], key[1:])
        sel = {"time": key[0], "lat": key[1], "lon": key[2]}
        ref = np.stack([want[v].isel(sel).values for v in ("u", "air")], axis=1)
        np.testing.assert_array_equal(got, ref.astype("f4"))
    full = r.read(slice(0, 23))
    assert np.isnan(full[5:10, 0, 4:7, 0:4]).all()  # the deleted chunk
    assert np.isnan(full[10:12, 0]).all() and np.isnan(full[5, 1, 0, 0])
    assert r._cache.hits > 0 and r._cache.nbytes <= r._cache.max_bytes


@pytest.mark.parametrize(("fmt", "keys"), [(2, "."), (2, "/"), (3, "default"), (3, "v2")])
def test_raw_values_equal_zarr_python(tmp_path, fmt, keys):
    """Index math against zarr itself: steps, edge chunks that do not divide, big-endian, keys."""
    path = tmp_path / "raw.zarr"
    rng = np.random.default_rng(7)
    data = rng.integers(-1000, 1000, (13, 11, 6)).astype(">i4" if fmt == 2 else "i4")
    kw = {"compressors": None} if fmt == 2 else {}
    if keys != "default":  # v2-style names "0.1.2" or "0/1/2"
        kw["chunk_key_encoding"] = {"name": "v2", "separator": "." if keys == "v2" else keys}
    arr = zarr.create_array(path, shape=data.shape, chunks=(4, 3, 5), dtype=data.dtype,
                            zarr_format=fmt, fill_value=-7, **kw)  # fmt: skip
    arr[...] = data
    arr[4:8, 3:6, 0:5] = -7  # an all-fill chunk is not written
    name = {".": "0.0.0", "/": "0/0/0", "default": "c/0/0/0", "v2": "0.0.0"}[keys]
    assert (path / name).is_file()
    direct = open_chunked(path)
    assert direct is not None and direct.dtype == np.dtype("i4")
    for key in _random_keys(rng, data.shape, 60):
        np.testing.assert_array_equal(direct[key], arr[key])


def test_cache_is_bounded_lru():
    cache = ChunkCache(max_bytes=3 * 8)
    for i in range(4):
        cache.put(("a", i), np.zeros(2))  # 16 bytes each: one fits beside another
    assert cache.nbytes == 16 and cache.get(("a", 3)) is not None and cache.get(("a", 0)) is None
    cache.put(("big",), np.zeros(4))  # larger than the bound: not kept
    assert cache.get(("big",)) is None and cache.nbytes == 16


def test_sharded_store_falls_back_to_zarr_python(tmp_path):
    path = _write(tmp_path, 3, "zstd")
    ds = _dataset()
    sharded = tmp_path / "sharded.zarr"
    ds[["u"]].to_zarr(
        sharded,
        zarr_format=3,
        consolidated=False,
        encoding={"u": {"chunks": (5, 7, 9), "shards": (10, 7, 9)}},
    )
    assert open_chunked(sharded / "u") is None
    r = FrameReader(StoreSource(str(sharded)), ["u"], ("lat", "lon"), memory_budget_mb=1e-4)
    assert r._direct[0] is not None and not isinstance(r._direct[0].array, ChunkedArray)
    np.testing.assert_array_equal(r.read(slice(3, 17, 2))[:, 0], ds["u"].values[3:17:2])
    assert open_chunked(path / "u") is not None


@pytest.mark.parametrize("damage", [b"\x00garbage" * 3, b""])
def test_corrupt_or_truncated_chunk_is_a_clear_error(tmp_path, damage):
    path = _write(tmp_path, 3, "zstd" if damage else "none")
    (path / "u" / "c" / "1" / "0" / "0").write_bytes(damage)
    r = FrameReader(StoreSource(str(path)), ["u"], ("lat", "lon"), memory_budget_mb=1e-4)
    assert isinstance(r._direct[0].array, ChunkedArray)
    r.read(slice(0, 5))  # chunks before the damaged one still read
    with pytest.raises(DataError, match=r"'u' at time rows 4:9.*corrupt.*re-create"):
        r.read(slice(4, 9))


def test_whole_rows_of_raw_chunks_are_read_in_place(tmp_path, monkeypatch):
    """Uncompressed chunks spanning the grid: only the rows a window needs are read, no decode."""
    path = tmp_path / "rows.zarr"
    enc = {"u": {"compressors": None, "chunks": (5, 7, 9)}}
    _dataset()[["u"]].to_zarr(path, zarr_format=3, consolidated=False, encoding=enc)
    (path / "u" / "c" / "2" / "0" / "0").unlink()
    ref = zarr.open_array(path / "u", mode="r")
    direct = open_chunked(path / "u")
    rows = []
    read_rows = ChunkedArray._read_rows
    monkeypatch.setattr(
        ChunkedArray, "_read_rows", lambda self, i, r, t: rows.append(r) or read_rows(self, i, r, t)
    )
    for lo, hi in [(0, 23), (3, 9), (12, 13), (9, 16), (20, 23)]:
        key = (slice(lo, hi), slice(None), slice(None))
        np.testing.assert_array_equal(direct[key], ref[key])
    assert slice(3, 5, 1) in rows and direct.cache.misses == 0  # nothing went through decode
    (path / "u" / "c" / "1" / "0" / "0").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="holds 100 bytes"):
        direct[(slice(4, 6), slice(None), slice(None))]


def test_scan_leaves_the_cache_to_the_windows(tmp_path):
    path = _write(tmp_path, 3, "zstd")
    r = FrameReader(StoreSource(str(path)), ["u"], ("lat", "lon"), memory_budget_mb=4e-3)
    assert r._cache.max_bytes == int(4e-3 / 8 * 2**20)  # an eighth of the budget by default
    assert not r.in_memory
    r.scan((0, 15), block_mb=1e-4)
    assert r._cache.nbytes == 0 and r._cache.max_bytes == int(4e-3 / 8 * 2**20)
    r.read(slice(0, 3), (slice(0, 2), slice(0, 2)))
    assert r._cache.nbytes > 0


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("codec", ["zstd", "none", "gzip", "blosc"])
def test_direct_reads_equal_tensorstore(tmp_path, fmt, codec):
    """A second, independent decoder (TensorStore, C++) reads the same raw values as ours."""
    ts = pytest.importorskip("tensorstore")
    path = _write(tmp_path, fmt, codec) / "air"  # int16 packed, edge chunks that do not divide
    spec = {"driver": f"zarr{fmt}" if fmt == 3 else "zarr", "kvstore": f"file://{path}/"}
    ref = ts.open(spec, read=True).result()
    direct = open_chunked(path)
    assert direct is not None
    for key in _random_keys(np.random.default_rng(fmt), direct.shape, 20):
        np.testing.assert_array_equal(direct[key], ref[key].read().result())
