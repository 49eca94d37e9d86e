"""Every bad input of the catalogue is refused with one line that names it (no traceback).

The fast tier composes and runs each case in-process and checks the entry point's message
(:func:`pipelines._cli.describe`); tests/integration/test_cli_errors.py checks the exit code and
the single ``error:`` line through each pipeline's ``main``. The slow test runs every case as a
subprocess, as a user types it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CONF, compose_train
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from benchmarks.fault_cases import train_cases
from forecast.runs.train import train
from pipelines._cli import describe

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["trainer=smoke", "logger=none", "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    out = train_cases(tmp)
    if not torch.cuda.is_available():
        out["gpu on a CPU host"] = (["trainer=gpu"], "trainer.accelerator")
    return tmp, out


def run_case(tmp: Path, overrides: list[str]) -> str:
    """Compose and train in-process; the one-line message the entry point would print."""
    try:
        cfg = compose_train([*QUICK, *overrides])
        with open_dict(cfg):
            cfg.paths.root_dir = str(tmp)
            cfg.paths.output_dir = str(tmp / "out")
        train(cfg)
    except Exception as e:  # noqa: BLE001 (the boundary's own classification is under test)
        message = describe(e)
        assert message is not None, f"{type(e).__name__} would print a traceback: {e}"
        return message
    raise AssertionError(f"{overrides} was accepted")


def test_every_bad_training_input_is_one_clear_line(cases):
    tmp, table = cases
    failures = []
    for name, (overrides, words) in sorted(table.items()):
        message = run_case(tmp, overrides)
        if words not in message or "\n" in message:
            failures.append(f"{name}: {message!r} lacks {words!r}")
    assert not failures, "\n".join(failures)


def test_traceback_with_hydra_full_error(tmp_path, monkeypatch):
    import pipelines.train as shim
    from forecast.errors import ConfigError

    monkeypatch.setenv("FORECAST_ROOT", str(tmp_path))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.delenv("FORECAST_CLI_DEBUG", raising=False)
    run_dir = f"hydra.run.dir={tmp_path / 'hydra'}"
    monkeypatch.setattr(sys, "argv", ["pipelines.train", *QUICK, run_dir, "data.batch_size=0"])
    with pytest.raises(ConfigError, match="data.batch_size"):
        shim.main()


# one case per path an error takes to the boundary: Hydra's composition (unknown key, bad
# override), the config checks, the data module's checks (a file, its contents); the fast tier
# checks every case's message in-process and test_cli_errors the exit code through main()
AS_TYPED = (
    "unknown key", "bad override syntax", "batch size 0", "tbptt on bidirectional net",
    "missing data path", "csv with unparseable dates",
)  # fmt: skip


@pytest.mark.slow
def test_bad_training_inputs_as_a_user_types_them(cases):
    """One case per error path through ``python -m pipelines.train``: exit 2, one line."""
    tmp, table = cases
    table = {name: table[name] for name in AS_TYPED}
    env = {**os.environ, "FORECAST_ROOT": str(tmp), "OMP_NUM_THREADS": "1"}
    for key in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR", "FORECAST_CLI_DEBUG"):
        env.pop(key, None)
    failures = []
    for name, (overrides, words) in sorted(table.items()):
        proc = subprocess.run(
            [sys.executable, "-m", "pipelines.train", *QUICK, *overrides],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        ok = proc.returncode == 2 and len(lines) == 1 and words in lines[0]
        if not ok or "Traceback" in proc.stderr:
            failures.append(f"{name}: rc={proc.returncode} {proc.stderr[-400:]!r}")
    assert not failures, "\n".join(failures)


MODELS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
DATA = sorted(p.stem for p in (ROOT / "conf" / "data").glob("*.yaml"))
TRAINERS = sorted(p.stem for p in (ROOT / "conf" / "trainer").glob("*.yaml"))


def passes_validation(overrides: list[list[str]]) -> None:
    from forecast.runs.validate import validate

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):  # once: ~0.2 s each
        for extra in overrides:
            validate(compose(config_name="train", overrides=extra))


def test_every_shipped_model_passes_validation():
    """The checks refuse bad values only: every model option passes."""
    passes_validation([[f"model={m}"] for m in MODELS])


@pytest.mark.slow
def test_every_shipped_data_and_trainer_option_passes_validation():
    cpu = [t for t in TRAINERS if t != "gpu" or torch.cuda.is_available()]
    passes_validation([[f"data={d}"] for d in DATA] + [[f"trainer={t}"] for t in cpu])
