"""Checkpoints carry a sha256: a truncated, bit-flipped or crafted one is skipped in one line."""

from __future__ import annotations

import logging

import pytest
import pytorch_lightning as L
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.fault_artifacts import MARKER, Evil, corrupt
from forecast.errors import ArtifactError
from forecast.training.checkpoints import (
    ChecksumCheckpointIO,
    checkpoint_problem,
    load_checkpoint_file,
    resume_checkpoint,
    sidecar,
)
from pipelines._cli import describe


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self.lin(x), y)

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.lin(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(folder, epochs, ckpt_path=None):
    """A tiny fit writing best.ckpt and last.ckpt through the checksum IO."""
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(16, 2, generator=g), torch.randn(16, 1, generator=g))
    saver = ModelCheckpoint(
        dirpath=folder, filename="best", monitor="val/loss", save_top_k=1, save_last=True
    )
    trainer = L.Trainer(
        max_epochs=epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[saver], plugins=[ChecksumCheckpointIO()], accelerator="cpu",
    )  # fmt: skip
    loader = DataLoader(data, batch_size=8)
    trainer.fit(Tiny(), loader, loader, ckpt_path=ckpt_path)
    return trainer


@pytest.fixture
def written(tmp_path):
    fit(tmp_path, epochs=2)
    return tmp_path


def test_every_checkpoint_is_written_with_its_checksum_and_loads(written):
    for name in ("best.ckpt", "last.ckpt"):
        assert sidecar(written / name).read_text().split()[1] == name
        assert checkpoint_problem(written / name) is None
        assert load_checkpoint_file(written / name)["state_dict"]
    assert sorted(p.name for p in written.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("damage", ["truncated", "one byte flipped"])
def test_a_damaged_checkpoint_is_refused_in_one_line(written, damage):
    path = written / "last.ckpt"
    if damage == "truncated":
        corrupt(path)
    else:  # same length: only the checksum can tell
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as e:
        load_checkpoint_file(path)
    message = describe(e.value)
    assert "does not match last.ckpt.sha256" in message and "\n" not in message


def test_a_crafted_pickle_checkpoint_runs_nothing(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": Evil(str(tmp_path / MARKER))}}, path)  # no sidecar
    problem = checkpoint_problem(path)
    assert problem is not None and "not plain tensors" in problem
    with pytest.raises(ArtifactError, match="not plain tensors"):
        load_checkpoint_file(path)
    assert not (tmp_path / MARKER).exists()


def test_a_checkpoint_without_sidecar_loads_only_when_whole(written):
    path = written / "last.ckpt"
    sidecar(path).unlink()  # as a kill between the checkpoint's rename and its digest's leaves it
    assert checkpoint_problem(path) is None
    corrupt(path)
    assert "does not load" in str(checkpoint_problem(path))


def test_a_resume_skips_a_corrupt_last_checkpoint_for_the_best_one(written, caplog):
    corrupt(written / "last.ckpt")
    with caplog.at_level(logging.WARNING, logger="forecast.training.checkpoints"):
        chosen = resume_checkpoint(written / "last.ckpt")
    assert chosen == str(written / "best.ckpt")
    (line,) = [r.getMessage() for r in caplog.records]
    assert "last.ckpt skipped" in line and "resuming from" in line and "best.ckpt" in line
    trainer = fit(written, epochs=3, ckpt_path=chosen)  # Lightning loads it through the same IO
    assert trainer.current_epoch == 3


def test_no_good_checkpoint_left_means_training_from_scratch(written, caplog):
    # a whole checkpoint without a checksum (a fetched init.ckpt) does not stand in for a resume
    (written / "init.ckpt").write_bytes((written / "last.ckpt").read_bytes())
    corrupt(written / "last.ckpt")
    corrupt(written / "best.ckpt")
    with caplog.at_level(logging.WARNING, logger="forecast.training.checkpoints"):
        assert resume_checkpoint(written / "last.ckpt") is None
    assert "training from scratch" in caplog.records[-1].getMessage()
    assert resume_checkpoint(None) is None


def test_lightning_refuses_a_corrupt_checkpoint_through_the_plugin(written):
    corrupt(written / "best.ckpt")
    with pytest.raises(ArtifactError, match="best.ckpt"):
        fit(written, epochs=3, ckpt_path=str(written / "best.ckpt"))
