"""Every job and the server find the same store: MLFLOW_TRACKING_URI, FORECAST_ROOT, then cwd."""

from __future__ import annotations

from forecast.tracking.store import default_tracking_uri, sqlite_path


def test_store_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("FORECAST_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert sqlite_path(default_tracking_uri()) == tmp_path.resolve() / "mlflow.db"
    monkeypatch.setenv("FORECAST_ROOT", str(tmp_path / "root"))
    assert sqlite_path(default_tracking_uri()) == (tmp_path / "root").resolve() / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert default_tracking_uri() == "http://127.0.0.1:5000"
    assert sqlite_path("http://127.0.0.1:5000") is None
