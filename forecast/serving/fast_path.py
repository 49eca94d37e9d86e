"""``POST /invocations`` for the project's pyfunc: one parse, one predict, one answer per request.

MLflow's scoring app spends more on JSON than on the forecast for a gridded model: its parser
deep-copies the decoded lists and converts them against the signature (10.7 ms for one 12x32x32
window), and its encoder writes the answer through ``json`` (5.5 ms); the ConvLSTM itself takes
15-17 ms at one thread. :class:`Invocations` answers every request itself:

- the body is JSON (``Content-Type: application/json``, or no content type); others get 415;
- decoded by ``orjson`` (Python's ``json`` for the ``NaN``/``Infinity`` literals MLflow accepts);
  nesting deeper than :data:`MAX_DEPTH` is 400;
- the envelope is MLflow's: exactly one of ``inputs``/``instances`` (a tensor; the model refuses
  ``dataframe_split``/``dataframe_records`` tables) and optional ``params``; any other top-level
  key, and any param the signature does not declare, is 400 naming it;
- the same loaded ``PyFuncModel.predict`` runs (MLflow's signature and params checks, then the
  pyfunc's own), on one worker thread, with a deadline (503 past it);
- a model's ``MlflowException`` is answered with its own status and message; anything else is a
  500 with a generic message, its traceback in the server log.

Forecasts are the same float32 values as MLflow's path; the JSON text may differ in float
spelling (``1e-05`` vs ``1e-5``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from io import StringIO
from typing import Any

import numpy as np
import orjson

from forecast.serving.asgi import error_body

log = logging.getLogger("forecast.serving")
JSON_TYPES = ("application/json",)
INPUT_KEYS = ("inputs", "instances")
TABLE_KEYS = ("dataframe_split", "dataframe_records")
# deeper JSON is refused before Python's json could hit its recursion limit (a 500 in MLflow)
MAX_DEPTH = 64
# seconds one forecast may take, queueing included, before the client gets 503
PREDICT_TIMEOUT_S = 30.0


class BadRequest(Exception):
    """A request this path refuses: HTTP status and message for the client."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _too_deep(body: bytes, limit: int) -> bool:
    """Whether brackets nest deeper than ``limit`` (outside strings), without parsing."""
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def decode(body: bytes) -> Any:
    """The JSON document of ``body``; :class:`BadRequest` for invalid or too deeply nested JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        first = str(e)
    if _too_deep(body, MAX_DEPTH):
        raise BadRequest(f"request JSON nests deeper than {MAX_DEPTH} levels")
    try:  # NaN / Infinity literals, which MLflow's parser accepts and orjson does not
        return json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest(f"request body is not valid JSON: {first}") from None


def parse_request(body: bytes, sample_shape: Sequence[int]) -> tuple[Any, dict[str, Any] | None]:
    """Validate MLflow's JSON envelope and decode the tensor.

    Args:
        body: the raw request body (JSON).
        sample_shape: one sample's shape; a numeric ``(B, *sample_shape)`` array becomes float32.

    Returns:
        ``(x, params)``: ``x`` a float32 array (or, for other shapes, the array as sent, for
        the model's own message) and ``params`` a dict or None.

    Raises:
        BadRequest: naming the key or value that was wrong and what is expected.
    """
    doc = decode(body)
    shape = ", ".join(map(str, sample_shape))
    expected = f"{{'inputs': [...], 'params': {{...}}}} with inputs shaped (batch, {shape})"
    if not isinstance(doc, dict):
        raise BadRequest(
            f"request must be a JSON object {expected}, got a JSON {type(doc).__name__}"
        )
    unknown = sorted(set(doc) - {*INPUT_KEYS, *TABLE_KEYS, "params"})
    if unknown:
        raise BadRequest(f"unknown top-level key(s) {unknown}; expected {expected}")
    given = [k for k in (*INPUT_KEYS, *TABLE_KEYS) if k in doc]
    if len(given) != 1:
        raise BadRequest(f"expected exactly one of {list(INPUT_KEYS)}, got {given or 'none'}")
    if given[0] in TABLE_KEYS:
        raise BadRequest(f"this model takes a tensor, not a table ({given[0]}); send {expected}")
    params = doc.get("params")
    if params is not None and not isinstance(params, dict):
        raise BadRequest(f"params must be a JSON object, got {type(params).__name__}")
    data = doc[given[0]]
    if isinstance(data, dict):  # a named tensor: the model has one input
        if len(data) != 1:
            raise BadRequest(f"expected one input tensor, got a mapping with keys {sorted(data)}")
        data = next(iter(data.values()))
    if not isinstance(data, list):
        raise BadRequest(
            f"{given[0]} must be a (nested) list of numbers, got {type(data).__name__}"
        )
    try:
        x = np.asarray(data)
    except ValueError:
        raise BadRequest(f"{given[0]} is not a rectangular array (ragged nested lists)") from None
    if x.dtype.kind not in "fiu" or x.ndim < 1:
        raise BadRequest(f"{given[0]} must be numbers, got values of type {x.dtype}")
    if tuple(x.shape[1:]) == tuple(int(s) for s in sample_shape):
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, which the model refuses
            x = x.astype(np.float32)
    return x, params


def encode_predictions(y: Any) -> bytes:
    """``{"predictions": y}`` as MLflow's scoring server writes it, in fewer milliseconds.

    Finite float arrays go through ``orjson`` as float64 (the same numbers MLflow's ``tolist``
    gives); anything else (NaN, other types) through MLflow's own encoder.
    """
    if isinstance(y, np.ndarray) and y.dtype.kind == "f" and np.isfinite(y).all():
        return orjson.dumps(
            {"predictions": y.astype(np.float64)}, option=orjson.OPT_SERIALIZE_NUMPY
        )
    from mlflow.pyfunc.scoring_server import predictions_to_json

    out = StringIO()
    predictions_to_json(y, out)
    return out.getvalue().encode()


def is_json(content_type: str | None) -> bool:
    """JSON, or no content type at all (JSON by default)."""
    if content_type is None or not content_type.strip():
        return True
    return content_type.split(";", 1)[0].strip().lower() in JSON_TYPES


def _param_names(model: Any) -> set[str] | None:
    """The params the model's signature declares (None: not known, so not checked)."""
    try:
        schema = model.metadata.get_params_schema()
    except AttributeError:
        return None
    return set() if schema is None else {p.name for p in schema.params}


class Invocations:
    """The ``/invocations`` handler of :class:`forecast.serving.asgi.Guarded`.

    Args:
        model: the loaded ``PyFuncModel`` (its ``predict(x, params=...)`` is called).
        sample_shape: one sample's shape from the pyfunc's metadata.
        timeout: seconds a request may wait for its forecast (queueing included).
    """

    def __init__(
        self, model: Any, sample_shape: Sequence[int], timeout: float = PREDICT_TIMEOUT_S
    ) -> None:
        self.model, self.timeout = model, float(timeout)
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.params = _param_names(model)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forecast-predict")

    def answer(self, content_type: str | None, body: bytes) -> tuple[int, bytes]:
        """Runs on the worker thread: ``(status, JSON body)`` for one request."""
        from mlflow.exceptions import MlflowException

        if not is_json(content_type):
            return 415, error_body(
                415, f"Content-Type must be application/json, got {content_type!r}"
            )
        try:
            x, params = parse_request(body, self.sample_shape)
            known = self.params
            unknown = sorted(set(params or ()) - known) if known is not None else []
            if known is not None and unknown:  # MLflow would drop them with a warning
                raise BadRequest(f"unknown params {unknown}; expected some of {sorted(known)}")
            y = self.model.predict(x, params=params)
        except BadRequest as e:
            return e.status, error_body(e.status, e.message)
        except MlflowException as e:  # refused by the signature or the pyfunc: its own message
            status = int(e.get_http_status_code())
            if status >= 500:
                log.exception("model error answered %d", status)
                return status, error_body(status, "the model failed on this request")
            return status, json.dumps({"error_code": e.error_code, "message": e.message}).encode()
        except Exception:  # noqa: BLE001 (a bug or a model failure: logged, never sent)
            log.exception("unexpected error in /invocations")
            return 500, error_body(500, "internal error: the model failed on this request")
        return 200, encode_predictions(y)

    async def __call__(self, content_type: str | None, body: bytes) -> tuple[int, bytes]:
        """Answer on the worker thread, or 503 past the deadline (the forecast still finishes)."""
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self.pool, self.answer, content_type, body)
        try:
            return await asyncio.wait_for(asyncio.shield(job), timeout=self.timeout)
        except asyncio.TimeoutError:
            log.warning("forecast not done within %g s: answered 503", self.timeout)
            return 503, error_body(503, f"forecast not done within {self.timeout:g} s; retry later")
