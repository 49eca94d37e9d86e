"""The cycle's state file: atomic round trip, clear errors for a damaged file."""

from __future__ import annotations

import pytest

from forecast.runs.cycle_state import CycleState, CycleStateError, load_state, save_state


def test_missing_file_is_a_fresh_state(tmp_path):
    assert load_state(tmp_path / "state.json") == CycleState()


def test_round_trip_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "cycle" / "state.json"
    state = CycleState(fingerprint="abc", step="promote", pending="def", attempt=3, candidate="2")
    save_state(path, state)
    assert load_state(path) == state
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_damaged_or_unknown_state_is_refused_with_the_path(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(CycleStateError, match="state.json is unreadable"):
        load_state(path)
    path.write_text('{"step": "dance"}')
    with pytest.raises(CycleStateError, match="unknown step 'dance'"):
        load_state(path)
