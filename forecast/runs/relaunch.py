"""Refuse, at the start of a multirun, jobs whose Trainer would relaunch the command line.

Lightning's DDP launcher (``strategy=ddp`` with ``start_method=popen``, also what ``auto`` picks
for several devices) starts ranks 1..N-1 by re-running ``sys.argv``. Under ``-m`` that command
line is the whole sweep, so every rank would run its own sweep and ranks would pair up by job
position (or crash when the jobs differ). Processes created by someone else are fine: one
``srun`` task per device under ``hydra/launcher=submitit_slurm`` (Lightning's SLURM environment),
or torchrun around a single job. So a multirun is checked once, before any job starts.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from typing import Any

from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from forecast.errors import ForecastError

# overrides that can change which Trainer a job builds
TRAINER_KEYS = ("trainer", "experiment", "debug")
# strategies whose launcher starts processes inside the job (not by re-running the script)
IN_JOB = ("spawn", "fork", "notebook")
MAX_COMBINATIONS = 64
LAUNCH_KEYS = ("strategy", "devices", "num_nodes", "accelerator")


class RelaunchError(ForecastError):
    """A multirun job would relaunch the command line to start its DDP ranks."""


def relaunched_processes(trainer: Mapping[str, Any]) -> int:
    """How many processes Lightning would start by re-running the script (0 when none).

    Args:
        trainer: a Trainer config (``_target_`` plus constructor arguments), resolved.

    Returns:
        ``devices * num_nodes`` for a script-relaunching strategy with more than one process,
        else 0.
    """
    strategy = trainer.get("strategy") or "auto"
    if isinstance(strategy, Mapping):
        name = str(strategy.get("_target_", ""))
        name += " " + str(strategy.get("start_method") or "popen")
    else:
        name = str(strategy)
    if any(word in name.lower() for word in IN_JOB):
        return 0
    devices = trainer.get("devices", 1)
    if isinstance(devices, list | tuple):
        n = len(devices)
    elif isinstance(devices, int) or str(devices).isdigit():
        n = int(devices)
    else:  # "auto" / -1: every visible device (one on CPU)
        accel = str(trainer.get("accelerator", "auto"))
        n = _visible_gpus() if accel in ("gpu", "cuda", "auto") else 1
    total = max(n, 1) * int(trainer.get("num_nodes", 1) or 1)
    return total if total > 1 else 0


def _visible_gpus() -> int:
    import torch

    return max(torch.cuda.device_count(), 1)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _values(line: str) -> tuple[str, list[str] | None]:
    """Key (with ``+``/``~`` prefix) and the values an override line takes (None: a range)."""
    override = OverridesParser.create().parse_overrides([line])[0]
    key = override.get_key_element()
    if not override.is_sweep_override():
        return key, [override.get_value_element_as_str()]
    try:
        return key, list(override.sweep_string_iterator())
    except Exception:  # noqa: BLE001 - an interval sweep cannot be enumerated
        return key, None


def job_trainers(config: DictConfig, config_name: str) -> list[tuple[str, dict[str, Any]]]:
    """Every distinct Trainer config the sweep's jobs can build, with the overrides choosing it.

    Only overrides of :data:`TRAINER_KEYS` are expanded (from the command line and from
    ``hydra.sweeper.params``); the others are the same in every job or cannot change the trainer.
    """
    base: list[str] = []
    varying: dict[str, list[str]] = {}
    lines = list(config.hydra.overrides.task)
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    lines += [f"{k}={v}" for k, v in params.items()]
    for line in lines:
        key, values = _values(line)
        relevant = key.lstrip("+~").split(".")[0].split("/")[0] in TRAINER_KEYS
        if values is not None and len(values) == 1:
            (varying.setdefault(key, values) if relevant else base.append(f"{key}={values[0]}"))
        elif relevant and values is not None:
            varying[key] = values
    combos = list(itertools.islice(itertools.product(*varying.values()), MAX_COMBINATIONS))
    found = []
    for combo in combos:
        chosen = [f"{k}={v}" for k, v in zip(varying, combo, strict=True)]
        cfg = compose(config_name=config_name, overrides=base + chosen)
        # only what decides the launcher (default_root_dir & co. need the job's Hydra config)
        trainer = {k: _plain(cfg.trainer.get(k)) for k in LAUNCH_KEYS if k in cfg.trainer}
        found.append((" ".join(chosen) or "(defaults)", trainer))
    return found


def refuse_relaunching_jobs(config: DictConfig, config_name: str) -> None:
    """Raise :class:`RelaunchError` when a job of this multirun would relaunch the command line.

    Args:
        config: the multirun's config (with its ``hydra`` node).
        config_name: the app's primary config, to compose each job's trainer.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or "TORCHELASTIC_RUN_ID" in os.environ:
        raise RelaunchError(
            "a multirun under torchrun runs the whole sweep in every process; run torchrun once "
            "per job, or sweep with hydra/launcher=submitit_slurm"
        )
    launcher = str(OmegaConf.select(config, "hydra.launcher._target_") or "")
    slurm = "SlurmLauncher" in launcher
    for chosen, trainer in job_trainers(config, config_name):
        n = relaunched_processes(trainer)
        if not n:
            continue
        devices = trainer.get("devices")
        tasks = OmegaConf.select(config, "hydra.launcher.tasks_per_node")
        if slurm and str(tasks) == str(devices):
            continue  # one srun task per device: Lightning's SLURM environment, no relaunch
        raise RelaunchError(
            f"multirun job '{chosen}' starts {n} DDP processes by re-running this command line, "
            "so every process would run the whole sweep; sweep DDP jobs with "
            f"hydra/launcher=submitit_slurm hydra.launcher.tasks_per_node={devices}, or run one "
            f"job at a time with torchrun --nproc_per_node={devices} -m pipelines.train "
            "trainer=ddp_torchrun"
        )
