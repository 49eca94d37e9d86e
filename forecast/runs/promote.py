"""Champion promotion: move the ``champion`` alias only when a candidate clearly wins a backtest."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from hydra.utils import instantiate
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel
from omegaconf import DictConfig

from forecast.data.offline import Frames, held_out
from forecast.errors import DataError, ForecastError
from forecast.runs.backtest import backtest_model, rolling_origins
from forecast.tracking.mlflow import absolute_tracking_uri, check_reachable
from forecast.tracking.registry import CHAMPION, alias_version, client_for, load_version, resolve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """The outcome of one promotion check (logged to the candidate's run and version).

    Args:
        promoted: whether the alias now points to the candidate.
        reason: why, in words.
        candidate_version: the candidate's version.
        candidate_score: its backtest score (lower is better; NaN when not evaluated).
        champion_version: the champion's version before the check, or None.
        champion_score: its score on the same origins, or None.
    """

    promoted: bool
    reason: str
    candidate_version: str
    candidate_score: float
    champion_version: str | None = None
    champion_score: float | None = None


# what must match for two models to compete for one alias (served the same requests, same task)
TASK_KEYS = (
    "variables",
    "targets",
    "grid",
    "patch",
    "n_sensors",
    "time_step",
    "context",
    "horizon",
)


def task_differences(candidate: dict[str, Any], champion: dict[str, Any]) -> list[str]:
    """What differs between two models' data/task metadata, in words (empty: comparable).

    Only keys both sides record are compared: a key one side lacks (metadata written by an
    older version, e.g. without ``time_step``) is unknown, not a difference
    (see :func:`unknown_task_keys`).
    """
    return [
        f"{k} {candidate[k]!r} != champion's {champion[k]!r}"
        for k in TASK_KEYS
        if k in candidate and k in champion and candidate[k] != champion[k]
    ]


def unknown_task_keys(candidate: dict[str, Any], champion: dict[str, Any]) -> list[str]:
    """Task keys only one side records, in words: ``"time_step (not in champion's metadata)"``."""
    out = []
    for k in TASK_KEYS:
        if (k in candidate) != (k in champion):
            out.append(f"{k} (not in {'champion' if k in candidate else 'candidate'}'s metadata)")
    return out


def beats(candidate: float, champion: float, margin: float) -> bool:
    """True when ``candidate`` is lower than ``champion`` by more than a relative ``margin``."""
    if margin < 0:
        raise ValueError(f"promotion margin must be >= 0, got {margin}")
    return bool(np.isfinite(candidate)) and candidate < champion * (1.0 - margin)


def promote_version(
    tracking_uri: str,
    name: str,
    version: str,
    values: Frames,
    held_out: tuple[int, int],
    channel_axis: int,
    n_origins: int = 8,
    margin: float = 0.02,
    alias: str = CHAMPION,
    truth: Frames | None = None,
    force: bool = False,
    origins: np.ndarray | None = None,
    step: int = 1,
) -> Decision:
    """Compare version ``version`` with the ``alias`` holder on one backtest; move the alias if won.

    Idempotent: a candidate that already holds the alias is left alone, and the same inputs give
    the same decision.

    Args:
        tracking_uri: tracking/registry store.
        name: registered model name.
        version: candidate version.
        values: raw frames ``(T, ...)``: an array, or lazy frames of a data module
            (:func:`forecast.data.offline.held_out`), of which only the windows are read.
        held_out: the ``(start, stop)`` range the origins are drawn from.
        channel_axis: axis of ``values`` holding the variables.
        n_origins: forecast origins in the backtest.
        margin: relative improvement the candidate needs (0.02 = 2 % lower score).
        alias: the alias to move.
        truth: raw target values when the targets differ from the inputs.
        force: promote over a champion of another data/task or one that cannot be evaluated
            (never over one that scores better).
        origins: the forecast origins (default: ``n_origins`` rolling origins over
            ``held_out``; one per sequence for independent sequences, see ``held_out``).
        step: rows between consecutive steps of a window (the data module's ``step``).

    Returns:
        The :class:`Decision`, also logged as version tags and as the candidate run's metrics.
    """
    client = client_for(tracking_uri)
    version = str(resolve(client, name, version).version)
    current = alias_version(client, name, alias)
    if current is not None and str(current.version) == version:
        return Decision(False, f"version {version} already holds '{alias}'", version, float("nan"))
    candidate = load_version(tracking_uri, name, version)
    meta = candidate.unwrap_python_model().metadata
    horizon = int(meta["horizon"])
    champion = load_version(tracking_uri, name, str(current.version)) if current else None
    contexts = [int(meta["context"])]
    if champion is not None:
        contexts.append(int(champion.unwrap_python_model().metadata["context"]))
    if origins is None:
        origins = rolling_origins(held_out, max(contexts), horizon, n_origins, step)

    def score(model: PyFuncModel) -> float:
        return backtest_model(model, values, origins, horizon, channel_axis, truth, step).score

    cand_score = score(candidate)
    champ_score: float | None = None
    if current is None:
        promoted, reason = True, f"no '{alias}' yet"
    else:
        assert champion is not None
        promoted, reason, champ_score = _contest(
            meta, champion, str(current.version), cand_score, force, margin, len(origins), score
        )
    if promoted:
        client.set_registered_model_alias(name, alias, version)
    decision = Decision(
        promoted, reason, version, cand_score, current.version if current else None, champ_score
    )
    _log_decision(tracking_uri, name, decision)
    return decision


def promote_on_data(
    tracking_uri: str, name: str, version: str, dm: Any, registry: Any, force: bool = False
) -> Decision:
    """:func:`promote_version` on a data module's held-out range, with the registry settings.

    The one place the train job, the cycle and the promote job turn a data module and
    ``conf/registry`` into a backtest (rolling origins, or one per sequence for Moving MNIST).
    """
    data = held_out(dm)  # lazy: the backtest reads only its windows
    return promote_version(
        tracking_uri,
        name,
        version,
        data.values,
        data.bounds,
        data.channel_axis,
        n_origins=int(registry.n_origins),
        margin=float(registry.margin),
        alias=str(registry.alias),
        truth=data.truth,
        force=force,
        origins=data.origins,
        step=data.step,
    )


def _contest(
    meta: dict[str, Any],
    champion: PyFuncModel,
    champ_version: str,
    cand_score: float,
    force: bool,
    margin: float,
    n_origins: int,
    evaluate: Callable[[PyFuncModel], float],
) -> tuple[bool, str, float | None]:
    """``(promoted, reason, champion score)`` of a candidate against a sitting champion."""
    champ_meta = champion.unwrap_python_model().metadata
    diffs = task_differences(meta, champ_meta)
    unknown = unknown_task_keys(meta, champ_meta)
    if unknown:
        log.info("promotion: task keys not compared: %s", "; ".join(unknown))
    override = "; forced (force=true)" if force else "; force=true overrides"
    if diffs and not force:
        return (
            False,
            f"refused: data/task differs from champion v{champ_version}: "
            + ("; ".join(diffs) + override),
            None,
        )
    try:
        champ_score = float(evaluate(champion))
    except (MlflowException, DataError) as e:
        # a champion that cannot defend is not beaten: only an explicit force replaces it
        why = f"champion v{champ_version} cannot be evaluated: {e}{override}"
        return force, ("promoted: " if force else "refused: ") + why, None
    if not np.isfinite(champ_score) and force:
        return True, f"champion v{champ_version} scores {champ_score}{override}", champ_score
    promoted = beats(cand_score, champ_score, margin)
    verb = "beats" if promoted else "does not beat"
    reason = (
        f"candidate {cand_score:.5f} {verb} champion v{champ_version} "
        f"{champ_score:.5f} by margin {margin:.1%} on {n_origins} origins"
    )
    if diffs:
        reason += f" (data/task differs, forced: {'; '.join(diffs)})"
    if unknown:
        reason += f" (not compared: {'; '.join(unknown)})"
    return promoted, reason, champ_score


def _log_decision(tracking_uri: str, name: str, d: Decision) -> None:
    client = client_for(tracking_uri)
    mv = client.get_model_version(name, d.candidate_version)
    tags = {"backtest_score": f"{d.candidate_score:.6g}", "promotion": d.reason}
    for k, v in tags.items():
        client.set_model_version_tag(name, d.candidate_version, k, v)
    if mv.run_id:
        client.log_metric(mv.run_id, "promotion/candidate_backtest", d.candidate_score)
        if d.champion_score is not None:
            client.log_metric(mv.run_id, "promotion/champion_backtest", d.champion_score)
        client.set_tag(mv.run_id, "promotion/decision", "promoted" if d.promoted else "kept")
        client.set_tag(mv.run_id, "promotion/reason", d.reason[:5000])


def promote(cfg: DictConfig) -> Decision:
    """The promotion job: backtest a registered version against the champion on ``cfg.data``.

    Args:
        cfg: the composed ``conf/promote.yaml``.

    Returns:
        The decision.
    """
    uri = absolute_tracking_uri(str(cfg.tracking_uri))
    check_reachable(uri)
    dm = instantiate(cfg.data)
    client = client_for(uri)
    version = cfg.get("version")
    if version is None:
        try:
            versions = client.search_model_versions(f"name='{cfg.model_name}'")
        except MlflowException as e:
            raise ForecastError(f"cannot list versions of '{cfg.model_name}': {e}") from e
        if not versions:
            raise ForecastError(f"registered model '{cfg.model_name}' has no versions in {uri}")
        version = max(int(v.version) for v in versions)
    return promote_on_data(
        uri, str(cfg.model_name), str(version), dm, cfg.registry, bool(cfg.get("force", False))
    )


def as_dict(d: Decision) -> dict[str, Any]:
    """The decision as plain data (for printing or JSON)."""
    return asdict(d)
