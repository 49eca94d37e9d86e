"""Truncated backpropagation through time (TBPTT) for nets with an output at every step.

A long sequence is cut into chunks of ``k1`` steps. The recurrent state is carried from chunk to
chunk but detached, so no gradient crosses a chunk boundary. Inside a chunk gradients flow through
the last ``k2 <= k1`` steps only: the first ``k1 - k2`` steps run without a graph and just advance
the state; the loss is taken over the last ``k2`` outputs. One optimiser step per chunk.

Nets qualify by having ``forward_sequence(x (B, T, ...), state=None) -> (out (B, T, ...), state)``
(an output after every input step) and no backward direction: a bidirectional net reads the
future of the chunk, and a net whose loss reads only the final state has nothing to truncate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn


def check_tbptt(net: nn.Module, k1: int, k2: int | None) -> int:
    """Refuse TBPTT for nets it does not fit; return the effective ``k2``.

    Args:
        net: the network.
        k1: chunk length (> 0).
        k2: steps of backpropagation per chunk, 0 < k2 <= k1 (None: k1).

    Returns:
        k2.
    """
    name = type(net).__name__
    if getattr(net, "bidirectional", False):
        raise ValueError(
            f"truncated BPTT: {name} is bidirectional; its backward direction reads the future "
            "of every chunk, so chunks cannot be cut. Use bidirectional=false or full BPTT."
        )
    if not callable(getattr(net, "forward_sequence", None)):
        raise ValueError(
            f"truncated BPTT: {name} has no forward_sequence (an output at every step); its loss "
            "reads only the final state, so there is nothing to truncate. Use full BPTT."
        )
    if k1 <= 0:
        raise ValueError(f"tbptt_k1: expected > 0, got {k1}")
    k2 = k1 if k2 is None else k2
    if not 0 < k2 <= k1:
        raise ValueError(f"tbptt_k2: expected 0 < k2 <= k1 = {k1}, got {k2}")
    return k2


def detach_state(state: Any) -> Any:
    """Detach every tensor of a (nested tuple/list) recurrent state."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple | list):
        return type(state)(detach_state(s) for s in state)
    return state


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
        k1: chunk length.
        k2: steps with gradient at the end of each chunk.
        loss_fn: ``loss(pred, target, mask) -> scalar``.
        step: called with each chunk's loss; does backward, clipping and the optimiser step.

    Returns:
        The detached loss of every chunk.
    """
    if inputs.shape[:2] != targets.shape[:2]:
        raise ValueError(
            f"truncated BPTT: inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} "
            "must share (B, T)"
        )
    state: Any = None
    losses: list[Tensor] = []
    for lo in range(0, inputs.shape[1], k1):
        hi = min(lo + k1, inputs.shape[1])
        cut = max(lo, hi - k2)
        if cut > lo:
            with torch.no_grad():
                _, state = net.forward_sequence(inputs[:, lo:cut], detach_state(state))
        out, state = net.forward_sequence(inputs[:, cut:hi], detach_state(state))
        loss = loss_fn(out, targets[:, cut:hi], None if mask is None else mask[:, cut:hi])
        step(loss)
        losses.append(loss.detach())
        state = detach_state(state)
    return losses
