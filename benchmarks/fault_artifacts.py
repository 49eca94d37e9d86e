"""Broken artifacts for the fault suite: a tiny saved pyfunc, then its weights made corrupt or evil.

Shared by ``tests/faults/`` and ``python -m benchmarks.faults``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mlflow
import torch

from forecast.data.normalize import Normalizer
from forecast.data.spec import DataSpec
from forecast.models.conv_lstm import ConvLSTMForecaster
from forecast.serving import model_code
from forecast.serving.pyfunc import model_metadata, save_bundle, signature

TARGET = "forecast.models.conv_lstm.ConvLSTMForecaster"
KWARGS = {"in_channels": 1, "horizon": 2, "hidden_channels": [2], "kernel_size": 3}
MARKER = "forecast-fault-pickle-ran"


class Evil:
    """Unpickling this would create a marker file (it must never run)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (self.path,))


def save_model(directory: Path) -> Path:
    """A loadable pyfunc (ConvLSTM, 1 variable, 4x4 grid) saved at ``directory / 'model'``."""
    torch.manual_seed(0)
    spec = DataSpec(1, 1, 3, 2, grid=(4, 4), variables=("field",))
    meta = model_metadata(spec, max_samples=4)
    norm = Normalizer(("field",), (0.0,), (1.0,))
    files = save_bundle(
        directory / "bundle", ConvLSTMForecaster(**KWARGS), TARGET, KWARGS, norm, meta
    )
    out = directory / "model"
    mlflow.pyfunc.save_model(
        out, python_model=model_code.__file__, artifacts=files,
        signature=signature(meta), pip_requirements=["forecast"],
    )  # fmt: skip
    return out


def weights_of(model_dir: Path) -> Path:
    """The weights file inside a saved pyfunc."""
    return next(model_dir.rglob("weights.pt"))


def corrupt(path: Path) -> Path:
    """Truncate a file to half its bytes (a write cut short)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def crafted(path: Path, marker_dir: Path) -> Path:
    """Overwrite ``path`` with a pickle that would run code (``os.mkdir``) when loaded unsafely."""
    torch.save({"weight": Evil(str(marker_dir / MARKER))}, path)
    return path


def plain_pickle(path: Path) -> Path:
    """A safe pickle of a non-tensor object (a list of strings): not a state dict."""
    torch.save(["not", "tensors"], path)
    return path


def broken_copies(tmp: Path) -> dict[str, tuple[Path, str]]:
    """``name -> (saved model dir with broken weights, words the one-line refusal must use)``."""
    good = save_model(tmp / "good")
    out = {}
    for name, breaker, words in (
        ("truncated weights", corrupt, "corrupt or truncated"),
        ("crafted pickle", lambda p: crafted(p, tmp), "refused to load"),
    ):
        copy = tmp / name.replace(" ", "_")
        shutil.copytree(good, copy)
        breaker(weights_of(copy))
        out[name] = (copy, words)
    return out
