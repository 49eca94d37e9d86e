"""Checks a job makes before its heavy imports and before any data is read.

The entry point calls :func:`check_tracking` before it imports torch, Lightning and MLflow (which
take most of a job's start-up), so a tracking server that does not answer is reported in
seconds, not after the imports, and never after MLflow's minutes of retries.
"""

from __future__ import annotations

from omegaconf import DictConfig

from forecast.tracking.mlflow import absolute_tracking_uri, check_reachable


def check_tracking(cfg: DictConfig) -> str | None:
    """The run's tracking URI once an ``http(s)://`` server there answered; None untracked.

    Args:
        cfg: the composed job config (its ``logger.tracking_uri``).

    Raises:
        TrackingUnreachableError: the server did not answer its health check within 5 s.
    """
    if not cfg.get("logger") or not cfg.logger.get("tracking_uri"):
        return None
    uri = absolute_tracking_uri(str(cfg.logger.tracking_uri))
    if uri.startswith(("http://", "https://")):  # a local store is created by the run itself
        check_reachable(uri)
    return uri
