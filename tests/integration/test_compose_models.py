"""Every conf/model/*.yaml composes with its data config, builds, and trains a few steps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as L
import torch
from conftest import CONF, compose_train
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from forecast.runs.build import build_net
from forecast.training.trainer_options import trainer_options

GRID = ["data.source.n_times=160", "data.source.n_lat=16", "data.source.n_lon=16"]
SENSOR_GRID = [
    "data.source.grid.n_times=160",
    "data.source.grid.n_lat=16",
    "data.source.grid.n_lon=16",
    "data.source.n_sensors=4",
]
# the data each model is meant for; a model file missing here fails the coverage test below
DATA = {
    "climatology": ("synthetic_sensors", SENSOR_GRID),  # targets a subset of the inputs
    "conv_lstm": ("synthetic", GRID),
    "persistence": ("synthetic", GRID),
    "seasonal_naive": ("synthetic", GRID),
    "seg_rnn": ("synthetic", GRID),
    "step_rnn": ("synthetic", GRID),
    "step_rnn_sampling": ("synthetic", GRID),
    "sensor_rnn": ("synthetic_sensors", SENSOR_GRID),
    "sensor_cnn_rnn": ("synthetic_sensors", SENSOR_GRID),
    "hybrid": ("synthetic_paired", SENSOR_GRID),
    "channel_independent": ("synthetic_sensors", SENSOR_GRID),
}
SMALL_NETS = {
    "climatology": [],  # no parameters: fitted on the training split by build_net
    "conv_lstm": ["model.net.hidden_channels=[4]"],
    "seg_rnn": ["model.net.hidden_size=8"],
    "step_rnn": ["model.net.hidden_size=8"],
    "step_rnn_sampling": ["model.net.hidden_size=8"],
    "channel_independent": [
        "model.net.net.backbone.hidden_size=8",
        "model.net.net.backbone.num_layers=1",
    ],
}
SENSOR_SMALL = ["model.net.backbone.hidden_size=8", "model.net.backbone.num_layers=1"]


def test_every_model_config_is_covered():
    names = {p.stem for p in (CONF / "model").glob("*.yaml")}
    assert names == set(DATA), f"add the new model configs to DATA: {names ^ set(DATA)}"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")  # one synthetic store shared by every model


@pytest.mark.parametrize("name", sorted(DATA))
def test_model_composes_builds_and_trains(name, root):
    data, data_overrides = DATA[name]
    small = SMALL_NETS.get(name, SENSOR_SMALL if data != "synthetic" else [])
    cfg = compose_train(
        [
            f"model={name}", f"data={data}", "trainer=smoke", "logger=none",
            "context_steps=8", "horizon=4", "data.batch_size=4", *data_overrides, *small,
        ]
    )  # fmt: skip
    with open_dict(cfg):
        cfg.paths.root_dir = str(root)
        cfg.paths.output_dir = str(root / name)
    L.seed_everything(0)
    dm = instantiate(cfg.data)
    spec = dm.describe()
    partial = instantiate(cfg.model.net)
    net, _ = build_net(partial, spec, dm)
    task = instantiate(cfg.model, net=net)
    options = trainer_options(OmegaConf.to_container(cfg.trainer, resolve=True), task)
    trainer = instantiate(
        options, logger=False, enable_checkpointing=False, limit_train_batches=2,
        limit_val_batches=1, limit_test_batches=1, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(task, datamodule=dm)
    assert "val/rmse" in trainer.callback_metrics
    tested = trainer.test(task, datamodule=dm, verbose=False)[0]
    assert torch.isfinite(torch.tensor(tested["test/mse"]))
    assert "test/mse_lead4" not in tested  # per-lead values bypass Lightning's result store
    assert math.isfinite(task.lead_metrics["test/mse_lead4"])
    if any(p.requires_grad for p in net.parameters()):
        assert trainer.global_step > 0
    assert task.finite_weights()


@pytest.mark.parametrize(("trainer", "precision"), [("bf16", "bf16-mixed"), ("gpu", "bf16-mixed")])
def test_trainer_presets_compose_with_trainer_side_clipping(trainer, precision):
    cfg = compose_train([f"trainer={trainer}", "logger=none"])
    assert cfg.trainer.precision == precision
    # automatic optimisation: Lightning clips (precision-aware) for every net but TBPTT's
    assert cfg.trainer.gradient_clip_val == 1.0 and cfg.trainer.gradient_clip_algorithm == "norm"
