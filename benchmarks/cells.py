"""Training-step time of the recurrent family against references measured in the same run.

Run: python -m benchmarks.cells [--repeats N] [--conv-repeats N] [--skip-conv] [--skip-vector]
[--threads N] [--compile] [--skip-ceiling]
Prints a table per part and, as the very last line, one JSON object with every figure.

Part 1: 2-layer bidirectional stacks, hidden 128, input 7, length 96, batch 32; ratio to
torch.nn.LSTM of the same size. Part 2: ConvLSTM at OpenSTL's Moving MNIST size (4 layers x 128
channels, 5x5 kernels, 16x16 grid after 4x4 patching, 10 context + 10 teacher-forced frames),
fp32 and bf16 autocast; ratio to a textbook ConvLSTM (separate x and h convolutions per step per
layer) in fp32, plus the achieved GFLOP/s of the gate convolutions, counted analytically.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import torch
from torch import Tensor, nn

from benchmarks.step_timing import median_step_seconds, train_step
from forecast.models.conv_recurrent import ConvRecurrentStack
from forecast.models.recurrent import StackedRecurrent


def bench_vector(device: torch.device, repeats: int) -> dict[str, float]:
    """Part 1: median step seconds per variant (keys) for 2-layer bidirectional stacks."""
    torch.manual_seed(0)
    x = torch.randn(32, 96, 7, device=device)
    kw = dict(input_size=7, hidden_size=128, num_layers=2, bidirectional=True)
    variants: dict[str, nn.Module] = {
        "torch.nn.LSTM (reference)": nn.LSTM(7, 128, 2, batch_first=True, bidirectional=True),
        "LSTM (StackedRecurrent, torch path)": StackedRecurrent(**kw),
        "LSTM (custom cells, lstm_scan)": StackedRecurrent(**kw, impl="cells"),
        "peephole LSTM": StackedRecurrent(**kw, peephole=True),
        "coupled-gate LSTM": StackedRecurrent(**kw, coupled=True),
        "GRU": StackedRecurrent(**kw, cell="gru"),
        "vanilla RNN": StackedRecurrent(**kw, cell="rnn"),
    }
    steps = {}
    for name, model in variants.items():
        model.to(device)
        steps[name] = train_step(model, lambda m=model: m(x)[0])
    if device.type == "cuda":
        from benchmarks.cells_options import graphed_train_step

        graphed = StackedRecurrent(**kw, peephole=True).to(device)
        steps["peephole LSTM, CUDA graph"] = graphed_train_step(
            graphed, lambda: graphed(x)[0], device
        )
    return median_step_seconds(steps, device, repeats)


class TextbookConvLSTM(nn.Module):
    """Reference: per step and layer, one conv of x_t and one of h (as OpenSTL), no batching."""

    def __init__(self, in_channels: int, hidden: list[int], kernel_size: int) -> None:
        super().__init__()
        sizes = [in_channels, *hidden]
        pad = kernel_size // 2
        self.conv_x = nn.ModuleList(
            nn.Conv2d(a, 4 * b, kernel_size, padding=pad)
            for a, b in zip(sizes[:-1], hidden, strict=True)
        )
        self.conv_h = nn.ModuleList(
            nn.Conv2d(b, 4 * b, kernel_size, padding=pad, bias=False) for b in hidden
        )
        self.hidden = hidden

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, C, H, W) -> last layer outputs (B, T, Ch, H, W)."""
        b, t_len, _, height, width = x.shape
        hs = [x.new_zeros(b, c, height, width) for c in self.hidden]
        cs = [x.new_zeros(b, c, height, width) for c in self.hidden]
        outs = []
        for t in range(t_len):
            inp = x[:, t]
            for layer in range(len(self.hidden)):
                gates = self.conv_x[layer](inp) + self.conv_h[layer](hs[layer])
                i, f, g, o = gates.chunk(4, dim=1)
                cs[layer] = torch.sigmoid(f) * cs[layer] + torch.sigmoid(i) * torch.tanh(g)
                hs[layer] = torch.sigmoid(o) * torch.tanh(cs[layer])
                inp = hs[layer]
            outs.append(inp)
        return torch.stack(outs, dim=1)


def gate_conv_flops(
    batch: int, t_len: int, c_in: int, hidden: list[int], k: int, grid: int
) -> float:
    """Training-step FLOPs of the gate convolutions: 3x forward (forward, grad input, grad weight).

    Per conv 2 * B * H * W * C_out * C_in * k^2; x-convs on all T steps, h-convs on T-1 steps
    (the first step's state is zero, so that conv is not useful work).
    """
    fwd = 0.0
    for a, c in zip([c_in, *hidden[:-1]], hidden, strict=True):
        per = 2 * batch * grid * grid * 4 * c * k * k
        fwd += per * (a * t_len + c * (t_len - 1))
    return 3 * fwd


