"""Moving MNIST (Srivastava et al. 2015): digits bouncing in a 64x64 canvas, 10 frames -> 10.

Digits come from a user's MNIST IDX files. With the full set, training sequences use the 60,000
training digits and test sequences the 10,000 test digits; with only the test file (``t10k``),
training uses its first 8,000 digits and testing the last 2,000, so no digit is in both. Training
and validation sequences are generated on the fly, each index from its own seed (unlimited and
deterministic); the test set is generated once from a fixed seed and saved atomically.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytorch_lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from forecast.data.normalize import Normalizer
from forecast.data.sharding import evaluation_sampler
from forecast.data.spec import DataSpec
from forecast.errors import DataError, DataNotFoundError
from forecast.training.threads import one_thread_worker

Item = dict[str, torch.Tensor]


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a uint8 array ``(N, 28, 28)`` or ``(N,)``."""
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic {raw[:4]!r})")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {data.size} bytes; re-download")
    return data.reshape(dims)


def make_sequences(
    digits: np.ndarray,
    rng: np.random.Generator,
    n: int,
    n_frames: int = 20,
    size: int = 64,
    n_digits: int = 2,
) -> np.ndarray:
    """Sequences of ``n_digits`` digits moving at constant speed and bouncing off the walls.

    Args:
        digits: ``(N, h, w)`` uint8 digit images to draw from.
        rng: random generator (positions, directions, digit choice).
        n: number of sequences.
        n_frames: frames per sequence.
        size: canvas side in pixels.
        n_digits: digits per sequence.

    Returns:
        uint8 ``(n, n_frames, size, size)``; overlapping digits combine by maximum.
    """
    h, w = digits.shape[1:]
    lim = np.array([size - h, size - w], dtype=np.float64)
    out = np.zeros((n, n_frames, size, size), dtype=np.uint8)
    for i in range(n):
        for _ in range(n_digits):
            img = digits[rng.integers(len(digits))]
            pos = rng.uniform(0, 1, 2) * lim
            theta = rng.uniform(0, 2 * np.pi)
            vel = np.array([np.sin(theta), np.cos(theta)]) * rng.uniform(2.0, 4.0)
            for t in range(n_frames):
                r, c = np.round(pos).astype(int)
                np.maximum(
                    out[i, t, r : r + h, c : c + w], img, out=out[i, t, r : r + h, c : c + w]
                )
                pos = pos + vel
                for k in range(2):  # reflect at the walls
                    if pos[k] < 0 or pos[k] > lim[k]:
                        vel[k] = -vel[k]
                        pos[k] = np.clip(-pos[k] if pos[k] < 0 else 2 * lim[k] - pos[k], 0, lim[k])
    return out


