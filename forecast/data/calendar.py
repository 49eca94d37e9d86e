"""Calendar covariates known in advance for every step: hour of day and day of year as sin/cos."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecast.errors import DataError

CALENDAR_FEATURES = ("hour_sin", "hour_cos", "doy_sin", "doy_cos")


def calendar_features(times: np.ndarray, path: str = "<memory>") -> np.ndarray:
    """Cyclic encodings of the hour of day and the day of year.

    Args:
        times: datetime64 time coordinate, ``(T,)``.
        path: the data's origin, for the error message.

    Returns:
        float32 ``(T, 4)``: sin/cos of hour/24 and of (day of year - 1)/365.25.
    """
    dtype = np.asarray(times).dtype
    if not np.issubdtype(dtype, np.datetime64):
        raise DataError(
            f"{path}: calendar covariates need a datetime time axis, got {dtype}; "
            "set `calendar: false` in the data config"
        )
    t = pd.DatetimeIndex(times)
    hour = (t.hour.to_numpy() + t.minute.to_numpy() / 60.0) / 24.0
    doy = (t.dayofyear.to_numpy() - 1 + hour) / 365.25
    two_pi = 2 * np.pi
    feats = [np.sin(two_pi * hour), np.cos(two_pi * hour)]
    feats += [np.sin(two_pi * doy), np.cos(two_pi * doy)]
    return np.stack(feats, axis=1).astype(np.float32)