def bench_conv(device: torch.device, repeats: int) -> dict[str, float]:
    """Part 2: median step seconds, GFLOP/s and bf16 error of the ConvLSTM variants."""
    torch.manual_seed(0)
    batch = 16 if device.type == "cuda" else 4
    c_in, hidden, k, grid, t_len = 16, [128] * 4, 5, 16, 20
    x = torch.randn(batch, t_len, c_in, grid, grid, device=device)
    textbook = TextbookConvLSTM(c_in, hidden, k).to(device)
    ours = ConvRecurrentStack(c_in, hidden, k).to(device)
    with torch.no_grad():  # same weights, so the outputs can be compared
        for layer, cell in enumerate(ours.cells):
            cell.weight_x.copy_(textbook.conv_x[layer].weight)
            cell.weight_h.copy_(textbook.conv_h[layer].weight)
            cell.bias.copy_(textbook.conv_x[layer].bias)
    ours_cl = ConvRecurrentStack(c_in, hidden, k, channels_last=True).to(device)
    ours_cl.load_state_dict(ours.state_dict())
    with torch.no_grad():
        ref = textbook(x)
        fp32_err = ((ours(x)[0] - ref).norm() / ref.norm()).item()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            bf16_out = ours(x)[0]
        bf16_err = ((bf16_out.float() - ref).norm() / ref.norm()).item()

    def autocast_bf16(fn: Callable[[], Tensor]) -> Callable[[], Tensor]:
        def run() -> Tensor:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return fn()

        return run

    steps = {
        "textbook ConvLSTM fp32 (reference)": train_step(textbook, lambda: textbook(x)),
        "ConvRecurrentStack fp32 NCHW": train_step(ours, lambda: ours(x)[0]),
        "ConvRecurrentStack fp32 channels_last": train_step(ours_cl, lambda: ours_cl(x)[0]),
        "ConvRecurrentStack bf16 autocast, C fp32": train_step(
            ours, autocast_bf16(lambda: ours(x)[0])
        ),
        "ConvRecurrentStack bf16 autocast channels_last, C fp32": train_step(
            ours_cl, autocast_bf16(lambda: ours_cl(x)[0])
        ),
        "textbook ConvLSTM bf16 autocast": train_step(textbook, autocast_bf16(lambda: textbook(x))),
    }
    if device.type == "cuda":
        from benchmarks.cells_options import graphed_train_step

        graphed = ConvRecurrentStack(c_in, hidden, k, channels_last=True).to(device)

        def graphed_forward() -> Tensor:
            # No autocast weight cache: cached casts would be freed outside the captured graph.
            with torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False):
                return graphed(x)[0]

        steps["ConvRecurrentStack bf16 channels_last, CUDA graph"] = graphed_train_step(
            graphed, graphed_forward, device
        )
    out: dict[str, float] = {"batch": batch, "frames": t_len}
    flops = gate_conv_flops(batch, t_len, c_in, hidden, k, grid)
    out["gate_conv_gflop_per_step"] = flops / 1e9
    out.update(median_step_seconds(steps, device, repeats, warmup=1))
    out["fp32_rel_error_vs_textbook"] = fp32_err
    out["bf16_rel_error_vs_fp32"] = bf16_err
    return out


