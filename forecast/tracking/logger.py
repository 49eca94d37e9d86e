"""The run's MLflow logger: a tracking server that goes away mid-run does not stop training.

:class:`TrackingLogger` is Lightning's ``MLFlowLogger`` whose logging calls, once one fails
(MLflow has already retried it), stop sending and record why in :attr:`TrackingLogger.lost`.
Training then finishes and keeps its checkpoints; the composition root
(:func:`forecast.runs.train.train`) registers and promotes nothing for such a run and fails in one
line. The run is marked FAILED where the server answers again, with one quick attempt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from forecast.environ import scoped_environ
from forecast.errors import ForecastError
from forecast.tracking.mlflow import check_reachable

QUICK = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


class TrackingLostError(ForecastError):
    """The tracking server stopped answering during a run (training itself finished)."""


def tracking_errors() -> tuple[type[BaseException], ...]:
    """What a call to an unreachable store raises (after MLflow's own retries)."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    return (MlflowException, RequestException, OSError)


def quick_requests() -> contextlib.AbstractContextManager[None]:
    """MLflow HTTP calls without retries and with a 5 s timeout (for a best-effort mark)."""
    return scoped_environ(values=QUICK)


def _first(e: BaseException) -> str:
    return " ".join(str(e).strip().split("\n", 1)[0].split())[:200] or type(e).__name__


class TrackingLogger(MLFlowLogger):
    """``MLFlowLogger`` that survives its store going away; see the module docstring.

    Attributes:
        lost: why tracking stopped (the first failed call), or None while it works.
    """

    lost: str | None = None
    reached = False  # a logging call reached the store, so the run exists there

    def _lose(self, e: BaseException) -> None:
        if self.lost is None:
            self.lost = f"{type(e).__name__}: {_first(e)}"

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        """Log parameters unless tracking is lost."""
        if self.lost is None:
            try:
                super().log_hyperparams(params)
                self.reached = True
            except tracking_errors() as e:
                self._lose(e)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics unless tracking is lost."""
        if self.lost is None:
            try:
                super().log_metrics(metrics, step)
                self.reached = True
            except tracking_errors() as e:
                self._lose(e)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Log a checkpoint (``log_model``) unless tracking is lost."""
        if self.lost is None:
            try:
                super().after_save_checkpoint(checkpoint_callback)
            except tracking_errors() as e:
                self._lose(e)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """End the run; once tracking is lost, one quick attempt to mark it FAILED."""
        if self.lost is None:
            try:
                super().finalize(status)
                return
            except tracking_errors() as e:
                self._lose(e)
        self.mark_failed()

    def mark_failed(self) -> bool:
        """Tag the run with why tracking was lost and mark it FAILED; False if unreachable."""
        if not self.reached:  # never created there: the public properties would create it now
            return False
        client, run_id = self.experiment, str(self.run_id)
        with quick_requests():
            try:
                client.set_tag(run_id, "forecast.failed_reason", f"tracking lost: {self.lost}")
                client.set_terminated(run_id, status="FAILED")
            except tracking_errors():
                return False
        return True


def answers(uri: str | None) -> bool:
    """Whether the store at ``uri`` answers now (a local store always does)."""
    if not uri or not uri.startswith(("http://", "https://")):
        return True
    try:
        check_reachable(uri)
    except ForecastError:
        return False
    return True


def lost_error(uri: str | None, why: str, checkpoint: str | None) -> TrackingLostError:
    """The one-line failure of a run whose tracking server went away."""
    kept = f"checkpoints kept in {Path(checkpoint).parent}" if checkpoint else "no checkpoint"
    return TrackingLostError(
        f"tracking server {uri} went away during the run ({why}); training finished, {kept}; "
        "nothing was registered or promoted: rerun when the server is back"
    )


def stop_if_lost(logger: Any, uri: str | None, checkpoint: str | None) -> None:
    """Raise :func:`lost_error` when ``logger`` lost its server (nothing more may be tracked)."""
    lost = getattr(logger, "lost", None)
    if lost:
        raise lost_error(uri, lost, checkpoint)
