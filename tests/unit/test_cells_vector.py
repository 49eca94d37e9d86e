"""Vector cells: gradcheck in float64, peephole/coupling equations, forget bias, bad input."""

import pytest
import torch

from forecast.models.cells import GRUCell, LSTMCell, RNNCell
from forecast.models.cells.lstm_scan import lstm_scan

CELLS = {
    "rnn_tanh": lambda: RNNCell(3, 4, "tanh"),
    "rnn_relu": lambda: RNNCell(3, 4, "relu"),
    "lstm": lambda: LSTMCell(3, 4),
    "lstm_peephole": lambda: LSTMCell(3, 4, peephole=True),
    "lstm_coupled": lambda: LSTMCell(3, 4, coupled=True),
    "lstm_peephole_coupled": lambda: LSTMCell(3, 4, peephole=True, coupled=True),
    "gru": lambda: GRUCell(3, 4),
    "gru_reset_before": lambda: GRUCell(3, 4, reset_after=False),
}


@pytest.mark.parametrize("name", list(CELLS))
def test_gradcheck_float64(name):
    torch.manual_seed(0)
    cell = CELLS[name]().double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in cell.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in cell.parameters())
    if isinstance(cell, LSTMCell):
        c = torch.randn(2, 4, generator=g, dtype=torch.float64, requires_grad=True)

        def fn(x, h, c, *ps):
            out, (_, c_new) = torch.func.functional_call(cell, dict(zip(names, ps)), (x, (h, c)))
            return out, c_new

        assert torch.autograd.gradcheck(fn, (x, h, c, *params))
    else:

        def fn(x, h, *ps):
            return torch.func.functional_call(cell, dict(zip(names, ps)), (x, h))[0]

        assert torch.autograd.gradcheck(fn, (x, h, *params))


@pytest.mark.parametrize("peephole", [False, True])
@pytest.mark.parametrize("coupled", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_scan_matches_cell_loop_and_gradcheck(peephole, coupled, reverse):
    """The hand-written BPTT of lstm_scan equals the cell's step loop and passes gradcheck."""
    torch.manual_seed(1)
    cell = LSTMCell(3, 4, peephole=peephole, coupled=coupled).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 2, 3, generator=g, dtype=torch.float64)  # (T, B, F)
    h0, c0 = (torch.randn(2, 4, generator=g, dtype=torch.float64) for _ in range(2))
    xp = cell.project_input(x).detach()
    hs, c_last = lstm_scan(xp, h0, c0, cell.weight_hh, cell.weight_c, coupled, reverse)
    state, outs = (h0, c0), [None] * 5
    for t in range(4, -1, -1) if reverse else range(5):
        outs[t], state = cell.step(xp[t], state)
    torch.testing.assert_close(hs[:-1] if reverse else hs[1:], torch.stack(outs))
    torch.testing.assert_close(c_last, state[1])
    wc = None if cell.weight_c is None else cell.weight_c.detach().clone().requires_grad_()
    args = (
        xp.requires_grad_(),
        h0.requires_grad_(),
        c0.requires_grad_(),
        cell.weight_hh.detach().clone().requires_grad_(),
        wc,
    )
    assert torch.autograd.gradcheck(lambda *a: lstm_scan(*a, coupled, reverse), args)


def test_peepholes_are_diagonal_and_read_the_right_cell_state():
    torch.manual_seed(2)
    cell = LSTMCell(3, 4, peephole=True).double()
    assert cell.weight_c.shape == (3, 4)
    x, h, c = (torch.randn(2, n, dtype=torch.float64) for n in (3, 4, 4))
    pre = cell.project_input(x) + h @ cell.weight_hh.t()
    i, f, g, o = pre.split(4, dim=1)
    i = torch.sigmoid(i + cell.weight_c[0] * c)
    f = torch.sigmoid(f + cell.weight_c[1] * c)
    c_new = f * c + i * torch.tanh(g)
    o = torch.sigmoid(o + cell.weight_c[2] * c_new)
    got_h, (_, got_c) = cell(x, (h, c))
    torch.testing.assert_close(got_c, c_new)
    torch.testing.assert_close(got_h, o * torch.tanh(c_new))


def test_coupled_gate_equation():
    torch.manual_seed(3)
    cell = LSTMCell(3, 4, coupled=True).double()
    assert cell.weight_ih.shape == (12, 3)  # (f, g, o): no input gate
    x, h, c = (torch.randn(2, n, dtype=torch.float64) for n in (3, 4, 4))
    f, g, o = (cell.project_input(x) + h @ cell.weight_hh.t()).split(4, dim=1)
    f, g, o = torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c_new = f * c + (1 - f) * g
    got_h, (_, got_c) = cell(x, (h, c))
    torch.testing.assert_close(got_c, c_new)
    torch.testing.assert_close(got_h, o * torch.tanh(c_new))


def test_forget_bias():
    assert torch.all(LSTMCell(3, 4, forget_bias=2.0).bias[4:8] == 2.0)
    assert torch.all(LSTMCell(3, 4, coupled=True, forget_bias=2.0).bias[:4] == 2.0)


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "gru"])
def test_bad_input(name):
    cell = CELLS[name]()
    with pytest.raises(ValueError, match=r"2-d tensor \(B, F\), got 3-d"):
        cell(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="expected 3 input features.*got 5"):
        cell(torch.randn(2, 5))
    bad = torch.randn(2, 5)
    with pytest.raises(ValueError, match=r"expected shape \(2, 4\), got \(2, 5\)"):
        cell(torch.randn(2, 3), (bad, bad) if name == "lstm" else bad)
    with pytest.raises(ValueError, match="positive int"):
        type(cell)(0, 4)
