"""The evaluation job: registered models scored on the latest held-out range of the data.

Composition only: the held-out frames come from :func:`forecast.data.offline.held_out`, the
scores from :func:`forecast.runs.backtest.backtest_held_out`, the same backtest promotion decides
on (rolling origins over the held-out range, one per sequence for independent sequences). Every
model of one evaluation is scored on the same origins (room for the longest context), so the
champion and a candidate compare as they would in a promotion. Nothing is registered or promoted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hydra.utils import instantiate
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from omegaconf import DictConfig

from forecast.data.offline import held_out
from forecast.errors import ForecastError
from forecast.runs.backtest import backtest_held_out
from forecast.tracking.mlflow import absolute_tracking_uri, check_reachable
from forecast.tracking.registry import client_for, load_version, resolve


@dataclass(frozen=True)
class Evaluation:
    """One model's scores on the held-out range.

    Args:
        name: registered model name.
        version: the version scored.
        label: what asked for it: the alias (``champion``) or ``version``.
        score: backtest RMSE (each variable in units of its standard deviation; lower is better).
        rmse_per_lead: the same per lead time.
        n_origins: forecast origins scored.
        data_fingerprint: the data version scored on.
        run_id: the version's training run (the scores are logged there), or None.
    """

    name: str
    version: str
    label: str
    score: float
    rmse_per_lead: tuple[float, ...]
    n_origins: int
    data_fingerprint: str
    run_id: str | None

    def line(self) -> str:
        """One line for a person or a log."""
        leads = " ".join(f"{v:.4f}" for v in self.rmse_per_lead)
        return (
            f"{self.name} v{self.version} ({self.label}): backtest {self.score:.5f} on "
            f"{self.n_origins} origins; per lead {leads}; data {self.data_fingerprint}"
        )


def evaluate_versions(
    tracking_uri: str, name: str, refs: dict[str, str], dm: object, n_origins: int
) -> list[Evaluation]:
    """Score registered versions on ``dm``'s held-out range and log the scores on each.

    Args:
        tracking_uri: the tracking/registry store.
        name: registered model name.
        refs: ``{label: version number or alias}``; a version named twice is scored once.
        dm: the data module (its held-out split is read lazily, window by window).
        n_origins: rolling origins over the held-out range.

    Returns:
        One :class:`Evaluation` per distinct version, in the order of ``refs``.
    """
    client = client_for(tracking_uri)
    versions: dict[str, tuple[str, ModelVersion]] = {}
    for label, ref in refs.items():  # every reference is checked before any model is loaded
        mv = resolve(client, name, ref)
        versions.setdefault(str(mv.version), (label, mv))
    models = {v: load_version(tracking_uri, name, v) for v in versions}
    context = max(int(m.unwrap_python_model().metadata["context"]) for m in models.values())
    data = held_out(dm)
    fingerprint = str(getattr(dm, "fingerprint", lambda: "unknown")())
    out = []
    for v, (label, mv) in versions.items():
        result = backtest_held_out(models[v], data, n_origins, context=context)
        e = Evaluation(
            name, v, label, float(result.score), tuple(float(x) for x in result.rmse_per_lead),
            len(result.origins), fingerprint, mv.run_id or None,
        )  # fmt: skip
        _log(client, e)
        out.append(e)
    return out


def _log(client: MlflowClient, e: Evaluation) -> None:
    """The scores as version tags (the latest) and metrics of its run (a history over time)."""
    tags = {
        "evaluation/score": f"{e.score:.6g}",
        "evaluation/origins": str(e.n_origins),
        "evaluation/data_fingerprint": e.data_fingerprint,
    }
    for k, v in tags.items():
        client.set_model_version_tag(e.name, e.version, k, v)
    if e.run_id:
        client.log_metric(e.run_id, "evaluation/backtest", e.score)
        for lead, rmse in enumerate(e.rmse_per_lead, start=1):
            if math.isfinite(rmse):
                client.log_metric(e.run_id, f"evaluation/backtest_lead{lead}", rmse)


def evaluate(cfg: DictConfig) -> list[Evaluation]:
    """The evaluation job: the alias holder (default ``champion``) and ``version``, if given.

    Args:
        cfg: the composed ``conf/evaluate.yaml``.

    Returns:
        The evaluations, alias holder first.
    """
    refs: dict[str, str] = {}
    if cfg.get("alias"):
        refs[str(cfg.alias)] = str(cfg.alias)
    if cfg.get("version") is not None:
        refs["version"] = str(cfg.version)
    if not refs:
        raise ForecastError("nothing to evaluate: set alias (e.g. alias=champion) or version=N")
    uri = absolute_tracking_uri(str(cfg.tracking_uri))
    check_reachable(uri)
    dm = instantiate(cfg.data)
    return evaluate_versions(uri, str(cfg.model_name), refs, dm, int(cfg.registry.n_origins))
