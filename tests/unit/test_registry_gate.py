"""What keeps a model out of the registry, and what keeps two models from one alias."""

from __future__ import annotations

import math

from forecast.errors import DataError
from forecast.runs import promote
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


class _Champion:
    """A loaded champion as promotion sees it: metadata only (scores come from ``evaluate``)."""

    def __init__(self, metadata):
        self.metadata = metadata

    def unwrap_python_model(self):
        return self


def _contest(champion_meta, evaluate, force=False, candidate=0.5, meta=META):
    return promote._contest(
        meta, _Champion(champion_meta), "3", candidate, force, 0.02, 4, evaluate
    )


def test_a_champion_of_another_task_is_a_refusal_naming_the_difference():
    other = {**META, "horizon": 96}
    promoted, reason, score = _contest(other, lambda m: 1.0)
    assert not promoted and score is None
    assert "refused" in reason and "horizon 6 != champion's 96" in reason
    assert "force=true overrides" in reason
    promoted, reason, score = _contest(other, lambda m: 1.0, force=True)  # then it must still win
    assert promoted and score == 1.0 and "forced" in reason
    promoted, _, _ = _contest(other, lambda m: 0.1, force=True)
    assert not promoted  # force never replaces a better champion


def test_a_champion_that_cannot_be_evaluated_is_a_refusal_not_a_win():
    def broken(model):
        raise DataError("forecast shape (1, 6, 1, 8, 8) does not match truth (1, 6, 1, 16, 16)")

    promoted, reason, _ = _contest(dict(META), broken)
    assert not promoted and "cannot be evaluated" in reason and "does not match" in reason
    promoted, reason, _ = _contest(dict(META), broken, force=True)
    assert promoted and reason.startswith("promoted:")


def test_same_task_competes_on_the_backtest():
    assert _contest(dict(META), lambda m: 1.0)[0]
    kept, reason, _ = _contest(dict(META), lambda m: 0.505)
    assert not kept and "does not beat" in reason


def test_a_key_one_side_lacks_is_not_a_difference_and_is_named():
    older = {k: v for k, v in META.items() if k != "time_step"}  # written before time_step
    assert task_differences(META, older) == [] and task_differences(older, META) == []
    assert promote.unknown_task_keys(META, older) == ["time_step (not in champion's metadata)"]
    assert promote.unknown_task_keys(older, META) == ["time_step (not in candidate's metadata)"]
    promoted, reason, score = _contest(older, lambda m: 1.0)
    assert promoted and score == 1.0 and "refused" not in reason
    assert "not compared: time_step (not in champion's metadata)" in reason
    other = {**older, "horizon": 96}  # a real difference still refuses
    assert not _contest(other, lambda m: 1.0)[0]
