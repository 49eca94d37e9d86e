import logging
from functools import partial

import pytest
import pytorch_lightning as L
import torch
from pytorch_lightning.callbacks import LearningRateMonitor, RichProgressBar
from torch.utils.data import DataLoader

from forecast.training.callbacks import ProgressLine, lr_monitor, progress_callback
from forecast.training.task import ForecastTask


class LastStep(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.horizon = 2
        self.lin = torch.nn.Linear(3, 6)

    def forward(self, x):
        return self.lin(x[:, -1]).unflatten(1, (2, 3))


def data(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"x": torch.randn(4, 5, 3, generator=g), "y": torch.randn(4, 2, 3, generator=g)}] * n


def fit(task, callbacks, epochs=1, **kw):
    trainer = L.Trainer(
        max_epochs=epochs, logger=False, enable_checkpointing=False, enable_model_summary=False,
        callbacks=callbacks, num_sanity_val_steps=0, **kw,
    )  # fmt: skip
    loader = DataLoader(data(), batch_size=None)
    trainer.fit(task, loader, loader)
    return trainer


def test_plain_progress_line_goes_to_the_logging_logger(caplog):
    torch.manual_seed(0)
    task = ForecastTask(LastStep(), partial(torch.optim.SGD, lr=0.01))
    with caplog.at_level(logging.INFO, logger="forecast.progress"):
        trainer = fit(task, [ProgressLine(every_n_steps=2)])
    lines = [r.getMessage() for r in caplog.records if r.name == "forecast.progress"]
    assert "epoch 0 step 2 train/loss" in lines[0] and "step 4" in lines[1]
    assert "val/rmse" in lines[-1] and len(lines) == 3
    # a ProgressBar subclass: Lightning adds no tqdm bar beside it
    assert trainer.progress_bar_callback is not None
    assert isinstance(trainer.progress_bar_callback, ProgressLine)


def test_progress_callback_picks_by_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert isinstance(progress_callback(10), ProgressLine)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert isinstance(progress_callback(10), RichProgressBar)
    assert type(progress_callback(10, enabled=False)) is L.Callback  # the bar is disabled


def test_lr_monitor_only_with_a_scheduler_and_a_logger():
    assert isinstance(lr_monitor({"_target_": "x"}, {"_target_": "y"}), LearningRateMonitor)
    assert type(lr_monitor(None, {"_target_": "y"})) is L.Callback
    assert type(lr_monitor({"_target_": "x"}, None)) is L.Callback


def test_plateau_scheduler_is_stepped_by_lightning_on_the_monitor():
    torch.manual_seed(0)
    sched = partial(torch.optim.lr_scheduler.ReduceLROnPlateau, factor=0.5, patience=0)
    task = ForecastTask(LastStep(), partial(torch.optim.SGD, lr=0.0), scheduler=sched)
    assert task.automatic_optimization
    trainer = fit(task, [], epochs=3, enable_progress_bar=False)
    config = trainer.lr_scheduler_configs[0]
    assert config.monitor == "val/rmse" and config.interval == "epoch"
    # stepped with val/rmse: lr 0 keeps it constant, so the best seen is the current value
    assert config.scheduler.best == pytest.approx(float(trainer.callback_metrics["val/rmse"]))
    assert config.scheduler.last_epoch == 3


def test_baseline_without_parameters_still_runs():
    class Last(torch.nn.Module):
        horizon = 2

        def forward(self, x):
            return x[:, -1:].expand(-1, 2, -1)

    task = ForecastTask(Last(), partial(torch.optim.SGD, lr=0.0))
    trainer = fit(task, [], enable_progress_bar=False)
    assert "val/rmse" in trainer.callback_metrics
    assert "train/grad_norm" not in trainer.callback_metrics  # nothing to fit
    assert trainer.callback_metrics["val/skill"] == pytest.approx(0.0)  # it *is* persistence
