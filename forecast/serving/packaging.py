"""Package a trained network as the project's pyfunc (models-from-code, no pickle) in a run."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from torch import nn

from forecast.data.normalize import Normalizer
from forecast.serving import model_code
from forecast.serving.pyfunc import ForecastModel, save_bundle, signature


def log_forecast_model(
    tracking_uri: str,
    run_id: str,
    net: nn.Module,
    net_target: str,
    net_kwargs: dict[str, Any],
    normalizer: Normalizer,
    metadata: dict[str, Any],
    example: np.ndarray,
) -> tuple[str, str]:
    """Log net + normaliser + metadata as a pyfunc named ``model`` under ``run_id``.

    The pyfunc is rebuilt from :mod:`forecast.serving.model_code` (models-from-code) and its weights
    are a plain state dict, so loading never unpickles arbitrary objects. The signature is a tensor
    spec with a free batch dim; the example is one raw sample, which the signature accepts at any
    batch size.

    Args:
        tracking_uri: the MLflow tracking URI (set explicitly, never taken from a global default).
        run_id: the run to log into (it may be active in a Lightning logger).
        net: the trained network (already holding its best weights).
        net_target: import path of the net's class.
        net_kwargs: constructor arguments, JSON-able.
        normalizer: the fitted normaliser.
        metadata: see :func:`forecast.serving.pyfunc.model_metadata`.
        example: raw input example ``(1, *sample_shape)``, float32.

    Returns:
        ``(model_uri, model_id)`` of the logged model.
    """
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = save_bundle(
            Path(tmp) / "bundle", net, net_target, net_kwargs, normalizer, metadata
        )
        check = ForecastModel()
        check.load_files(artifacts)  # fail here, not in the server, if the bundle does not load
        check.predict(None, example)
        # pyfunc.log_model has only MLflow's fluent API: the URI is set for this call, then restored
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(tracking_uri)
        try:
            with mlflow.start_run(run_id=run_id):
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=model_code.__file__,
                    artifacts=artifacts,
                    signature=signature(metadata),
                    input_example=example.astype(np.float32),
                    pip_requirements=["forecast"],
                )
        finally:
            mlflow.set_tracking_uri(previous)
    return str(info.model_uri), str(info.model_id)
