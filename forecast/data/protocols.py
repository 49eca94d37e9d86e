"""What data modules offer the rest of the project, declared once as protocols.

Every data module is a :class:`ForecastData`: it describes the shapes a net needs, has a data
version (fingerprint), split bounds and fitted scaling, and builds one dataset per split. Modules
whose samples are windows of one continuous time series (grids, sensor tables) are also
:class:`SeriesData`: they expose the store, so backtests over rolling origins, the latest window of
a batch forecast and fitted baselines (climatology) can read it. Moving MNIST is not: its splits
are independent sequences, so it has no "latest time" and no series to backtest.

Callers ask :func:`is_series` instead of probing attributes one by one. It looks members up
statically: ``isinstance`` against a runtime protocol would, on Python 3.11, evaluate the
``dataset`` property, i.e. open the store.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import xarray as xr

from forecast.data.normalize import Normalizer
from forecast.data.spec import DataSpec


@runtime_checkable
class ForecastData(Protocol):
    """Any data module the training run, registry and serving accept."""

    variables: list[str]
    normalizer: Normalizer | None
    datasets: Mapping[str, Any]

    def describe(self) -> DataSpec:
        """Shapes and names for building the net (metadata only)."""
        ...

    def fingerprint(self) -> str:
        """A short digest of the data version (changes when the data change)."""
        ...

    def bounds(self) -> dict[str, tuple[int, int]]:
        """Index ranges of the splits."""
        ...

    def setup(self, stage: str | None = None) -> None:
        """Fit scaling on the training split and build the split datasets."""
        ...


@runtime_checkable
class SeriesData(ForecastData, Protocol):
    """A data module over one continuous time series (a store with a ``time`` axis)."""

    @property
    def dataset(self) -> xr.Dataset:
        """The validated store, opened lazily."""
        ...

    def target_series(self) -> Any:
        """Normalised targets of every row with the time axis (for fitted baselines)."""
        ...


def missing_members(dm: object, protocol: type) -> list[str]:
    """Members of ``protocol`` that ``dm`` lacks, found without calling any property."""
    names = sorted(
        n
        for base in protocol.__mro__
        if base not in (object, Protocol, Any) and getattr(base, "_is_protocol", False)
        for n in (*vars(base), *getattr(base, "__annotations__", {}))
        if not n.startswith("_")
    )
    missing = []
    for name in names:
        try:
            inspect.getattr_static(dm, name)
        except AttributeError:
            missing.append(name)
    return missing


def is_series(dm: object) -> bool:
    """True when ``dm`` exposes a continuous series (backtests, latest window, climatology)."""
    return not missing_members(dm, SeriesData)
