"""StackedRecurrent: shapes, fast-path choice, causality, TBPTT state carry, norm, bad input."""

import pytest
import torch

from forecast.models.recurrent import StackedRecurrent

CONFIGS = {
    "lstm_torch": dict(cell="lstm"),
    "lstm_peephole": dict(cell="lstm", peephole=True),
    "lstm_coupled": dict(cell="lstm", coupled=True),
    "gru_torch": dict(cell="gru"),
    "gru_reset_before": dict(cell="gru", reset_after=False),
    "rnn_relu": dict(cell="rnn", nonlinearity="relu"),
    "lstm_layer_norm": dict(cell="lstm", norm="layer"),
}


def _x(b=2, t=6, f=3, seed=0, dtype=torch.float32):
    return torch.randn(b, t, f, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_fast_path_choice():
    assert StackedRecurrent(3, 4, cell="lstm").use_torch
    assert StackedRecurrent(3, 4, cell="gru").use_torch
    assert StackedRecurrent(3, 4, cell="rnn").use_torch
    assert StackedRecurrent(3, 4, num_layers=2, norm="layer").use_torch
    assert not StackedRecurrent(3, 4, peephole=True).use_torch
    assert not StackedRecurrent(3, 4, coupled=True).use_torch
    assert not StackedRecurrent(3, 4, cell="gru", reset_after=False).use_torch
    assert isinstance(StackedRecurrent(3, 4).torch_layers[0], torch.nn.LSTM)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_shapes(name, bidirectional):
    torch.manual_seed(0)
    net = StackedRecurrent(3, 4, num_layers=3, bidirectional=bidirectional, **CONFIGS[name])
    out, state = net(_x())
    d = 2 if bidirectional else 1
    assert net.output_size == 4 * d
    assert out.shape == (2, 6, 4 * d)
    for part in state if net.cell == "lstm" else (state,):
        assert part.shape == (3 * d, 2, 4)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_causality(name):
    """Forward-only: out[:, :t] ignores x[:, t:]. Bidirectional: it does not."""
    torch.manual_seed(1)
    x = _x(t=8)
    y = x.clone()
    y[:, 5:] += 1.0
    uni = StackedRecurrent(3, 4, num_layers=2, **CONFIGS[name])
    torch.testing.assert_close(uni(x)[0][:, :5], uni(y)[0][:, :5])
    assert not torch.allclose(uni(x)[0][:, 5:], uni(y)[0][:, 5:])
    bi = StackedRecurrent(3, 4, num_layers=2, bidirectional=True, **CONFIGS[name])
    assert not torch.allclose(bi(x)[0][:, :5], bi(y)[0][:, :5])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_truncated_bptt_state_carry(name):
    """Two calls with the final state carried over equal one call over the whole sequence."""
    torch.manual_seed(2)
    net = StackedRecurrent(3, 4, num_layers=2, **CONFIGS[name])
    x = _x(t=7)
    full, full_state = net(x)
    a, state = net(x[:, :3])
    state = tuple(s.detach() for s in state) if net.cell == "lstm" else state.detach()
    b, state = net(x[:, 3:], state)
    torch.testing.assert_close(torch.cat([a, b], 1), full)
    torch.testing.assert_close(state, full_state)


@pytest.mark.parametrize("name", ["lstm_peephole", "lstm_coupled", "gru_reset_before"])
def test_gradcheck_deep_bidirectional_float64(name):
    torch.manual_seed(3)
    net = StackedRecurrent(2, 2, num_layers=2, bidirectional=True, **CONFIGS[name]).double()
    x = _x(b=2, t=3, f=2, dtype=torch.float64).requires_grad_()
    names = [n for n, _ in net.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in net.parameters())

    def fn(x, *ps):
        return torch.func.functional_call(net, dict(zip(names, ps)), (x,))[0]

    assert torch.autograd.gradcheck(fn, (x, *params))


def test_batch_first_false_and_dropout_between_layers():
    torch.manual_seed(4)
    net = StackedRecurrent(3, 4, num_layers=2, peephole=True, batch_first=False, dropout=0.5)
    x = _x().transpose(0, 1)  # (T, B, F)
    net.eval()
    out, _ = net(x)
    assert out.shape == (6, 2, 4)
    torch.testing.assert_close(net(x)[0], out)  # eval: no dropout
    net.train()
    assert not torch.allclose(net(x)[0], out)


def test_forget_bias_on_both_paths():
    fast = StackedRecurrent(3, 4, forget_bias=3.0).torch_layers[0]
    total = fast.bias_ih_l0 + fast.bias_hh_l0
    torch.testing.assert_close(total[4:8], torch.full((4,), 3.0))
    slow = StackedRecurrent(3, 4, peephole=True, forget_bias=3.0).cell_layers[0][0]
    torch.testing.assert_close(slow.bias[4:8].detach(), torch.full((4,), 3.0))


def test_bad_input():
    with pytest.raises(ValueError, match="one of"):
        StackedRecurrent(3, 4, cell="transformer")
    with pytest.raises(ValueError, match="only for cell='lstm'"):
        StackedRecurrent(3, 4, cell="gru", peephole=True)
    with pytest.raises(ValueError, match="impl='torch'"):
        StackedRecurrent(3, 4, peephole=True, impl="torch")
    with pytest.raises(ValueError, match="probability"):
        StackedRecurrent(3, 4, dropout=1.5)
    for net in (StackedRecurrent(3, 4, num_layers=2), StackedRecurrent(3, 4, 2, peephole=True)):
        with pytest.raises(ValueError, match=r"3-d tensor \(B, T, F\), got 2-d"):
            net(torch.randn(2, 3))
        with pytest.raises(ValueError, match="expected 3 input features.*got 5"):
            net(torch.randn(2, 6, 5))
        bad = torch.zeros(1, 2, 4)
        with pytest.raises(ValueError, match=r"expected shape \(2, 2, 4\) \(L\*D, B, H\)"):
            net(_x(), (bad, bad))
        with pytest.raises(ValueError, match="pair"):
            net(_x(), torch.zeros(2, 2, 4))
