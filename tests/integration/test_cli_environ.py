"""An entry point run in-process leaves the caller's environment as it found it.

The CLI boundary records the user's traceback choice in ``FORECAST_CLI_DEBUG`` and sets
``HYDRA_FULL_ERROR`` for its own process tree; when they outlived the call, a test that asked for
tracebacks turned every later in-process entry point's one-line error into a traceback.
"""

from __future__ import annotations

import os
import sys

import pytest

from forecast.errors import ForecastError

KEYS = ("FORECAST_CLI_DEBUG", "HYDRA_FULL_ERROR")


def test_hydra_entry_point_restores_the_debug_settings(tmp_path, monkeypatch):
    import pipelines.train as shim
    from forecast.errors import ConfigError

    monkeypatch.setenv("FORECAST_ROOT", str(tmp_path))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # the user asks for tracebacks
    monkeypatch.delenv("FORECAST_CLI_DEBUG", raising=False)
    run_dir = f"hydra.run.dir={tmp_path / 'hydra'}"
    argv = ["pipelines.train", "logger=none", "trainer=smoke", run_dir, "data.batch_size=0"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(ConfigError):
        shim.main()
    assert "FORECAST_CLI_DEBUG" not in os.environ and os.environ["HYDRA_FULL_ERROR"] == "1"
    monkeypatch.delenv("HYDRA_FULL_ERROR")
    with pytest.raises(SystemExit) as e:  # the next call gives its one line again
        shim.main()
    assert e.value.code == 2 and not any(k in os.environ for k in KEYS)


def test_server_debug_flag_is_scoped_to_the_call(tmp_path, monkeypatch, capsys):
    from pipelines.serve import main

    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("FORECAST_ROOT", str(tmp_path))  # no store there
    with pytest.raises(ForecastError):
        main(["models:/m@champion", "--debug"])
    assert not any(k in os.environ for k in KEYS)
    with pytest.raises(SystemExit) as e:
        main(["models:/m@champion"])
    assert e.value.code == 2 and capsys.readouterr().err.count("error:") == 1
