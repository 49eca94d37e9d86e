"""Gradient flow through time: ||dL/dh_k|| per lag k on one batch (vanishing/exploding).

The lecture's picture: dL_T/ds_k carries a product of T - k Jacobians, so its norm shrinks or grows
geometrically with the lag. It is measured on the user's own model: the first recurrent stack
of the net records its last layer's hidden state at every step (the stacks' documented
``probe`` list; nothing is patched), each state keeps its ``.grad`` (the total derivative,
through every later step), and the norm is plotted against the lag. Nets without such a stack
(torch's fused LSTM, non-recurrent nets) fall back to the inputs, dL/dx_k.

This is the one implementation: the opt-in callback (``callbacks=with_gradient_flow``) and the
run's ``plots/gradient_flow.png`` both call it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from forecast.models.conv_recurrent import ConvRecurrentStack
from forecast.models.recurrent import StackedRecurrent
from forecast.training.losses import MaskedMSE


def find_probe(net: nn.Module) -> nn.Module | None:
    """The first recurrent stack of ``net`` that records its states (a ``probe`` attribute)."""
    for module in net.modules():
        if isinstance(module, ConvRecurrentStack | StackedRecurrent):
            return module
    return None


@contextmanager
def probing(stack: nn.Module | None) -> Iterator[list[Tensor]]:
    """Collect the hidden states ``stack`` records while the block runs."""
    states: list[Tensor] = []
    if stack is None:
        yield states
        return
    setattr(stack, "probe", states)  # noqa: B010 (a plain attribute, not a submodule)
    try:
        yield states
    finally:
        setattr(stack, "probe", None)  # noqa: B010


def gradient_flow(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    mask: Tensor | None = None,
    loss_fn: Callable[[Tensor, Tensor, Tensor | None], Tensor] | None = None,
    forward: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Any]:
    """||dL/dh_k|| (or ||dL/dx_k||) for every context step k of one batch.

    Args:
        net: the network (put in eval mode for the measurement, then restored).
        x: (B, T, ...) context (plain tensors, not inference-mode ones).
        y: (B, horizon, ...) targets; NaN or masked targets are ignored.
        mask: bool like ``y`` (True = observed), or None.
        loss_fn: ``loss(pred, y, mask)`` (default: masked MSE).
        forward: ``x -> pred`` when the net needs more than ``x`` (default ``net(x)``).

    Returns:
        ``{"lag": (T,) int, "norm": (T,) float, "what": "hidden" | "input"}``; lag 0 is the last
        context step; norms are per sample (batch norm / sqrt(B)).
    """
    steps = x.shape[1]
    x = x.detach().clone().requires_grad_(True)
    loss_fn = loss_fn or MaskedMSE()
    run = forward or net
    was_training = net.training
    net.eval()
    try:
        with torch.enable_grad(), probing(find_probe(net)) as states:
            pred = run(x)
            for h in states[:steps]:
                if h.requires_grad:
                    h.retain_grad()
            loss = loss_fn(pred, y, mask)
            net.zero_grad(set_to_none=True)
            if loss.requires_grad:  # else the forecast ignores x (climatology): every grad is 0
                loss.backward()
    finally:
        net.zero_grad(set_to_none=True)
        net.train(was_training)
    hs = states[:steps]
    use_hidden = len(hs) == steps and all(h.grad is not None for h in hs)
    x_grad = x.grad if x.grad is not None else torch.zeros_like(x)
    grads = [h.grad for h in hs] if use_hidden else list(x_grad.unbind(1))
    norms = torch.stack([g.float().norm() / x.shape[0] ** 0.5 for g in grads])  # type: ignore[union-attr]
    return {
        "lag": torch.arange(steps),
        "norm": norms.flip(0).detach().cpu(),  # lag 0 first
        "what": "hidden" if use_hidden else "input",
    }


def plot_gradient_flow(flow: dict[str, Any], title: str = "") -> Any:
    """A log-scale plot of the norm against the lag; returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.semilogy(flow["lag"].numpy(), flow["norm"].clamp(min=1e-30).numpy(), marker="o")
    sym = "h" if flow["what"] == "hidden" else "x"
    ax.set_xlabel("lag k (steps before the last context step)")
    ax.set_ylabel(f"||dL/d{sym}_(T-k)||")
    ax.set_title(title or "gradient flow through time")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig
