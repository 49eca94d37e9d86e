"""SIGKILL at 10 seeded random moments of the scheduled cycle: nothing good is lost, ever.

After each kill (:func:`benchmarks.fault_kills.check`): every visible checkpoint verifies and
the one a resume picks loads, ``champion`` is a complete model that loads and forecasts, every
visible forecast file is complete, and the run after a kill completes with exit 0.
"""

from __future__ import annotations

import collections

import pytest

from benchmarks.fault_kills import kill_trials

KILLS = 10


@pytest.mark.slow
def test_sigkill_at_ten_seeded_moments_of_the_cycle(tmp_path):
    trials, reference_s, completed = kill_trials(tmp_path, KILLS, seed=0)
    killed = [t for t in trials if t.killed]
    phases = collections.Counter(t.phase for t in killed)
    report = [f"{t.target} +{t.delay:.1f} s hit {t.phase}: {t.problems}" for t in trials]
    print(f"reference cycle {reference_s:.1f} s; kills by phase {dict(phases)}", *report, sep="\n")
    assert len(killed) == KILLS, report
    assert not [p for t in trials for p in t.problems], report
    assert completed, "the run after the last trial did not complete"
    # the kills spread over the cycle: training, promotion and the forecast write were each hit
    hit = set(phases)
    assert hit & {"training", "checkpoint write", "test/registration", "registration"}, phases
    assert {"promotion", "forecast write"} <= hit, (phases, reference_s)
