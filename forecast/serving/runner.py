"""An inference-only form of a served net: traced, frozen and fused once at load, checked, or eager.

Why: a single-sample ConvLSTM forecast is ~36 small convolutions and a few hundred small
pointwise ops, driven by a Python loop with shape checks at every step. Eager, that Python costs
~4 of ~19 ms (the convolutions already run near one core's peak); a traced, frozen graph has no
Python in the loop: 19 -> 15 ms at one intra-op thread for the benchmark ConvLSTM on this 2-core
CPU. ``optimize_for_inference`` moves the convolutions to oneDNN with weights laid out once:
no faster at one thread, but batch-1 convolutions then use more threads (10 ms at two in a quiet
process, where eager batch-1 convolutions stay on one thread and take 19 ms).

TorchScript tracing is deprecated in recent PyTorch, and a trace records one path through Python
control flow. So the trace is used only when it reproduces the eager net on probe batches of two
sizes (within float32 round-off); otherwise, or where tracing is unavailable, the eager net
serves. Either way the served function is the one both servers call, so they answer alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

# relative round-off allowed between the fused graph and the eager net: oneDNN and the eager
# kernels sum in a different order (measured max |diff| ~1e-6 on outputs of order 1)
RTOL, ATOL = 1e-4, 1e-4


@dataclass(frozen=True)
class Runner:
    """The function that maps a normalised batch to the net's output, and how it was made.

    Attributes:
        fn: ``(B, *sample_shape)`` float32 tensor -> the net's output for it.
        kind: ``"torchscript"`` (traced, frozen, optimised) or ``"eager"``.
        reason: why the eager net serves (empty for TorchScript).
    """

    fn: Callable[[Tensor], Tensor]
    kind: str
    reason: str = ""


def _traced(net: nn.Module, probe: Tensor) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        # the deprecation notice and the tracer's shape-check warnings: the trace is verified
        # against the eager net right after, which is what those warnings ask for
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, probe, check_trace=False)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))


def inference_runner(net: nn.Module, probe: Tensor) -> Runner:
    """Trace, freeze and optimise ``net`` for inference; keep it only if it matches eager.

    Args:
        net: the network in eval mode, ``(B, *sample_shape) -> (B, *output_shape)``.
        probe: a normalised input batch ``(1, *sample_shape)``, float32 (seeded noise will do).
            The check also runs a batch of 2 (so the trace must not fix the batch size) and the
            probe negated (a branch on the data's sign or size shows); a net whose Python
            control flow depends on the data in subtler ways may still pass: serve those eager.

    Returns:
        A :class:`Runner`; ``kind == "eager"`` with a reason when the trace is unusable.
    """
    if probe.dim() < 2 or probe.shape[0] != 1:
        raise ValueError(f"probe must be one sample (1, *sample_shape), got {tuple(probe.shape)}")
    if net.training:
        raise ValueError("net must be in eval mode (net.eval()) before it is traced")
    pair = torch.cat([probe, probe * 0.5 + 0.1])  # a second, different sample
    try:
        with torch.no_grad():
            fused = _traced(net, probe)
        with torch.inference_mode():
            for x in (probe, pair, -probe):  # the last runs the optimised plan for batch 1
                want, got = net(x), fused(x)
                if got.shape != want.shape or not torch.allclose(got, want, RTOL, ATOL):
                    diff = (got - want).abs().max().item() if got.shape == want.shape else "shape"
                    return Runner(net, "eager", f"trace differs from eager net ({diff})")
    except (RuntimeError, AttributeError, TypeError, ValueError) as e:  # untraceable net
        return Runner(net, "eager", f"tracing failed: {type(e).__name__}: {str(e)[:200]}")
    return Runner(fused, "torchscript")
