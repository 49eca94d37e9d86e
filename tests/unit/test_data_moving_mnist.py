"""Moving MNIST from IDX files: reader, bouncing generator, disjoint digits, saved test set."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from forecast.data.moving_mnist import MovingMNISTDataModule, make_sequences, read_idx
from forecast.errors import DataError, DataNotFoundError

SHARED = Path(
    os.environ.get(
        "FORECAST_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"
    )
)


def _write_idx(path: Path, n: int = 10000) -> np.ndarray:
    """Fake digits: a 20x12 block, value 100 for the first 8,000 images and 200 after."""
    imgs = np.zeros((n, 28, 28), np.uint8)
    imgs[:, 4:24, 8:20] = np.where(np.arange(n) < 8000, 100, 200)[:, None, None]
    header = bytes([0, 0, 8, 3]) + b"".join(int(v).to_bytes(4, "big") for v in imgs.shape)
    path.write_bytes(gzip.compress(header + imgs.tobytes(), compresslevel=1))
    return imgs


def test_read_idx_round_trip_and_bad_magic(tmp_path):
    imgs = _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", n=50)
    np.testing.assert_array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), imgs)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="IDX"):
        read_idx(tmp_path / "bad")


def test_digits_bounce_inside_canvas_and_are_deterministic():
    digits = np.full((3, 28, 28), 255, np.uint8)
    a = make_sequences(digits, np.random.default_rng(0), 4, n_frames=40)
    b = make_sequences(digits, np.random.default_rng(0), 4, n_frames=40)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 40, 64, 64)
    # each frame holds at least one whole digit (28*28 lit pixels): nothing leaves the canvas
    assert ((a > 0).sum(axis=(2, 3)) >= 28 * 28).all()
    assert not np.array_equal(a[:, 0], a[:, 10])  # they move


def test_datamodule_splits_digits_and_saves_test_once(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz")
    cache = tmp_path / "cache"
    dm = MovingMNISTDataModule(str(tmp_path), str(cache), n_train=8, n_val=4, n_test=6)
    dm.setup()
    item = dm.datasets["train"][0]
    assert item["x"].shape == (10, 1, 64, 64) and item["y"].shape == (10, 1, 64, 64)
    assert float(item["x"].max()) <= 1.0 and bool(item["x_mask"].all())
    np.testing.assert_array_equal(dm.datasets["train"][3]["x"], dm.datasets["train"][3]["x"])
    # train sequences draw only the first 8,000 digits, test sequences only the last 2,000
    assert set(np.unique(np.round(item["x"].numpy() * 255))) <= {0, 100}
    assert set(np.unique(dm.datasets["test"].frames)) == {0, 200}
    saved = cache / "moving_mnist_test.npz"
    mtime = saved.stat().st_mtime_ns
    dm2 = MovingMNISTDataModule(str(tmp_path), str(cache), n_train=8, n_val=4, n_test=6)
    dm2.setup()
    assert saved.stat().st_mtime_ns == mtime  # reused, not regenerated
    np.testing.assert_array_equal(dm2.datasets["test"].frames, dm.datasets["test"].frames)
    assert dm.describe().grid == (64, 64)


def test_missing_mnist_folder(tmp_path):
    with pytest.raises(DataNotFoundError, match="data.path"):
        MovingMNISTDataModule(str(tmp_path), str(tmp_path / "c")).setup()


@pytest.mark.skipif(not (SHARED / "mnist").exists(), reason="no ../shared/data/mnist")
def test_real_mnist_t10k_split(tmp_path):
    dm = MovingMNISTDataModule(str(SHARED / "mnist"), str(tmp_path), n_train=2, n_val=2, n_test=3)
    dm.setup()
    assert dm.datasets["train"].digits.shape == (8000, 28, 28)
    assert dm.datasets["test"].frames.shape == (3, 20, 64, 64)
