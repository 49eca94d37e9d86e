"""The scheduled cycle: new data -> train -> promote -> forecast, one cycle at a time, resumable.

Each step is the run function its own entry point calls (``forecast.runs.train.train``,
``forecast.runs.promote.promote_version``, ``forecast.runs.forecast.forecast``); this module only
decides which step runs next and records it in the state file (:mod:`forecast.runs.cycle_state`)
after each one, so a killed cycle resumes at the step it reached.
"""

from __future__ import annotations

import copy
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
from filelock import FileLock, Timeout
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from forecast.data.protocols import is_series
from forecast.errors import ForecastError
from forecast.runs.cycle_state import CycleState, load_state, save_state
from forecast.runs.forecast import forecast
from forecast.runs.promote import promote_on_data
from forecast.runs.train import train
from forecast.tracking.mlflow import absolute_tracking_uri
from forecast.tracking.registry import alias_version, client_for
from forecast.tracking.store import ensure_store
from forecast.training.checkpoints import SUFFIX, checkpoint_problem

log = logging.getLogger(__name__)

MODES = ("retrain", "finetune")
CYCLE_TAG = "cycle/id"  # on the cycle's training run


class CycleBusyError(ForecastError):
    """Another cycle holds the lock (the scheduler should retry later: exit 75)."""


@dataclass(frozen=True)
class CycleOutcome:
    """What one invocation did.

    Args:
        status: ``no new data``, ``promoted``, ``kept`` or ``not registered``.
        message: one line for the log.
        version: the candidate version of this cycle, if registered.
        champion: the champion version after the cycle.
        forecast: the forecast file written, if any.
    """

    status: str
    message: str
    version: str | None = None
    champion: str | None = None
    forecast: str | None = None


def cycle(cfg: DictConfig) -> CycleOutcome:
    """Run (or resume) one cycle on ``cfg.data``; return at once when the data are unchanged.

    Args:
        cfg: the composed ``conf/cycle.yaml`` (``conf/train.yaml`` plus ``cycle``).

    Returns:
        The :class:`CycleOutcome`.

    Raises:
        CycleBusyError: another cycle holds the lock.
    """
    c = cfg.cycle
    if c.mode not in MODES:
        raise ForecastError(f"cycle.mode must be one of {list(MODES)}, got '{c.mode}'")
    lock = FileLock(str(c.lock_file), timeout=0)
    Path(str(c.lock_file)).parent.mkdir(parents=True, exist_ok=True)
    try:
        lock.acquire()
    except Timeout as e:
        raise CycleBusyError(f"another cycle holds {c.lock_file}; try again later") from e
    try:
        return _run(cfg, Path(str(c.state_file)))
    finally:
        lock.release()


def _run(cfg: DictConfig, state_path: Path) -> CycleOutcome:
    uri = absolute_tracking_uri(str(cfg.logger.tracking_uri))
    ensure_store(uri, _artifact_root(cfg))  # also marks runs of a killed cycle FAILED
    state = load_state(state_path)
    dm = instantiate(cfg.data)
    current = dm.fingerprint()
    if state.step is None:
        if state.fingerprint == current:
            return CycleOutcome("no new data", f"no new data (fingerprint {current})")
        state.step, state.pending, state.attempt = "train", current, state.attempt + 1
        state.run_id = state.candidate = state.decision = None
        state.cycle_id = uuid.uuid4().hex
        save_state(state_path, state)
        log.info("cycle %d: new data (fingerprint %s)", state.attempt, current)
    else:
        log.info("cycle %d: resuming at step '%s'", state.attempt, state.step)
    if state.step == "train":
        if not _adopt(cfg, uri, state):
            _train(cfg, uri, state)
        state.step = "promote"
        save_state(state_path, state)
    if state.step == "promote":
        state.decision = _promote(cfg, uri, dm, state)
        state.step = "forecast"
        save_state(state_path, state)
    champion = alias_version(client_for(uri), str(cfg.model_name), str(cfg.registry.alias))
    series = is_series(dm)  # independent sequences (Moving MNIST) have no latest time to forecast
    written = _forecast(cfg, uri) if champion is not None and series else None
    state.fingerprint, state.step, state.pending = state.pending, None, None
    state.version = state.candidate
    state.forecast = written
    save_state(state_path, state)
    status = _status(state)
    where = f"; forecast {written}" if written else "; no champion, no forecast"
    if not series:
        where = "; independent sequences: no batch forecast"
    return CycleOutcome(
        status,
        f"{status}: {state.decision}{where}",
        state.candidate,
        None if champion is None else str(champion.version),
        written,
    )


def _status(state: CycleState) -> str:
    if state.candidate is None:
        return "not registered"
    return "promoted" if (state.decision or "").startswith("promoted") else "kept"


def _artifact_root(cfg: DictConfig) -> str | None:
    art = cfg.logger.get("artifact_location")
    return Path(str(art)).resolve().as_uri() if art and "://" not in str(art) else art


