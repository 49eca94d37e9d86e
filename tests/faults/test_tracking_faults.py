"""A tracking server that is not there at start, or goes away mid-run.

At start: one ``error:`` line within 15 s, before any data is read. Mid-run (a real
``mlflow server`` killed after the first epoch): training finishes, checkpoints stay, nothing is
registered or promoted, the champion is unchanged, exit 2 with one line.
"""

from __future__ import annotations

import time

import pytest

from benchmarks.fault_tracking import dead_server_at_start, free_port, server_killed_mid_run
from forecast.errors import ForecastError
from forecast.tracking.logger import TrackingLogger, stop_if_lost
from pipelines._cli import describe


def test_the_logger_stops_sending_after_its_server_went_away(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    dead = f"http://127.0.0.1:{free_port()}"
    logger = TrackingLogger(experiment_name="x", tracking_uri=dead)
    t0 = time.monotonic()
    logger.log_hyperparams({"a": 1})  # fails (connection refused): recorded, not raised
    logger.log_metrics({"val/rmse": 1.0}, step=0)
    logger.finalize("success")
    assert logger.lost and time.monotonic() - t0 < 15
    with pytest.raises(ForecastError) as e:
        stop_if_lost(logger, dead, "/tmp/ck/last.ckpt")
    line = describe(e.value)
    assert "went away" in line and "/tmp/ck" in line and "\n" not in line


@pytest.mark.slow
def test_an_unreachable_server_at_start_is_one_line_before_any_data(tmp_path):
    got = dead_server_at_start(tmp_path)
    assert got.returncode == 2 and len(got.errors) == 1 and not got.traceback, got
    assert "unreachable" in got.errors[0]
    assert got.seconds < 15, got  # the whole process, imports included
    assert not got.data_read  # refused before the data were generated or read


@pytest.mark.slow
def test_a_server_killed_mid_run_leaves_checkpoints_and_the_champion(tmp_path):
    got = server_killed_mid_run(tmp_path, epochs=3)
    assert got.returncode == 2 and len(got.errors) == 1 and not got.traceback, got
    assert "went away" in got.errors[0] and "nothing was registered" in got.errors[0], got
    assert got.last_epoch == 2, got  # training went on to its last epoch; checkpoint verifies
    assert got.versions == ["1"] and got.champion == "1", got  # no new evidence, no new champion
    assert len(got.statuses) == 1 and got.statuses != ["FINISHED"], got
