"""A fit resumed from its last checkpoint ends with the uninterrupted fit's weights."""

from __future__ import annotations

import pytorch_lightning as L
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from forecast.training.resume import ShuffleState


class _Line(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(3, 1)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        x = torch.linspace(-1, 1, 48).reshape(16, 3)
        data = TensorDataset(x, x.sum(1, keepdim=True) ** 2)
        return DataLoader(data, batch_size=4, shuffle=True, generator=g)


def _fit(root, epochs, callbacks, ckpt_path=None):
    torch.manual_seed(0)
    model = _Line()
    ckpt = ModelCheckpoint(dirpath=root, save_last=True)
    trainer = L.Trainer(
        max_epochs=epochs, callbacks=[ckpt, *callbacks], logger=False, accelerator="cpu",
        enable_progress_bar=False, enable_model_summary=False, deterministic=True,
    )  # fmt: skip
    trainer.fit(model, ckpt_path=ckpt_path)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_resumed_fit_equals_uninterrupted_only_with_the_shuffle_state(tmp_path):
    whole = _fit(tmp_path / "whole", 3, [ShuffleState()])
    _fit(tmp_path / "cut", 1, [ShuffleState()])
    resumed = _fit(tmp_path / "x", 3, [ShuffleState()], str(tmp_path / "cut" / "last.ckpt"))
    torch.testing.assert_close(resumed, whole, rtol=0, atol=0)
    _fit(tmp_path / "cut2", 1, [])
    naive = _fit(tmp_path / "y", 3, [], str(tmp_path / "cut2" / "last.ckpt"))
    assert not torch.equal(naive, whole)  # a fresh loader repeats epoch 1's order