def _train(cfg: DictConfig, uri: str, state: CycleState) -> None:
    """Train (resuming from the attempt's last checkpoint) and register the candidate."""
    folder = Path(str(cfg.cycle.checkpoint_dir)) / f"attempt-{state.attempt}"
    folder.mkdir(parents=True, exist_ok=True)
    last = folder / "last.ckpt"
    run_cfg = copy.deepcopy(cfg)
    with open_dict(run_cfg):
        run_cfg.callbacks.model_checkpoint.dirpath = str(folder)
        run_cfg.registry.promote = False  # promotion is the cycle's own step
        run_cfg.ckpt_path = str(last) if last.is_file() else None
        tune = cfg.cycle.mode == "finetune"
        run_cfg.init_weights = _init_weights(cfg, uri, folder) if tune else None
        if state.cycle_id and run_cfg.get("logger"):  # how a resume finds its version (_adopt)
            run_cfg.logger.tags = {**(run_cfg.logger.get("tags") or {}), CYCLE_TAG: state.cycle_id}
    if run_cfg.ckpt_path:
        log.info("cycle %d: training resumes from %s", state.attempt, last)
    result = train(run_cfg)
    state.run_id, state.candidate = result.run_id, result.model_version
    if result.run_id is None:
        raise ForecastError("the cycle needs tracking: set logger=mlflow (got no run)")


def _adopt(cfg: DictConfig, uri: str, state: CycleState) -> bool:
    """Take the version this cycle's run registered before a kill stopped the state save.

    A kill between registration and the state file's update would otherwise train again and
    leave the first version registered but never decided on. True when one was adopted.
    """
    if not state.cycle_id:
        return False
    client = client_for(uri)
    experiment = client.get_experiment_by_name(str(cfg.logger.experiment_name))
    if experiment is None:
        return False
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{CYCLE_TAG}` = '{state.cycle_id}'"
    )
    name = str(cfg.model_name)
    for run in runs:
        found = client.search_model_versions(f"run_id = '{run.info.run_id}'")
        versions = [v for v in found if v.name == name]
        if versions:
            state.run_id, state.candidate = run.info.run_id, str(versions[0].version)
            log.info(
                "cycle %d: adopting v%s, registered by run %s before the cycle was stopped",
                state.attempt, state.candidate, state.run_id,
            )  # fmt: skip
            return True
    return False


def _init_weights(cfg: DictConfig, uri: str, folder: Path) -> str | None:
    """The champion's checkpoint, fetched once into the attempt folder; None without a champion."""
    target = folder / "init.ckpt"
    if target.is_file() and checkpoint_problem(target) is None:  # a corrupt copy is fetched again
        return str(target)
    mv = alias_version(client_for(uri), str(cfg.model_name), str(cfg.registry.alias))
    if mv is None or not mv.run_id:
        log.info("no champion yet: fine-tuning starts from scratch")
        return None
    # fetched into a scratch folder beside it, then renamed: a kill mid-download leaves no
    # partial init.ckpt (and the scratch folder of a killed fetch is removed by the next)
    scratch = folder / ".init-download"
    shutil.rmtree(scratch, ignore_errors=True)
    got = mlflow.artifacts.download_artifacts(
        run_id=mv.run_id, artifact_path="checkpoints", tracking_uri=uri, dst_path=str(scratch)
    )
    ckpts = sorted(Path(got).glob("*.ckpt"))
    if not ckpts:
        raise ForecastError(f"champion v{mv.version} (run {mv.run_id}) has no logged checkpoint")
    digest, target_digest = (p.with_name(p.name + SUFFIX) for p in (ckpts[0], target))
    if digest.is_file():  # a kill between the two renames pairs a digest with another file:
        digest.replace(target_digest)  # refused as corrupt above, and fetched again
    else:
        target_digest.unlink(missing_ok=True)
    ckpts[0].replace(target)
    shutil.rmtree(scratch, ignore_errors=True)
    return str(target)


def _promote(cfg: DictConfig, uri: str, dm: object, state: CycleState) -> str:
    """Backtest the candidate against the champion on the latest held-out range."""
    if state.candidate is None:
        tags = client_for(uri).get_run(str(state.run_id)).data.tags
        return f"candidate not registered ({tags.get('registry/skipped', 'see the run')})"
    r = cfg.registry
    d = promote_on_data(
        uri, str(cfg.model_name), state.candidate, dm, r, bool(r.get("force", False))
    )
    verdict = "promoted" if d.promoted else "kept"
    return f"{verdict} v{d.candidate_version}: {d.reason}"


def _forecast(cfg: DictConfig, uri: str) -> str:
    """The champion's forecast for the latest data, written by the forecast job's function."""
    job = OmegaConf.create(
        {
            "tracking_uri": uri,
            "model_name": str(cfg.model_name),
            "alias": str(cfg.registry.alias),
            "output_dir": str(cfg.cycle.output_dir),
            "format": str(cfg.cycle.format),
            "data": OmegaConf.to_container(cfg.data, resolve=True),
        }
    )
    return str(forecast(job))
