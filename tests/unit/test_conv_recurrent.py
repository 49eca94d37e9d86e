"""ConvRecurrentStack: shapes, state hand-over, no-input mode, norm, gradcheck, bad input."""

import pytest
import torch

from forecast.models.conv_recurrent import ConvRecurrentStack


def _x(b=2, t=4, c=3, h=5, w=7, seed=0, dtype=torch.float32):
    return torch.randn(b, t, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_shapes_and_states(cell):
    torch.manual_seed(0)
    stack = ConvRecurrentStack(3, [4, 6], kernel_size=3, cell=cell)
    out, states = stack(_x())
    assert stack.out_channels == 6
    assert out.shape == (2, 4, 6, 5, 7)
    assert len(states) == 2
    first = states[0][0] if cell == "lstm" else states[0]
    assert first.shape == (2, 4, 5, 7)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_carried_state_equals_one_long_run(cell):
    """Truncated BPTT: two calls with the state carried over give the same outputs as one call."""
    torch.manual_seed(1)
    stack = ConvRecurrentStack(3, [4, 4], cell=cell, peephole=cell == "lstm")
    x = _x(t=6)
    full, full_states = stack(x)
    a, states = stack(x[:, :2])
    b, states = stack(x[:, 2:], states)
    torch.testing.assert_close(torch.cat([a, b], 1), full)
    torch.testing.assert_close(states[-1], full_states[-1])


def test_no_input_mode_uses_states_only():
    torch.manual_seed(2)
    enc = ConvRecurrentStack(3, [4, 4])
    dec = ConvRecurrentStack(3, [4, 4])
    _, states = enc(_x())
    out, finals = dec(None, states=states, steps=3)
    assert out.shape == (2, 3, 4, 5, 7)
    # Changing the handed-over state changes the forecast; no input weight is read.
    out2, _ = dec(None, states=[(s[0] + 1, s[1]) for s in states], steps=3)
    assert not torch.allclose(out, out2)
    out.sum().backward()
    assert dec.cells[0].weight_x.grad is None
    assert dec.cells[0].weight_h.grad is not None


def test_group_norm_between_layers():
    torch.manual_seed(3)
    stack = ConvRecurrentStack(3, [4, 4], norm_groups=2)
    assert isinstance(stack.norms[0], torch.nn.GroupNorm)
    out, _ = stack(_x())
    assert out.shape == (2, 4, 4, 5, 7)
    with pytest.raises(ValueError, match="divisor of every hidden size, got 3 for 4"):
        ConvRecurrentStack(3, [4, 4], norm_groups=3)


def test_causal_in_time():
    torch.manual_seed(4)
    stack = ConvRecurrentStack(3, [4, 4])
    x = _x(t=5)
    y = x.clone()
    y[:, 3:] += 1.0
    out_x, _ = stack(x)
    out_y, _ = stack(y)
    torch.testing.assert_close(out_x[:, :3], out_y[:, :3])
    assert not torch.allclose(out_x[:, 3:], out_y[:, 3:])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradcheck_stack_float64(cell):
    torch.manual_seed(5)
    stack = ConvRecurrentStack(2, [2, 2], cell=cell, peephole=cell == "lstm").double()
    x = _x(b=1, t=2, c=2, h=3, w=3, dtype=torch.float64).requires_grad_()
    names = [n for n, _ in stack.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in stack.parameters())

    def fn(x, *ps):
        return torch.func.functional_call(stack, dict(zip(names, ps)), (x,))[0]

    # fast_mode: random Jacobian projections; the full Jacobian took minutes on a busy CPU.
    assert torch.autograd.gradcheck(fn, (x, *params), fast_mode=True)


def test_bad_input():
    with pytest.raises(ValueError, match="one of"):
        ConvRecurrentStack(3, [4], cell="rnn")
    with pytest.raises(ValueError, match="at least one layer"):
        ConvRecurrentStack(3, [])
    with pytest.raises(ValueError, match="peephole"):
        ConvRecurrentStack(3, [4], cell="gru", peephole=True)
    with pytest.raises(ValueError, match="odd"):
        ConvRecurrentStack(3, [4], kernel_size=2)
    stack = ConvRecurrentStack(3, [4, 4])
    with pytest.raises(ValueError, match=r"5-d tensor \(B, T, C, H, W\), got 4-d"):
        stack(torch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match="expected 3 input channels"):
        stack(torch.randn(2, 4, 2, 5, 5))
    with pytest.raises(ValueError, match="expected 2 layer states, got 1"):
        stack(_x(), states=[None])
    with pytest.raises(ValueError, match="expected both `states` and `steps`"):
        stack(None, steps=3)
    bad = [(torch.zeros(2, 4, 5, 6), torch.zeros(2, 4, 5, 6))] * 2
    with pytest.raises(ValueError, match=r"expected shape \(2, 4, 5, 7\), got \(2, 4, 5, 6\)"):
        stack(_x(), states=bad)
