"""The scheduled cycle's state: one small JSON file beside the store, replaced atomically."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from forecast.errors import ForecastError

# the steps of one cycle, in order; ``None`` between cycles
STEPS = ("train", "promote", "forecast")


class CycleStateError(ForecastError):
    """The state file exists but cannot be read as a cycle state."""


@dataclass
class CycleState:
    """Where the cycle stands.

    Args:
        fingerprint: data fingerprint the last completed cycle ran on.
        version: the model version the last completed cycle registered (or kept), if any.
        forecast: the last forecast file written.
        step: the step a running (or killed) cycle has reached; None between cycles.
        pending: the fingerprint of the data the running cycle works on.
        attempt: cycles started so far (names the running cycle's checkpoint folder).
        run_id: the running cycle's training run, once trained.
        candidate: the running cycle's registered version, once trained (None: not registered).
        decision: the running cycle's promotion decision in words.
        cycle_id: the running cycle's id, tagged on its training run (``cycle/id``) so a resume
            finds a version that run registered before the state could record it.
    """

    fingerprint: str | None = None
    version: str | None = None
    forecast: str | None = None
    step: str | None = None
    pending: str | None = None
    attempt: int = 0
    run_id: str | None = None
    candidate: str | None = None
    decision: str | None = None
    cycle_id: str | None = None


def load_state(path: Path) -> CycleState:
    """The state in ``path``, or a fresh one when the file does not exist."""
    if not path.exists():
        return CycleState()
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
        known = {f.name for f in fields(CycleState)}
        state = CycleState(**{k: v for k, v in raw.items() if k in known})
    except (OSError, ValueError, TypeError) as e:
        raise CycleStateError(
            f"cycle state file {path} is unreadable ({e}); remove it to start afresh"
        ) from e
    if state.step is not None and state.step not in STEPS:
        raise CycleStateError(f"cycle state file {path} names unknown step '{state.step}'")
    return state


def save_state(path: Path, state: CycleState) -> None:
    """Write ``state`` to a temporary sibling, flush it to disk, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(asdict(state), f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
