"""Shared fixtures: the train config composed once per session, then copied per test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

CONF = Path(__file__).resolve().parents[1] / "conf"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# small synthetic grid: enough windows for every split, seconds to generate
SMALL_DATA = [
    "data.source.n_times=160",
    "data.source.n_lat=16",
    "data.source.n_lon=16",
    "data.batch_size=4",
]


def compose_train(overrides: list[str]) -> DictConfig:
    """Compose ``conf/train.yaml`` with overrides, outside a Hydra app."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.fixture
def compose_cfg() -> object:
    """The :func:`compose_train` function, for tests that compose their own overrides."""
    return compose_train


@pytest.fixture
def train_cfg(tmp_path: Path) -> DictConfig:
    """A fast training config writing everything under ``tmp_path`` with no tracking."""
    cfg = compose_train(["trainer=smoke", "logger=none", *SMALL_DATA])
    with open_dict(cfg):
        cfg.paths.root_dir = str(tmp_path)
        cfg.paths.output_dir = str(tmp_path / "out")
    return cfg


@pytest.fixture
def rng() -> torch.Generator:
    """A seeded torch generator."""
    return torch.Generator().manual_seed(0)
