"""Truncated backpropagation through time, TBPTT(k1, k2) (Williams & Peng 1990; Sutskever 2013).

An update every ``k1`` steps; its loss holds the ``k1`` outputs produced since the previous
update, so every output step enters exactly one loss. The graph reaches back ``k2`` steps from
the update: for ``k2 > k1`` the previous ``k2 - k1`` steps are re-run with a graph from the
detached state saved ``k2`` steps back (their outputs were already in the previous loss and are
dropped); for ``k2 < k1`` the first ``k1 - k2`` outputs of the chunk are computed without a graph
and enter the loss as constants (their errors are counted, not backpropagated, as in TBPTT(k1, k2)
with a short backward window). Between updates the state is carried detached.

Nets qualify by having ``forward_sequence(x (B, T, ...), state=None) -> (out (B, T, ...), state)``
(an output after every input step) and no backward direction anywhere: a bidirectional module
reads the future of the chunk, and a net whose loss reads only the final state has nothing to
truncate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from forecast.training.gradients import TrainingConfigError


def bidirectional_modules(net: nn.Module) -> list[str]:
    """Names of the modules of ``net`` (itself included) that run a backward direction."""
    found = []
    for name, module in net.named_modules():
        two_way = getattr(module, "bidirectional", False) is True
        if two_way or getattr(module, "num_directions", 1) == 2:
            found.append(name or type(net).__name__)
    return found


def check_tbptt(net: nn.Module, k1: int, k2: int | None) -> int:
    """Refuse TBPTT for nets it does not fit; return the effective ``k2``.

    Args:
        net: the network.
        k1: steps between updates (> 0).
        k2: steps of backpropagation per update (> 0; None: k1).

    Returns:
        k2.
    """
    name = type(net).__name__
    two_way = bidirectional_modules(net)
    if two_way:
        raise TrainingConfigError(
            f"truncated BPTT: {name} has bidirectional modules ({', '.join(two_way)}); a backward "
            "direction reads the future of every chunk, so chunks cannot be cut. Use "
            "bidirectional=false or full BPTT (tbptt_k1=null)."
        )
    if not callable(getattr(net, "forward_sequence", None)):
        raise TrainingConfigError(
            f"truncated BPTT: {name} has no forward_sequence (an output at every step); its loss "
            "reads only the final state, so there is nothing to truncate. Use full BPTT."
        )
    if k1 <= 0:
        raise TrainingConfigError(f"tbptt_k1: expected > 0, got {k1}")
    k2 = k1 if k2 is None else k2
    if k2 <= 0:
        raise TrainingConfigError(f"tbptt_k2: expected > 0 (or null for k1 = {k1}), got {k2}")
    return k2


def detach_state(state: Any) -> Any:
    """Detach every tensor of a (nested tuple/list) recurrent state."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple | list):
        return type(state)(detach_state(s) for s in state)
    return state


def _run(
    net: Any, inputs: Tensor, state: Any, lo: int, hi: int, cuts: Iterable[int], saved: dict
) -> tuple[list[Tensor], Any]:
    """Steps [lo, hi) from ``state``, split at ``cuts`` where a detached state is saved."""
    edges = [lo, *sorted(c for c in set(cuts) if lo < c < hi), hi]
    outs = []
    for a, b in zip(edges, edges[1:], strict=False):
        if a in cuts:
            saved[a] = detach_state(state)
        out, state = net.forward_sequence(inputs[:, a:b], state)
        outs.append(out)
    return outs, state


def truncated_bptt(
    net: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    mask: Tensor | None,
    k1: int,
    k2: int,
    loss_fn: Callable[[Tensor, Tensor, Tensor | None], Tensor],
    step: Callable[[Tensor], None],
) -> list[Tensor]:
    """Run TBPTT(k1, k2) over one batch of long sequences.

    Args:
        net: a net with ``forward_sequence``.
        inputs: (B, T, ...) input sequence.
        targets: (B, T, ...) per-step targets aligned with ``inputs``.
        mask: bool, shaped like ``targets`` (True = observed), or None.
        k1: steps between updates.
        k2: steps the graph reaches back from each update.
        loss_fn: ``loss(pred, target, mask) -> scalar``.
        step: called with each update's loss; does backward, clipping and the optimiser step.

    Returns:
        The detached loss of every update.
    """
    if inputs.shape[:2] != targets.shape[:2]:
        raise TrainingConfigError(
            f"truncated BPTT: inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} "
            "must share (B, T)"
        )
    steps = inputs.shape[1]
    bounds = [(lo, min(lo + k1, steps)) for lo in range(0, steps, k1)]
    cuts = {max(0, hi - k2) for _, hi in bounds}  # where each update's graph starts
    saved: dict[int, Any] = {}
    state: Any = None  # detached state at the start of the current chunk
    losses: list[Tensor] = []
    for lo, hi in bounds:
        start = max(0, hi - k2)
        early: list[Tensor] = []
        if start < lo:  # k2 > k1: re-run the previous steps with a graph
            _, graph_state = _run(net, inputs, saved[start], start, lo, (), {})
        else:
            graph_state = state
        if start > lo:  # k2 < k1: outputs outside the backward window, as constants
            with torch.no_grad():
                early, graph_state = _run(net, inputs, state, lo, start, cuts, saved)
        outs, end_state = _run(net, inputs, graph_state, max(lo, start), hi, cuts, saved)
        pred = torch.cat([*early, *outs], dim=1)
        loss = loss_fn(pred, targets[:, lo:hi], None if mask is None else mask[:, lo:hi])
        step(loss)
        losses.append(loss.detach())
        state = detach_state(end_state)
        for key in [k for k in saved if k < start]:
            del saved[key]  # later updates start at or after this one's start
    return losses


def sequence_pairs(
    batch: dict[str, Tensor], labelled: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Per-step (inputs, targets, mask) of a batch for TBPTT.

    Synced labelling (a cross-entropy task): inputs ``x``, per-step labels ``y``. Otherwise
    one-step-ahead over the whole window: inputs ``[x, y][:-1]``, targets ``[x, y][1:]``.
    """
    x, y = batch["x"], batch["y"]
    if labelled:
        if y.shape[:2] != x.shape[:2]:
            raise ValueError(
                "truncated BPTT labelling needs one label per input step, got x "
                f"{tuple(x.shape)} and labels {tuple(y.shape)}"
            )
        return x, y, batch.get("y_mask")
    if x.shape[2:] != y.shape[2:]:
        raise ValueError(
            "truncated BPTT one-step-ahead training needs targets shaped like inputs, got "
            f"x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    seq = torch.cat([x, y], dim=1)
    xm, ym = batch.get("x_mask"), batch.get("y_mask")
    mask = None
    if xm is not None or ym is not None:
        xm = torch.ones_like(x, dtype=torch.bool) if xm is None else xm
        ym = torch.ones_like(y, dtype=torch.bool) if ym is None else ym
        mask = torch.cat([xm, ym], dim=1)[:, 1:]
    return seq[:, :-1], seq[:, 1:], mask
