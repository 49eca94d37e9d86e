"""`pipelines.evaluate` refuses bad input in one line (scores: tests/pipelines/test_cycle.py)."""

from __future__ import annotations

import sys

import pytest

import pipelines.evaluate as shim


def run_main(argv, tmp_path, monkeypatch, capsys):
    """Run the shim's ``main()`` in a fresh root; return (exit code, stderr lines)."""
    monkeypatch.setenv("FORECAST_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv("FORECAST_CLI_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["pipelines.evaluate", f"hydra.run.dir={tmp_path}/h", *argv])
    with pytest.raises(SystemExit) as e:
        shim.main()
    return e.value.code, capsys.readouterr().err.strip().splitlines()


def test_a_root_without_a_store_is_one_line(tmp_path, monkeypatch, capsys):
    code, err = run_main(["version=3"], tmp_path, monkeypatch, capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error:"), err
    assert str(tmp_path / "mlflow.db") in err[0] and "does not exist" in err[0]


def test_nothing_to_evaluate_is_one_line(tmp_path, monkeypatch, capsys):
    code, err = run_main(["alias=null"], tmp_path, monkeypatch, capsys)
    assert code == 2 and len(err) == 1 and "nothing to evaluate" in err[0], err
