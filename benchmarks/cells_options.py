"""Options measured by `python -m benchmarks.cells`: torch.compile, CUDA graphs, bf16 ceiling.

- torch.compile (`--compile`): the peephole biLSTM of part 1 compiled whole (it graph-breaks at
  the hand-written scan, which then runs eagerly), and a plain autograd loop over
  `LSTMCell.step` eager and with the step compiled. Compile time is the first call's time minus
  the median step, printed apart from the step time.
- CUDA graphs: the whole training step (forward, backward, Adam) captured once and replayed;
  only on CUDA, skipped with the reason printed elsewhere.
- bf16 ceiling of ConvLSTM: the gate convolutions of one training step of the part 2 model, run
  alone (forward, grad input where the model needs it, grad weight), fp32 vs bf16, NCHW and
  channels_last. Their time bounds the stack's, and their fp32/bf16 ratio is what the
  hardware and oneDNN allow bf16 to gain.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch._inductor.config
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.step_timing import median_step_seconds, train_step
from forecast.models.cells import LSTMCell
from forecast.models.recurrent import StackedRecurrent


class StepLoopLSTM(nn.Module):
    """Deep bidirectional LSTM as a plain autograd loop over `LSTMCell.step` (no custom BPTT).

    Args:
        input_size: features F.
        hidden_size: units H per direction.
        num_layers: depth; every layer is bidirectional.
        peephole: diagonal peepholes in every cell.
        compile_step: run each cell's step through `torch.compile`.
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int, peephole: bool, compile_step: bool
    ) -> None:
        super().__init__()
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.cells = nn.ModuleList(
            LSTMCell(size, hidden_size, peephole=peephole) for size in sizes for _ in range(2)
        )
        self.steps: list[Callable[..., tuple[Tensor, tuple[Tensor, Tensor]]]] = [
            torch.compile(cell.step) if compile_step else cell.step for cell in self.cells
        ]

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, F) -> (B, T, 2H)."""
        seq = x.transpose(0, 1)  # (T, B, F)
        t_len, batch = seq.shape[:2]
        for layer in range(len(self.cells) // 2):
            outs = []
            for k in range(2):
                cell = self.cells[2 * layer + k]
                xps = cell.project_input(seq).unbind(0)  # T x (B, G*H)
                zeros = seq.new_zeros(batch, cell.hidden_size)
                state = (zeros, zeros)  # given, not None: one compiled graph for every step
                hs: list[Tensor] = [zeros] * t_len
                for t in range(t_len - 1, -1, -1) if k else range(t_len):
                    hs[t], state = self.steps[2 * layer + k](xps[t], state)
                outs.append(torch.stack(hs))  # (T, B, H)
            seq = torch.cat(outs, dim=-1)  # (T, B, 2H)
        return seq.transpose(0, 1)


def first_call_seconds(step: Callable[[], None], device: torch.device) -> float:
    """Wall time of one call (for a compiled step: compilation plus one run)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_compile(device: torch.device, repeats: int) -> dict[str, float]:
    """Step seconds of compiled and eager peephole biLSTMs; "... compile s" keys: compile time."""
    torch.manual_seed(0)
    # A cold compile, as a fresh job would pay it: no inductor/FX caches from earlier runs.
    torch._inductor.config.force_disable_caches = True
    x = torch.randn(32, 96, 7, device=device)
    kw = dict(input_size=7, hidden_size=128, num_layers=2, bidirectional=True, peephole=True)
    ref = nn.LSTM(7, 128, 2, batch_first=True, bidirectional=True).to(device)
    ours = StackedRecurrent(**kw).to(device)
    ours_c = StackedRecurrent(**kw).to(device)
    ours_c.load_state_dict(ours.state_dict())
    whole = torch.compile(ours_c)
    loop = StepLoopLSTM(7, 128, 2, peephole=True, compile_step=False).to(device)
    loop_c = StepLoopLSTM(7, 128, 2, peephole=True, compile_step=True).to(device)
    steps = {
        "torch.nn.LSTM (reference)": train_step(ref, lambda: ref(x)[0]),
        "peephole LSTM (lstm_scan, eager)": train_step(ours, lambda: ours(x)[0]),
        "peephole LSTM, torch.compile(stack)": train_step(ours_c, lambda: whole(x)[0]),
        "peephole LSTMCell.step loop, eager": train_step(loop, lambda: loop(x)),
        "peephole LSTMCell.step loop, compiled step": train_step(loop_c, lambda: loop_c(x)),
    }
    first = {
        name: first_call_seconds(steps[name], device)
        for name in (
            "peephole LSTM, torch.compile(stack)",
            "peephole LSTMCell.step loop, compiled step",
        )
    }
    out = median_step_seconds(steps, device, repeats, warmup=1)
    for name, sec in first.items():
        out[f"{name} compile s"] = max(sec - out[name], 0.0)
    return out


