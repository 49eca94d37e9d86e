"""The served app: MLflow's scoring app for the protocol, our ASGI layer for every request.

``/ping``, ``/health`` and ``/version`` are MLflow's (clients written for ``mlflow models serve``
work unchanged); bodies, the byte cap and ``/invocations`` are ours
(:mod:`forecast.serving.asgi`, :mod:`forecast.serving.fast_path`), so a request is parsed and
predicted once and its error message is set directly, not rewritten from MLflow's.
"""

from __future__ import annotations

import math
import os
from typing import Any

from forecast.errors import ArtifactError
from forecast.serving.asgi import BODY_TIMEOUT_S, ASGIApp, Guarded
from forecast.serving.fast_path import PREDICT_TIMEOUT_S, Invocations

# bytes per number in the JSON body: a float32 as Python writes it ("-0.30000001192092896, ")
BYTES_PER_VALUE = 24
# room for the envelope ({"inputs": ..., "params": ...}) and brackets of small requests
ENVELOPE_BYTES = 64 * 1024
# environment of a uvicorn worker (the factory reads its settings from there, as MLflow's app does)
ENV_MODEL = "FORECAST_SERVING_MODEL"
ENV_MAX_BYTES = "FORECAST_SERVING_MAX_BYTES"
ENV_BODY_TIMEOUT = "FORECAST_SERVING_BODY_TIMEOUT"
ENV_PREDICT_TIMEOUT = "FORECAST_SERVING_PREDICT_TIMEOUT"


def default_max_bytes(metadata: dict[str, Any]) -> int:
    """A byte cap that admits ``max_samples`` full samples written as JSON, and not much more.

    Args:
        metadata: the pyfunc's metadata (``sample_shape``, ``max_samples``).

    Returns:
        ``max_samples * prod(sample_shape) * 24 + 64 KiB``.
    """
    values = int(metadata["max_samples"]) * math.prod(int(s) for s in metadata["sample_shape"])
    return values * BYTES_PER_VALUE + ENVELOPE_BYTES


def load_served(path: str) -> Any:
    """Load the pyfunc at ``path``; an :class:`ArtifactError` in one line if it does not load.

    Args:
        path: a local MLflow model directory.

    Returns:
        The loaded ``PyFuncModel``.
    """
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from forecast.errors import ForecastError

    try:
        return mlflow.pyfunc.load_model(path)
    except ForecastError:
        raise
    except (MlflowException, OSError, ValueError, KeyError, RuntimeError, ImportError) as e:
        first = " ".join(str(e).strip().split("\n", 1)[0].split())
        raise ArtifactError(f"model at {path} does not load: {type(e).__name__}: {first}") from e


def build_app(
    model: Any,
    max_bytes: int | None = None,
    body_timeout: float = BODY_TIMEOUT_S,
    predict_timeout: float = PREDICT_TIMEOUT_S,
) -> ASGIApp:
    """The served app for a loaded ``PyFuncModel``.

    Args:
        model: the loaded pyfunc; with forecast metadata its ``/invocations`` are ours.
        max_bytes: the request byte cap (default: :func:`default_max_bytes`).
        body_timeout: seconds a client may take to send a body (408 after).
        predict_timeout: seconds a request may wait for its forecast (503 after).
    """
    from mlflow.pyfunc import scoring_server

    metadata = getattr(model.unwrap_python_model(), "metadata", None)
    if max_bytes is None:
        if not metadata:
            raise ArtifactError(f"{ENV_MAX_BYTES} is needed for a model without forecast metadata")
        max_bytes = default_max_bytes(metadata)
    handler = None
    if metadata and metadata.get("sample_shape"):
        handler = Invocations(model, metadata["sample_shape"], predict_timeout)
    return Guarded(scoring_server.init(model), max_bytes, handler, body_timeout)


def create_app() -> ASGIApp:
    """Uvicorn factory: load the pyfunc at ``$FORECAST_SERVING_MODEL`` and serve it guarded.

    ``$FORECAST_SERVING_MAX_BYTES`` sets the cap (default: :func:`default_max_bytes`), and the
    ``..._BODY_TIMEOUT``/``..._PREDICT_TIMEOUT`` seconds the deadlines. Settings travel in the
    environment so that every uvicorn worker process builds the same app.
    """
    cap = os.environ.get(ENV_MAX_BYTES)
    return build_app(
        load_served(os.environ[ENV_MODEL]),
        int(cap) if cap else None,
        float(os.environ.get(ENV_BODY_TIMEOUT, BODY_TIMEOUT_S)),
        float(os.environ.get(ENV_PREDICT_TIMEOUT, PREDICT_TIMEOUT_S)),
    )
