"""Model registry: register finite models, read and move the ``champion`` alias (no stages)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel
from mlflow.tracking import MlflowClient

from forecast.errors import ForecastError

CHAMPION = "champion"


def client_for(tracking_uri: str) -> MlflowClient:
    """A client bound to ``tracking_uri`` for tracking and registry alike."""
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def non_finite(metrics: Mapping[str, float]) -> list[str]:
    """Names of metrics whose value is NaN or infinite."""
    return sorted(k for k, v in metrics.items() if not math.isfinite(float(v)))


def register(
    client: MlflowClient,
    name: str,
    model_id: str,
    run_id: str,
    tags: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Register a logged model as a new version of ``name`` (created when missing).

    Args:
        client: bound to the tracking/registry store.
        name: registered model name.
        model_id: the logged model's id (``m-...``).
        run_id: the run that produced it.
        tags: version tags.

    Returns:
        The new model version.
    """
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name)
        except MlflowException:  # created meanwhile by another job: fine
            client.get_registered_model(name)
    source = client.get_logged_model(model_id).artifact_location
    return client.create_model_version(
        name, source=source, run_id=run_id, tags=dict(tags or {}), model_id=model_id
    )


def alias_version(client: MlflowClient, name: str, alias: str = CHAMPION) -> ModelVersion | None:
    """The version ``alias`` points to, or None when the model or the alias does not exist."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def load_version(tracking_uri: str, name: str, ref: str) -> PyFuncModel:
    """Load version or alias ``ref`` of ``name`` as a pyfunc (the same object a server uses).

    Args:
        tracking_uri: the tracking/registry store.
        name: registered model name.
        ref: a version number (``"3"``) or an alias (``"champion"``).

    Returns:
        The loaded pyfunc.
    """
    client = client_for(tracking_uri)
    mv = resolve(client, name, ref)
    local = mlflow.artifacts.download_artifacts(artifact_uri=mv.source, tracking_uri=tracking_uri)
    return mlflow.pyfunc.load_model(local)


def resolve(client: MlflowClient, name: str, ref: str) -> ModelVersion:
    """The model version a version number or alias names; a ForecastError says what exists."""
    try:
        if str(ref).isdigit():
            return client.get_model_version(name, str(ref))
        return client.get_model_version_by_alias(name, str(ref))
    except MlflowException as e:
        try:
            model = client.get_registered_model(name)
        except MlflowException:
            raise ForecastError(
                f"registered model '{name}' does not exist in {client.tracking_uri}"
            ) from e
        aliases = sorted(model.aliases) if model.aliases else []
        raise ForecastError(
            f"model '{name}' has no version or alias '{ref}'; aliases: {aliases}"
        ) from e


def registration_refusal(
    metrics: Mapping[str, float],
    weights_finite: bool,
    skill: float | None = None,
    min_skill: float | None = None,
) -> str | None:
    """Why a model must not be registered, or None when it may be.

    Args:
        metrics: the metrics that must be finite (validation score and metrics).
        weights_finite: whether every weight is finite.
        skill: validation skill against persistence (``1 - mse / mse_persistence``), if known.
        min_skill: the skill the model must exceed; None disables the check.

    Returns:
        The reason in words, or None.
    """
    bad = non_finite(metrics)
    if not weights_finite:
        return "non-finite weights"
    if bad:
        return f"non-finite metrics {bad}"
    if min_skill is None:
        return None
    if skill is None or not math.isfinite(float(skill)):
        return f"validation skill against persistence is unknown (needed > {min_skill:g})"
    if float(skill) <= min_skill:
        return (
            f"validation skill {float(skill):.4f} does not beat persistence by the margin "
            f"registry.min_skill={min_skill:g}"
        )
    return None


def register_if_finite(
    client: MlflowClient,
    name: str,
    model_id: str,
    run_id: str,
    metrics: Mapping[str, float],
    weights_finite: bool,
    skill: float | None = None,
    min_skill: float | None = None,
) -> ModelVersion | None:
    """Register the model unless :func:`registration_refusal` gives a reason not to.

    The reason for skipping is written to the run as the tag ``registry/skipped``.

    Args:
        client: bound to the tracking/registry store.
        name: registered model name.
        model_id: the logged model.
        run_id: its run.
        metrics: the metrics that must be finite (validation score, test metrics).
        weights_finite: whether every weight is finite.
        skill: validation skill against persistence.
        min_skill: the skill it must exceed (None: finiteness only).

    Returns:
        The new version, or None when skipped.
    """
    why = registration_refusal(metrics, weights_finite, skill, min_skill)
    if why is not None:
        client.set_tag(run_id, "registry/skipped", why)
        return None
    return register(client, name, model_id, run_id, tags={"run_id": run_id})
