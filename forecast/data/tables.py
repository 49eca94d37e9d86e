"""CSV tables turned into sensor series ``variable(time, sensor)``.

Two layouts: a table with a station column (one file, or several files concatenated, as in the
Beijing PRSA data), or one file per station without such a column (the file stem names the
sensor). A file with neither is one sensor with many variables (ETTh1).
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from forecast.data.schema import SENSOR, TIME, standardize
from forecast.errors import DataError, DataNotFoundError

# parsed tables by (files, mtimes, parameters): describe() and setup() both open the source
_CACHE: dict[tuple[object, ...], xr.Dataset] = {}


def _files(path: str) -> list[Path]:
    p = Path(path).expanduser()
    if p.is_dir():
        found = sorted(p.glob("*.csv"))
    elif any(ch in path for ch in "*?["):
        found = sorted(Path(f) for f in glob.glob(str(p)))
    else:
        found = [p] if p.exists() else []
    if not found:
        raise DataNotFoundError(
            f"no CSV file at '{p}' (set by config key 'data.source.path'); give a file, a folder "
            "of .csv files or a glob"
        )
    return found


@dataclass
class CsvSensorSource:
    """Sensor series from CSV tables.

    Args:
        path: a CSV file, a folder of them, or a glob (``.../PRSA_Data_*.csv``).
        time_column: column holding timestamps (ignored when ``time_parts`` is given).
        time_parts: columns assembled into timestamps, e.g. ``[year, month, day, hour]``.
        station_column: column naming the sensor of each row; None: one sensor per file.
        variables: columns kept as variables (default: every other column); a non-numeric one is
            refused when the data module asks for it.
        freq: put the series on this regular step (``"1h"``): absent rows become NaN (masked).
        coords: optional sensor coordinates ``{sensor: [lat, lon]}``.
        rename: column/sensor-dim names mapped onto the schema.
        units: physical units per column (``{"PM2.5": "ug/m3"}``): CSV has no place for them;
            they label metrics tables and plots.
    """

    path: str
    time_column: str = "date"
    time_parts: list[str] | None = None
    station_column: str | None = None
    variables: list[str] | None = None
    freq: str | None = None
    coords: dict[str, list[float]] = field(default_factory=dict)
    rename: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)

    def _read(self, f: Path) -> pd.DataFrame:
        df = pd.read_csv(f, low_memory=False)  # one dtype per column, not per chunk
        time_cols = self.time_parts or [self.time_column]
        missing = [c for c in [*time_cols, self.station_column] if c and c not in df.columns]
        if missing:
            raise DataError(
                f"{f}: columns {missing} not found (columns: {list(df.columns)}); fix "
                "`time_column`/`time_parts`/`station_column` in the data config"
            )
        try:
            if self.time_parts:
                parts = df[self.time_parts].rename(columns=dict(zip(self.time_parts,
                    ["year", "month", "day", "hour", "minute"], strict=False)))  # fmt: skip
                time = pd.to_datetime(parts)
            else:
                time = pd.to_datetime(df[self.time_column])
        except (ValueError, TypeError, OverflowError) as e:  # e.g. "31/02/2020" or "n/a"
            raise DataError(
                f"{f}: cannot parse the dates in column(s) {time_cols} ({str(e).splitlines()[0]}); "
                "expected ISO dates such as 2020-01-31 12:00 in every row"
            ) from None
        station = df[self.station_column].astype(str) if self.station_column else f.stem
        keep = self.variables or [
            c for c in df.columns if c not in {*time_cols, self.station_column, "No"}
        ]
        absent = [c for c in keep if c not in df.columns]
        if absent:
            raise DataError(
                f"{f}: variables {absent} not found; available: {list(df.columns)}; fix "
                "`variables` in the data config"
            )
        out = df[keep].copy()
        for c in keep:
            if not pd.api.types.is_numeric_dtype(out[c]):
                # a blank cell is a missing reading (one PRSA file has SO2 = " "); text stays text
                col = out[c].replace(r"^\s*$", np.nan, regex=True)
                try:
                    out[c] = pd.to_numeric(col)
                except (TypeError, ValueError):
                    out[c] = col
        out[TIME] = time.to_numpy()
        out[SENSOR] = station
        return out

    def open(self) -> xr.Dataset:
        """Parse (once per process while the files are unchanged) and return the dataset."""
        files = _files(self.path)
        key = (
            tuple((str(f), f.stat().st_mtime_ns) for f in files),
            repr(self),
        )
        if key not in _CACHE:
            _CACHE.clear()  # one table at a time: sensor tables fit memory, many do not
            _CACHE[key] = self._build(files)
        return _CACHE[key]

    def _build(self, files: list[Path]) -> xr.Dataset:
        df = pd.concat([self._read(f) for f in files], ignore_index=True)
        dup = df.duplicated([TIME, SENSOR])
        if dup.any():
            row = df[dup].iloc[0]
            raise DataError(
                f"{self.path}: duplicate timestamp {row[TIME]} for sensor '{row[SENSOR]}'; drop "
                "duplicate rows before training"
            )
        # sort only within a sensor: a shuffled file is refused by the time checks, not hidden
        sensors = list(dict.fromkeys(df[SENSOR]))
        times = pd.Index(df[TIME].unique())
        if self.freq:
            times = pd.date_range(times.min(), times.max(), freq=self.freq)
        elif times.is_monotonic_increasing is False and len(sensors) > 1:
            times = times.sort_values()
        frame = df.set_index([TIME, SENSOR])
        typos = sorted(set(self.units) - set(frame.columns))
        if typos:
            raise DataError(
                f"{self.path}: `units` names columns {typos} that are not read; columns: "
                f"{list(frame.columns)}"
            )
        ds = xr.Dataset(coords={TIME: times.to_numpy(), SENSOR: sensors})
        full = pd.MultiIndex.from_product([times, sensors], names=[TIME, SENSOR])
        for col in frame.columns:
            values = frame[col].reindex(full).to_numpy().reshape(len(times), len(sensors))
            if values.dtype.kind == "O":
                try:  # numbers stored as text become numbers; real text stays text (refused later)
                    values = pd.to_numeric(values.ravel()).reshape(values.shape)
                except (TypeError, ValueError):
                    values = values.astype(str)
            ds[col] = ((TIME, SENSOR), values)
            if col in self.units:
                ds[col].attrs["units"] = str(self.units[col])
        if self.coords:
            unknown = sorted(set(self.coords) - set(sensors))
            if unknown:
                raise DataError(f"{self.path}: coords name unknown sensors {unknown}")
            latlon = np.array([self.coords.get(s, [np.nan, np.nan]) for s in sensors], float)
            ds = ds.assign_coords(lat=(SENSOR, latlon[:, 0]), lon=(SENSOR, latlon[:, 1]))
        ds.attrs["source_files"] = ",".join(f.name for f in files)
        return standardize(ds, self.rename, self.path)
