"""What keeps a model out of the registry, and what keeps two models from one alias."""

from __future__ import annotations

import math

from forecast.runs.promote import task_differences
from forecast.tracking.registry import registration_refusal

META = {
    "variables": ["field"],
    "targets": ["field"],
    "grid": [16, 16],
    "patch": None,
    "n_sensors": None,
    "time_step": "0 days 06:00:00",
    "context": 12,
    "horizon": 6,
}


def test_finite_and_skilful_models_are_registered():
    assert registration_refusal({"val/rmse": 0.3}, True, skill=0.2, min_skill=0.0) is None
    assert registration_refusal({"val/rmse": 0.3}, True) is None  # finiteness only


def test_each_refusal_says_why():
    assert registration_refusal({"val/rmse": 0.3}, False) == "non-finite weights"
    assert "val/rmse" in registration_refusal({"val/rmse": math.inf}, True)
    worse = registration_refusal({"val/rmse": 6.5e14}, True, skill=-1e20, min_skill=0.0)
    assert "does not beat persistence" in worse and "registry.min_skill=0" in worse
    marginal = registration_refusal({"val/rmse": 0.3}, True, skill=0.01, min_skill=0.05)
    assert "0.0100" in marginal
    assert "unknown" in registration_refusal({"val/rmse": 0.3}, True, skill=None, min_skill=0.0)


def test_same_task_has_no_differences():
    assert task_differences(META, dict(META)) == []


def test_each_task_difference_is_named():
    other = {**META, "horizon": 96, "variables": ["OT"], "time_step": "0 days 01:00:00"}
    diffs = task_differences(other, META)
    assert len(diffs) == 3
    assert "horizon 96 != champion's 6" in diffs
    assert any(d.startswith("variables ['OT']") for d in diffs)
    assert any(d.startswith("time_step") for d in diffs)
    sensors = {**META, "grid": None, "n_sensors": 8}
    assert [d.split()[0] for d in task_differences(sensors, META)] == ["grid", "n_sensors"]
