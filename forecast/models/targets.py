"""Where a net's forecast targets sit among its inputs (sensor data may forecast a subset)."""

from __future__ import annotations

from collections.abc import Sequence


def target_positions(variables: Sequence[str], targets: Sequence[str]) -> list[int] | None:
    """Feature positions of ``targets`` among ``variables``.

    Returns:
        ``[]`` when every input is a target (``targets`` empty or equal to ``variables``), the
        positions when every target is an input, None when some target is not (the caller
        refuses it in its own words).
    """
    inputs, wanted = list(variables), list(targets)
    if not wanted or wanted == inputs:
        return []
    if any(t not in inputs for t in wanted):
        return None
    return [inputs.index(t) for t in wanted]
