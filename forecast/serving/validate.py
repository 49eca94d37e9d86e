"""Request validation for the served model: every failure is a 400 with a message, not a trace."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE


def bad_request(message: str) -> MlflowException:
    """An invalid-parameter error: the scoring server answers 400 with ``message`` only."""
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def check_variables(given: Any, expected: Sequence[str]) -> None:
    """Check an optional ``variables`` request parameter against the model's variables.

    Args:
        given: the request's ``params["variables"]`` (None when the client sent none).
        expected: the model's input variables in channel order.
    """
    if given is None:
        return
    names = [given] if isinstance(given, str) else list(np.asarray(given).ravel().tolist())
    if names != list(expected):
        missing = [v for v in expected if v not in names]
        raise bad_request(
            f"variables must be {list(expected)} in this order; got {names}"
            + (f" (missing {missing})" if missing else "")
        )


def check_input(
    model_input: Any,
    sample_shape: Sequence[int],
    variables: Sequence[str],
    max_samples: int,
    channel_axis: int,
    allow_missing: bool = False,
) -> np.ndarray:
    """Validate a raw request and return it as float32 ``(B, *sample_shape)``.

    Args:
        model_input: whatever the client sent (array, nested lists, DataFrame, dict).
        sample_shape: one sample's shape, e.g. ``(context, C, H, W)`` or ``(context, S, F)``.
        variables: the model's variables (their count is checked on ``channel_axis``).
        max_samples: cap on samples per request.
        channel_axis: axis of the batched array that holds the variables.
        allow_missing: accept NaN as "missing" (infinities are always refused).

    Returns:
        The validated array, float32, shape ``(B, *sample_shape)``.
    """
    if isinstance(model_input, dict):
        if len(model_input) != 1:
            raise bad_request(
                f"expected one input tensor, got a mapping with keys {sorted(model_input)}"
            )
        model_input = next(iter(model_input.values()))
    if hasattr(model_input, "to_numpy"):  # a DataFrame cannot carry a 4-5 dim window
        raise bad_request(
            "expected a tensor input ({'inputs': [...]}) shaped (batch, "
            f"{', '.join(map(str, sample_shape))}), got a table"
        )
    try:
        x = np.asarray(model_input)
    except ValueError as e:  # ragged nested lists
        raise bad_request(f"input is not a rectangular array: {e}") from None
    if x.dtype.kind not in "fiub":
        raise bad_request(f"input must be numbers (float), got array of dtype {x.dtype}")
    expected = (-1, *sample_shape)
    if x.ndim != len(expected):
        raise bad_request(
            f"input must have shape {expected} (batch first), got {x.ndim} dims {x.shape}"
        )
    if x.shape[0] < 1 or x.shape[0] > max_samples:
        raise bad_request(f"batch size must be 1..{max_samples} samples, got {x.shape[0]}")
    if x.shape[1] != sample_shape[0]:
        raise bad_request(
            f"context length must be {sample_shape[0]} steps, got {x.shape[1]} "
            f"(input shape {x.shape}, expected {expected})"
        )
    if x.shape[channel_axis] != len(variables):
        raise bad_request(
            f"expected {len(variables)} variables {list(variables)} on axis {channel_axis}, "
            f"got {x.shape[channel_axis]} (input shape {x.shape})"
        )
    if tuple(x.shape[1:]) != tuple(sample_shape):
        raise bad_request(f"input must have shape {expected}, got {x.shape}")
    x = x.astype(np.float32, copy=False)
    bad = np.isinf(x) if allow_missing else ~np.isfinite(x)
    if bad.any():
        what = "infinite" if allow_missing else "non-finite (NaN or inf)"
        hint = "" if allow_missing else "; mark gaps as NaN with params {'allow_missing': true}"
        raise bad_request(f"input has {int(bad.sum())} {what} values{hint}")
    return x