def _digit_split(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    def find(stem: str) -> Path | None:
        for p in (folder / f"{stem}.gz", folder / stem):
            if p.exists():
                return p
        return None

    test = find("t10k-images-idx3-ubyte")
    if test is None:
        raise DataNotFoundError(
            f"no MNIST test images (t10k-images-idx3-ubyte[.gz]) in '{folder}' (set by config key "
            "'data.path'); download MNIST there"
        )
    test_digits = read_idx(test)
    train = find("train-images-idx3-ubyte")
    if train is not None:
        return read_idx(train), test_digits
    return test_digits[:8000], test_digits[8000:]


class MovingMNISTSequences(Dataset[Item]):
    """Sequences as float windows in [0, 1]: ``x (context, 1, 64, 64)``, ``y (horizon, 1, ..)``.

    Args:
        digits: digit images to draw from (on-the-fly mode).
        n: number of sequences.
        seed: base seed; sequence ``i`` uses ``(seed, i)``.
        context: input frames.
        horizon: target frames.
        frames: a fixed uint8 set ``(n, T, 64, 64)`` instead of generating (the test set).
    """

    def __init__(
        self,
        digits: np.ndarray | None,
        n: int,
        seed: int,
        context: int = 10,
        horizon: int = 10,
        frames: np.ndarray | None = None,
    ) -> None:
        self.digits, self.n, self.seed = digits, n, seed
        self.context, self.horizon, self.frames = context, horizon, frames

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Item:
        if self.frames is not None:
            seq = self.frames[i]
        else:
            assert self.digits is not None
            rng = np.random.default_rng([self.seed, i])
            seq = make_sequences(self.digits, rng, 1, self.context + self.horizon)[0]
        v = torch.from_numpy(seq[: self.context + self.horizon, None].astype(np.float32) / 255.0)
        x, y = v[: self.context], v[self.context :]
        return {
            "x": x,
            "y": y,
            "x_mask": torch.ones_like(x, dtype=torch.bool),
            "y_mask": torch.ones_like(y, dtype=torch.bool),
            "start": torch.tensor(i),
        }


def ensure_test_set(path: Path, digits: np.ndarray, n: int, n_frames: int, seed: int) -> np.ndarray:
    """Generate the test sequences once (fixed seed) and save them atomically; reuse after."""
    key = hashlib.sha256(
        json.dumps([n, n_frames, seed]).encode() + hashlib.sha256(digits.tobytes()).digest()
    ).hexdigest()[:16]
    if path.exists():
        with np.load(path) as f:
            if str(f["key"]) == key:
                return np.asarray(f["frames"])
    frames = make_sequences(digits, np.random.default_rng(seed), n, n_frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    np.savez(tmp, frames=frames, key=np.array(key))
    os.replace(tmp, path)
    return frames


class MovingMNISTDataModule(L.LightningDataModule):
    """Moving MNIST windows ``x: (B, context, 1, 64, 64)`` -> ``y: (B, horizon, 1, 64, 64)``.

    Args:
        path: folder with the MNIST IDX files.
        cache_dir: where the generated test set is saved.
        context: input frames.
        horizon: target frames.
        n_train: training sequences per epoch (generated on the fly).
        n_val: validation sequences (from training digits, their own seed).
        n_test: test sequences (from test digits, generated once and saved).
        batch_size: sequences per batch.
        num_workers: loader worker processes.
        pin_memory: pin host memory.
        seed: base seed of every split.
    """

    def __init__(
        self,
        path: str,
        cache_dir: str,
        context: int = 10,
        horizon: int = 10,
        n_train: int = 10000,
        n_val: int = 1000,
        n_test: int = 2000,
        batch_size: int = 16,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.path, self.cache_dir = Path(path).expanduser(), Path(cache_dir)
        self.context, self.horizon = int(context), int(horizon)
        self.sizes = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.pin_memory, self.seed = bool(pin_memory), int(seed)
        # pixels are already in [0, 1]: the identity scaling keeps serving's contract
        self.normalizer = Normalizer(("pixel",), (0.0,), (1.0,), "minmax")
        self.variables = ["pixel"]
        self.datasets: dict[str, MovingMNISTSequences] = {}

    def describe(self) -> DataSpec:
        """Shapes for building the net."""
        return DataSpec(
            in_channels=1, out_channels=1, context=self.context, horizon=self.horizon,
            grid=(64, 64), variables=("pixel",), targets=("pixel",),
        )  # fmt: skip

    def fingerprint(self) -> str:
        """Data version: the digit files' names and sizes plus the generator settings."""
        files = sorted((p.name, p.stat().st_size) for p in self.path.glob("*idx3-ubyte*"))
        blob = json.dumps([files, self.sizes, self.seed, self.context + self.horizon])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def bounds(self) -> dict[str, tuple[int, int]]:
        """Sequence index ranges per split (splits are separate sequence sets, not times)."""
        return {k: (0, n) for k, n in self.sizes.items()}

    def setup(self, stage: str | None = None) -> None:
        """Read the digits, build the on-the-fly splits and the saved test set."""
        if self.datasets:
            return
        train_digits, test_digits = _digit_split(self.path)
        frames = self.context + self.horizon
        test = ensure_test_set(
            self.cache_dir / "moving_mnist_test.npz", test_digits, self.sizes["test"], frames,
            seed=10_000 + self.seed,
        )  # fmt: skip
        c, h = self.context, self.horizon
        self.datasets = {
            "train": MovingMNISTSequences(train_digits, self.sizes["train"], self.seed, c, h),
            "val": MovingMNISTSequences(train_digits, self.sizes["val"], self.seed + 1, c, h),
            "test": MovingMNISTSequences(None, len(test), 0, c, h, frames=test),
        }

    def _loader(self, split: str) -> DataLoader:
        shuffle = split == "train"
        return DataLoader(
            self.datasets[split], batch_size=self.batch_size, shuffle=shuffle,
            sampler=None if shuffle else evaluation_sampler(self.datasets[split]),
            num_workers=self.num_workers, pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=one_thread_worker if self.num_workers > 0 else None,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
        )  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        """Shuffled training sequences."""
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        """Validation sequences."""
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        """The saved test sequences."""
        return self._loader("test")
