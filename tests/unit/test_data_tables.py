"""CSV tables as sensor series: ETTh1 layout, Beijing PRSA layout, gaps, bad columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecast.data.sensor_datamodule import SensorDataModule
from forecast.data.tables import CsvSensorSource
from forecast.errors import DataError, DataNotFoundError

ETT_COLS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


def _ett(path, n=120):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(n, 7)), columns=ETT_COLS)
    df.insert(0, "date", pd.date_range("2016-07-01", periods=n, freq="h").astype(str))
    df.to_csv(path, index=False)
    return df


def _prsa(folder, stations=("Aoti", "Dongsi", "Wanliu"), n=72, drop=()):
    rng = np.random.default_rng(1)
    for k, st in enumerate(stations):
        t = pd.date_range("2013-03-01", periods=n, freq="h")
        df = pd.DataFrame(
            {
                "No": np.arange(1, n + 1),
                "year": t.year, "month": t.month, "day": t.day, "hour": t.hour,
                "PM2.5": rng.gamma(2, 30, n), "TEMP": rng.normal(5, 3, n),
                "wd": rng.choice(["N", "NW", "SE"], n), "station": st,
            }
        )  # fmt: skip
        df.loc[5 + k, "PM2.5"] = np.nan
        if st in drop:
            df = df.drop(index=[10, 11])
        df.to_csv(folder / f"PRSA_Data_{st}_20130301-20170228.csv", index=False)


def test_etth1_layout_is_one_sensor_seven_variables(tmp_path):
    df = _ett(tmp_path / "ETTh1.csv")
    ds = CsvSensorSource(str(tmp_path / "ETTh1.csv")).open()
    assert dict(ds.sizes) == {"time": 120, "sensor": 1}
    assert list(ds.data_vars) == ETT_COLS and ds.sensor.values.tolist() == ["ETTh1"]
    np.testing.assert_allclose(ds["OT"].values[:, 0], df["OT"].values)


def test_etth1_informer_rows_and_train_scaler(tmp_path):
    df = _ett(tmp_path / "ETTh1.csv")
    dm = SensorDataModule(
        CsvSensorSource(str(tmp_path / "ETTh1.csv")), ETT_COLS, context=8, horizon=4,
        splits={"train": [0, 60], "val": [60, 90], "test": [90, 120]},
    )  # fmt: skip
    dm.setup()
    assert dm.describe().n_sensors == 1
    assert len(dm.datasets["val"]) == 30 - 4 + 1  # border [60-8, 90): 38 rows - 8 - 4 + 1
    np.testing.assert_allclose(dm.normalizer.offset, df[ETT_COLS].values[:60].mean(0))
    b = dm.datasets["test"][0]
    assert b["x"].shape == (8, 1, 7) and int(b["start"]) == 90 - 8


def test_prsa_files_per_station_with_gaps(tmp_path):
    _prsa(tmp_path, drop=("Dongsi",))
    src = CsvSensorSource(
        str(tmp_path / "PRSA_Data_*.csv"), time_parts=["year", "month", "day", "hour"],
        station_column="station", variables=["PM2.5", "TEMP", "wd"], freq="1h",
    )  # fmt: skip
    ds = src.open()
    assert dict(ds.sizes) == {"time": 72, "sensor": 3}
    assert ds.sensor.values.tolist() == ["Aoti", "Dongsi", "Wanliu"]
    assert np.isnan(ds["TEMP"].sel(sensor="Dongsi").values[10:12]).all()  # dropped rows masked
    dm = SensorDataModule(src, ["PM2.5", "TEMP"], context=6, horizon=3, targets=["PM2.5"])
    dm.setup()
    item = dm.datasets["train"][4]  # rows 4..12: Aoti's NaN at 5, Dongsi's gap at 10-11
    assert item["x"].shape == (6, 3, 2) and item["y"].shape == (3, 3, 1)
    assert not item["x_mask"][1, 0, 0] and item["x"][1, 0, 0] == 0.0
    assert not item["x_mask"][:, 1].all() or not item["y_mask"][:, 1].all()
    with pytest.raises(DataError, match="'wd'.*non-numeric"):
        SensorDataModule(src, ["PM2.5", "wd"], context=6, horizon=3).describe()


def test_units_label_the_columns_and_a_misnamed_one_is_refused(tmp_path):
    _prsa(tmp_path)
    common = dict(time_parts=["year", "month", "day", "hour"], station_column="station",
                  variables=["PM2.5", "TEMP"])  # fmt: skip
    path = str(tmp_path / "PRSA_Data_*.csv")
    ds = CsvSensorSource(path, units={"PM2.5": "ug/m3"}, **common).open()
    assert ds["PM2.5"].attrs["units"] == "ug/m3" and "units" not in ds["TEMP"].attrs
    with pytest.raises(DataError, match=r"`units` names columns \['PM25'\] that are not read"):
        CsvSensorSource(path, units={"PM25": "ug/m3"}, **common).open()


def test_one_file_per_station_without_station_column(tmp_path):
    for st in ("a", "b"):
        _ett(tmp_path / f"{st}.csv", n=30)
    ds = CsvSensorSource(str(tmp_path), variables=["OT"]).open()
    assert ds.sensor.values.tolist() == ["a", "b"] and dict(ds.sizes) == {"time": 30, "sensor": 2}


def test_table_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="data.source.path"):
        CsvSensorSource(str(tmp_path / "none.csv")).open()
    _ett(tmp_path / "e.csv", n=20)
    with pytest.raises(DataError, match="'stamp'"):
        CsvSensorSource(str(tmp_path / "e.csv"), time_column="stamp").open()
    with pytest.raises(DataError, match="XYZ"):
        CsvSensorSource(str(tmp_path / "e.csv"), variables=["XYZ"]).open()
    df = pd.read_csv(tmp_path / "e.csv")
    pd.concat([df, df.iloc[[3]]]).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(DataError, match="duplicate"):
        CsvSensorSource(str(tmp_path / "dup.csv")).open()


def test_blank_cell_is_missing_not_text(tmp_path):
    df = _ett(tmp_path / "e.csv", n=12)
    df["OT"] = df["OT"].astype(object)
    df.loc[4, "OT"] = " "
    df.to_csv(tmp_path / "e.csv", index=False)
    ds = CsvSensorSource(str(tmp_path / "e.csv")).open()
    assert ds["OT"].dtype.kind == "f" and np.isnan(ds["OT"].values[4, 0])
    assert np.isfinite(np.delete(ds["OT"].values[:, 0], 4)).all()