def main() -> None:
    """Run the parts and print the tables and the final JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--conv-repeats", type=int, default=3)
    parser.add_argument("--skip-conv", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=0, help="intra-op threads for this run (0: torch default)"
    )
    parser.add_argument("--skip-vector", action="store_true")
    parser.add_argument(
        "--compile", action="store_true", help="also time torch.compile variants (compiles ~1 min)"
    )
    parser.add_argument(
        "--skip-ceiling", action="store_true", help="skip the bf16 gate-convolution ceiling"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # this benchmark process only
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    result: dict[str, object] = {"device": str(device)}
    result["threads"] = torch.get_num_threads()
    if device.type != "cuda":
        print("CUDA-graph variants skipped: no CUDA device (graphs capture CUDA kernels only)")
    if not args.skip_vector:
        vec = bench_vector(device, args.repeats)
        print("\n2-layer bidirectional, hidden 128, input 7, length 96, batch 32 (train step)")
        result.update(_print_vector(vec, "vector"))
    if args.compile:
        from benchmarks.cells_options import bench_compile

        comp = bench_compile(device, args.repeats)
        compile_s = {k[: -len(" compile s")]: v for k, v in comp.items() if k.endswith("compile s")}
        timed = {k: v for k, v in comp.items() if not k.endswith("compile s")}
        print("\ntorch.compile, peephole biLSTM of the table above (train step)")
        result.update(_print_vector(timed, "compile"))
        for name, sec in compile_s.items():
            print(f"compile time of {name!r}: {sec:.1f} s (not in the step time)")
        result["compile_s"] = {k: round(v, 1) for k, v in compile_s.items()}
    if not args.skip_conv:
        result.update(_run_conv(device, args.conv_repeats, not args.skip_ceiling))
    print(json.dumps(result))


def _print_vector(vec: dict[str, float], key: str) -> dict[str, object]:
    ref = vec["torch.nn.LSTM (reference)"]
    print(f"{'variant':44s} {'median ms':>10s} {'x torch.nn.LSTM':>16s}")
    for name, sec in vec.items():
        print(f"{name:44s} {sec * 1e3:10.1f} {sec / ref:16.2f}")
    return {
        f"{key}_ms": {k: round(v * 1e3, 2) for k, v in vec.items()},
        f"{key}_ratio": {k: round(v / ref, 3) for k, v in vec.items()},
    }


def _run_conv(device: torch.device, repeats: int, ceiling: bool) -> dict[str, object]:
    conv = bench_conv(device, repeats)
    cref = conv["textbook ConvLSTM fp32 (reference)"]
    gflop = conv["gate_conv_gflop_per_step"]
    print(
        f"\nConvLSTM 4x128, 5x5, 16x16, {conv['frames']} frames, batch {conv['batch']} "
        f"(train step; gate convs {gflop:.0f} GFLOP)"
    )
    print(f"{'variant':56s} {'median s':>9s} {'x textbook':>11s} {'GFLOP/s':>9s}")
    timed = {k: v for k, v in conv.items() if "ConvLSTM" in k or "Stack" in k}
    for name, sec in timed.items():
        print(f"{name:56s} {sec:9.3f} {sec / cref:11.2f} {gflop / sec:9.0f}")
    print(
        f"relative error fp32 vs textbook: {conv['fp32_rel_error_vs_textbook']:.2e}; "
        f"bf16 vs fp32: {conv['bf16_rel_error_vs_fp32']:.2e}"
    )
    out: dict[str, object] = {
        "conv_s": {k: round(v, 4) for k, v in timed.items()},
        "conv_ratio": {k: round(v / cref, 3) for k, v in timed.items()},
        "conv_gflops": {k: round(gflop / v, 1) for k, v in timed.items()},
        "conv_bf16_rel_error": conv["bf16_rel_error_vs_fp32"],
        "conv_fp32_rel_error": conv["fp32_rel_error_vs_textbook"],
    }
    if not ceiling:
        return out
    from benchmarks.cells_options import conv_ceiling

    ceil = conv_ceiling(device, int(conv["batch"]), int(conv["frames"]), 16, [128] * 4, 5, 16, 3)
    print("\nceiling: the same step's gate convolutions alone (fwd + grad input + grad weight)")
    print(f"{'dtype, layout':56s} {'s':>9s} {'x textbook':>11s} {'GFLOP/s':>9s}")
    for name, sec in ceil.items():
        print(f"{name:56s} {sec:9.3f} {sec / cref:11.2f} {gflop / sec:9.0f}")
    fp32_best = min(ceil["fp32 NCHW"], ceil["fp32 channels_last"])
    bf16_best = min(ceil["bf16 NCHW"], ceil["bf16 channels_last"])
    ours_bf16 = min(v for k, v in timed.items() if "Stack" in k and "bf16" in k)
    summary = {
        "hardware_bf16_over_fp32_speed": fp32_best / bf16_best,
        "best_possible_bf16_speedup_vs_textbook": cref / bf16_best,
        "ours_bf16_speedup_vs_textbook": cref / ours_bf16,
        "ours_bf16_fraction_of_ceiling": bf16_best / ours_bf16,
    }
    print(
        f"bf16/fp32 convolution speed (hardware + oneDNN): "
        f"{summary['hardware_bf16_over_fp32_speed']:.2f}x; bf16 convs alone would be "
        f"{summary['best_possible_bf16_speedup_vs_textbook']:.2f}x faster than the textbook "
        f"step; our best bf16 stack is {summary['ours_bf16_speedup_vs_textbook']:.2f}x, i.e. "
        f"{summary['ours_bf16_fraction_of_ceiling']:.0%} of that ceiling"
    )
    out["conv_ceiling_s"] = {k: round(v, 4) for k, v in ceil.items()}
    out["conv_ceiling_summary"] = {k: round(v, 3) for k, v in summary.items()}
    return out


if __name__ == "__main__":
    main()
