"""Bad input at the command line: one ``error:`` line and exit 2, from each entry point's main.

The entry points run in-process (``sys.argv`` patched); tests/faults runs the whole catalogue, and
its slow test runs it as subprocesses.
"""

from __future__ import annotations

import sys

import pytest


def run_main(module, argv, tmp_path, monkeypatch, capsys):
    """Run ``module.main()`` with ``argv``; return (exit code, stderr lines)."""
    monkeypatch.setenv("FORECAST_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv("FORECAST_CLI_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", [module.__name__, *argv])
    with pytest.raises(SystemExit) as e:
        module.main()
    return e.value.code, capsys.readouterr().err.strip().splitlines()


def hydra_args(tmp_path):
    return ["logger=none", "trainer=smoke", f"hydra.run.dir={tmp_path / 'hydra'}"]


@pytest.mark.parametrize(
    ("override", "words"),
    [("trainer.max_epochz=3", "max_epochz"), ("model=no_such_model", "no_such_model")],
)
def test_hydra_composition_errors_are_one_line(tmp_path, monkeypatch, capsys, override, words):
    import pipelines.train as shim

    code, err = run_main(shim, [*hydra_args(tmp_path), override], tmp_path, monkeypatch, capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and words in err[0], err


def test_missing_data_path_names_path_and_key(tmp_path, monkeypatch, capsys):
    import pipelines.train as shim

    missing = tmp_path / "nowhere.zarr"
    args = [*hydra_args(tmp_path), "data=grid_store", f"data.source.path={missing}",
            "data.variables=[air]"]  # fmt: skip
    code, err = run_main(shim, args, tmp_path, monkeypatch, capsys)
    assert code == 2 and len(err) == 1, err
    assert str(missing) in err[0] and "data.source.path" in err[0]


def test_forecast_job_refuses_an_unreachable_store_in_one_line(tmp_path, monkeypatch, capsys):
    import pipelines.forecast as shim

    args = [f"hydra.run.dir={tmp_path / 'hydra'}", "logger.tracking_uri=http://127.0.0.1:9"]
    code, err = run_main(shim, args, tmp_path, monkeypatch, capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error:"), err
    assert "127.0.0.1:9" in err[0]


def test_server_refuses_bad_options(tmp_path, monkeypatch, capsys):
    import pipelines.serve as shim

    cases = [(["--threads", "0"], "--threads"), (["--predict-timeout", "-1"], "--predict-timeout")]
    for argv, words in cases:
        code, err = run_main(shim, ["models:/m@a", *argv], tmp_path, monkeypatch, capsys)
        assert code == 2 and words in err[-1], err
