"""Config checks that run before any data is read: each failure names the key and what it expects.

Everything here reads only the composed config (and, for the accelerator, this machine). Checks
that need the data (a patch against a store's grid, variables a store lacks) stay with the data
and the net, which raise :class:`~forecast.errors.ForecastError` subclasses themselves.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from forecast.errors import ConfigError

# normalisation kinds forecast.data.normalize.Normalizer knows
NORMALIZATIONS = ("zscore", "minmax")
# keys of a net (or of its nested backbone/encoder/head) that count things: each must be >= 1
# (a head's `hidden` is not one of them: 0 there means "no hidden layer")
SIZE_KEYS = frozenset(
    {"hidden_channels", "hidden_size", "num_layers", "kernel_size", "segment", "patch",
     "frame_channels", "channels", "kernel"}
)  # fmt: skip
DATA_SIZE_KEYS = ("batch_size", "context", "horizon", "stride", "step")
TRAINER_INT_KEYS = ("max_epochs", "min_epochs", "max_steps", "log_every_n_steps")
GPU_ACCELERATORS = ("gpu", "cuda")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _positive_ints(key: str, value: Any) -> None:
    """``value`` (an int or a list of ints) must be >= 1."""
    items = list(value) if isinstance(value, list | tuple | ListConfig) else [value]
    for v in items:
        if not _is_int(v) or v < 1:
            raise ConfigError(
                f"{key}: expected a positive integer (or a list of them), got {value}"
            )


def _walk(node: Any, prefix: str) -> Iterator[tuple[str, str, Any]]:
    """Every ``(full key, last key, value)`` under a config mapping, nested mappings included."""
    if not isinstance(node, DictConfig):
        return
    for k in node:
        if OmegaConf.is_missing(node, k):  # ??? values are reported by Hydra when read
            continue
        v = node[k]
        key = f"{prefix}.{k!s}"
        yield key, str(k), v
        if isinstance(v, DictConfig):
            yield from _walk(v, key)


def check_data(cfg: DictConfig) -> None:
    """Sizes >= 1, a known normalisation, a non-negative worker count."""
    data = cfg.get("data")
    if data is None:
        return
    for k in DATA_SIZE_KEYS:
        if k in data and data[k] is not None:
            _positive_ints(f"data.{k}", data[k])
    if data.get("num_workers") is not None and (
        not _is_int(data.num_workers) or data.num_workers < 0
    ):
        raise ConfigError(f"data.num_workers: expected an integer >= 0, got {data.num_workers}")
    budget = data.get("memory_budget_mb")
    if budget is not None and (not _is_number(budget) or budget <= 0):
        raise ConfigError(f"data.memory_budget_mb: expected a positive number, got {budget}")
    kind = data.get("normalization")
    if kind is not None and kind not in NORMALIZATIONS:
        raise ConfigError(
            f"data.normalization: expected one of {list(NORMALIZATIONS)}, got {kind!r}"
        )


def _declared_grid(data: DictConfig) -> tuple[int, int] | None:
    """The (H, W) the net will see when the config alone fixes it (synthetic sources), else None."""
    if data.get("patch"):
        p = data.patch
        return (int(p), int(p)) if _is_int(p) else (int(p[0]), int(p[1]))
    if data.get("crop"):
        return None  # crop bounds may be coordinates: only the data know the size
    src = data.get("source")
    if not isinstance(src, DictConfig):
        return None
    n_lat, n_lon = src.get("n_lat"), src.get("n_lon")
    if _is_int(n_lat) and _is_int(n_lon):
        return int(n_lat), int(n_lon)
    return None


def check_model(cfg: DictConfig) -> None:
    """Net sizes >= 1, a patch that divides a declared grid, lr > 0, TBPTT on a net it fits."""
    model = cfg.get("model")
    if model is None:
        return
    net = model.get("net")
    bidirectional = None
    for key, name, value in _walk(net, "model.net"):
        if name in SIZE_KEYS and value is not None:
            _positive_ints(key, value)
        if name == "bidirectional" and value is True:
            bidirectional = key
    opt = model.get("optimizer")
    if isinstance(opt, DictConfig) and "lr" in opt:
        # 0 is how parameter-free baselines (persistence, climatology) say "nothing to train"
        if not _is_number(opt.lr) or not 0 <= opt.lr < float("inf"):
            raise ConfigError(
                f"model.optimizer.lr: expected a learning rate > 0 (0 for a baseline with "
                f"nothing to train), got {opt.lr}"
            )
    patch = net.get("patch") if isinstance(net, DictConfig) else None
    grid = _declared_grid(cfg.data) if cfg.get("data") is not None else None
    if isinstance(patch, int) and grid is not None and (grid[0] % patch or grid[1] % patch):
        raise ConfigError(
            f"model.net.patch: {patch} does not divide the {grid[0]}x{grid[1]} grid; "
            "expected a divisor of both sides (or crop/patch the data to fit)"
        )
    k1 = model.get("tbptt_k1")
    if k1 is None:
        return
    if not _is_int(k1) or k1 < 1:
        raise ConfigError(f"model.tbptt_k1: expected a chunk length >= 1 or null, got {k1}")
    k2 = model.get("tbptt_k2")
    if k2 is not None and (not _is_int(k2) or k2 < 1):
        raise ConfigError(f"model.tbptt_k2: expected a step count >= 1 or null, got {k2}")
    if bidirectional:
        raise ConfigError(
            f"model.tbptt_k1: truncated BPTT needs a one-directional net, but {bidirectional} is "
            "true (the backward pass reads the future of every chunk); set it false or "
            "tbptt_k1=null"
        )
    target = net.get("_target_") if isinstance(net, DictConfig) else None
    if target:
        from hydra.utils import get_class

        cls = get_class(str(target))
        if not callable(getattr(cls, "forward_sequence", None)):
            raise ConfigError(
                f"model.tbptt_k1: {cls.__name__} forecasts from its final state (no output at "
                "every step), so there is nothing to truncate; set model.tbptt_k1=null"
            )


def check_trainer(cfg: DictConfig) -> None:
    """Integer epochs and steps, batch limits that are counts or fractions, an existing device."""
    trainer = cfg.get("trainer")
    if trainer is None:
        return
    for k in TRAINER_INT_KEYS:
        v = trainer.get(k)
        if v is not None and not _is_int(v):
            raise ConfigError(f"trainer.{k}: expected an integer, got {v!r}")
    for k in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        v = trainer.get(k)
        ok = v is None or (_is_int(v) and v >= 0) or (_is_number(v) and 0.0 <= v <= 1.0)
        if not ok:
            raise ConfigError(
                f"trainer.{k}: expected a batch count or a fraction in [0, 1], got {v!r}"
            )
    accelerator = str(trainer.get("accelerator", "cpu")).lower()
    if accelerator in GPU_ACCELERATORS:
        import torch

        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        devices = trainer.get("devices", 1)
        want = devices if _is_int(devices) and devices > 0 else 1
        if have < want:
            raise ConfigError(
                f"trainer.accelerator: '{accelerator}' asks for {want} GPU(s), this machine has "
                f"{have}; use trainer=default (CPU) here"
            )
    elif accelerator == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise ConfigError(
                "trainer.accelerator: 'mps' is not available on this machine; use cpu"
            )


def validate(cfg: DictConfig) -> None:
    """Check a composed training config before any data is read.

    Args:
        cfg: the composed ``conf/train.yaml``.

    Raises:
        ConfigError: naming the first bad key and what it expects.
    """
    check_trainer(cfg)
    check_data(cfg)
    check_model(cfg)