def graphed_train_step(
    model: nn.Module, forward: Callable[[], Tensor], device: torch.device
) -> Callable[[], None]:
    """The whole training step captured in one CUDA graph; replaying it is the step.

    Adam runs with `capturable=True` so its step counter stays on the device; the side-stream
    warm-up lets the allocator and cuDNN/cuBLAS settle before capture.
    """
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, capturable=True)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            forward().float().pow(2).mean().backward()
            opt.step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        forward().float().pow(2).mean().backward()
        opt.step()
    return graph.replay


def conv_ceiling(
    device: torch.device,
    batch: int,
    t_len: int,
    c_in: int,
    hidden: list[int],
    k: int,
    grid: int,
    repeats: int,
) -> dict[str, float]:
    """Seconds of one training step's gate convolutions run alone, per dtype and layout.

    Per layer: the input conv over all B*T frames (grad input skipped for layer 0, whose input
    needs none) and T-1 state convs over B frames (the first state is zero). Each kind is timed
    once (median of `repeats`) and multiplied by its count.

    Returns:
        {"fp32 NCHW": s, "fp32 channels_last": s, "bf16 NCHW": s, "bf16 channels_last": s}.
    """
    kinds = []  # (count, frames, in channels, out channels, needs grad input)
    for layer, (a, c) in enumerate(zip([c_in, *hidden[:-1]], hidden, strict=True)):
        kinds.append((1, batch * t_len, a, 4 * c, layer > 0))
        kinds.append((t_len - 1, batch, c, 4 * c, True))
    out: dict[str, float] = {}
    for dtype, dname in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        for fmt, fname in (
            (torch.contiguous_format, "NCHW"),
            (torch.channels_last, "channels_last"),
        ):
            total = 0.0
            cache: dict[tuple[int, int, int, bool], float] = {}
            for count, frames, a, c, grad_in in kinds:
                key = (frames, a, c, grad_in)
                if key not in cache:
                    cache[key] = _conv_fwd_bwd_seconds(
                        device, dtype, fmt, frames, a, c, k, grid, grad_in, repeats
                    )
                total += count * cache[key]
            out[f"{dname} {fname}"] = total
    return out


def _conv_fwd_bwd_seconds(
    device: torch.device,
    dtype: torch.dtype,
    fmt: torch.memory_format,
    frames: int,
    c_in: int,
    c_out: int,
    k: int,
    grid: int,
    grad_in: bool,
    repeats: int,
) -> float:
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(frames, c_in, grid, grid, device=device, generator=gen, dtype=dtype)
    w = torch.randn(c_out, c_in, k, k, device=device, generator=gen, dtype=dtype)
    dy = torch.randn(frames, c_out, grid, grid, device=device, generator=gen, dtype=dtype)
    x, w, dy = (t.contiguous(memory_format=fmt) for t in (x, w, dy))
    x.requires_grad_(grad_in)
    w.requires_grad_()

    def run() -> None:
        F.conv2d(x, w, padding=k // 2).backward(dy)

    return median_step_seconds({"conv": run}, device, repeats, warmup=1)["conv"]
