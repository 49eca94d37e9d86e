"""ConvLSTM / ConvGRU cells: shapes, equations against a hand-written step, gradcheck, bad input."""

import pytest
import torch
import torch.nn.functional as F

from forecast.models.cells import ConvGRUCell, ConvLSTMCell


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("cls", [ConvLSTMCell, ConvGRUCell])
def test_cell_preserves_grid(cls):
    torch.manual_seed(0)
    cell = cls(in_channels=3, hidden_channels=8, kernel_size=3)
    x = torch.randn(2, 3, 17, 23, generator=_gen())  # odd sizes catch padding bugs
    h, state = cell(x, cell.init_state(x))
    assert h.shape == (2, 8, 17, 23)
    assert torch.isfinite(h).all()
    h2, _ = cell(x, state)
    assert not torch.allclose(h, h2)  # the state is read


def _textbook_conv_lstm(cell, x, h, c):
    """Shi et al. 2015 written out gate by gate with separate x and h convolutions."""
    ch, p = cell.hidden_channels, cell.padding
    wx, wh, b = cell.weight_x.split(ch), cell.weight_h.split(ch), cell.bias.split(ch)

    def pre(k):
        return F.conv2d(x, wx[k], b[k], padding=p) + F.conv2d(h, wh[k], padding=p)

    wc = cell.weight_c
    i = torch.sigmoid(pre(0) + (wc[0] * c if wc is not None else 0))
    f = torch.sigmoid(pre(1) + (wc[1] * c if wc is not None else 0))
    c_new = f * c + i * torch.tanh(pre(2))
    o = torch.sigmoid(pre(3) + (wc[2] * c_new if wc is not None else 0))
    return o * torch.tanh(c_new), c_new


@pytest.mark.parametrize("peephole", [False, True])
def test_conv_lstm_matches_equations(peephole):
    torch.manual_seed(1)
    cell = ConvLSTMCell(3, 4, kernel_size=5, peephole=peephole).double()
    g = _gen(1)
    x = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64)
    h = torch.randn(2, 4, 7, 9, generator=g, dtype=torch.float64)
    c = torch.randn(2, 4, 7, 9, generator=g, dtype=torch.float64)
    got_h, (_, got_c) = cell(x, (h, c))
    want_h, want_c = _textbook_conv_lstm(cell, x, h, c)
    torch.testing.assert_close(got_h, want_h)
    torch.testing.assert_close(got_c, want_c)
    # A zero state passed explicitly and state=None (the skipped h-conv path) agree.
    zero = cell.init_state(x)
    torch.testing.assert_close(cell(x, None)[0], cell(x, zero)[0])


def test_peephole_weights_are_per_channel_and_change_output():
    torch.manual_seed(2)
    cell = ConvLSTMCell(2, 3, peephole=True)
    assert cell.weight_c.shape == (3, 3, 1, 1)
    x = torch.randn(1, 2, 5, 5)
    state = (torch.randn(1, 3, 5, 5), torch.randn(1, 3, 5, 5))
    before = cell(x, state)[0]
    with torch.no_grad():
        cell.weight_c.add_(0.5)
    assert not torch.allclose(before, cell(x, state)[0])


def test_forget_bias_initialisation():
    cell = ConvLSTMCell(2, 3, forget_bias=2.5)
    torch.testing.assert_close(cell.bias[3:6], torch.full((3,), 2.5))
    assert cell.bias[:3].abs().max() == 0 and cell.bias[6:].abs().max() == 0


@pytest.mark.parametrize("reset_after", [True, False])
def test_conv_gru_matches_equations(reset_after):
    torch.manual_seed(3)
    cell = ConvGRUCell(2, 3, kernel_size=3, reset_after=reset_after).double()
    with torch.no_grad():
        cell.bias_x.normal_()
        cell.bias_h.normal_()
    g = _gen(3)
    x = torch.randn(2, 2, 6, 5, generator=g, dtype=torch.float64)
    h = torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64)
    wx, wh = cell.weight_x.split(3), cell.weight_h.split(3)
    bx, bh = cell.bias_x.split(3), cell.bias_h.split(3)

    def conv(inp, w, b):
        return F.conv2d(inp, w, b, padding=1)

    r = torch.sigmoid(conv(x, wx[0], bx[0]) + conv(h, wh[0], bh[0]))
    z = torch.sigmoid(conv(x, wx[1], bx[1]) + conv(h, wh[1], bh[1]))
    hn = r * conv(h, wh[2], bh[2]) if reset_after else conv(r * h, wh[2], bh[2])
    n = torch.tanh(conv(x, wx[2], bx[2]) + hn)
    torch.testing.assert_close(cell(x, h)[0], (1 - z) * n + z * h)
    torch.testing.assert_close(cell(x, None)[0], cell(x, cell.init_state(x))[0])


@pytest.mark.parametrize(
    "make",
    [
        lambda: ConvLSTMCell(2, 3, kernel_size=3),
        lambda: ConvLSTMCell(2, 3, kernel_size=3, peephole=True),
        lambda: ConvGRUCell(2, 3, kernel_size=3),
        lambda: ConvGRUCell(2, 3, kernel_size=3, reset_after=False),
    ],
)
def test_gradcheck_float64(make):
    torch.manual_seed(4)
    cell = make().double()
    g = _gen(4)
    x = torch.randn(1, 2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    h = torch.randn(1, 3, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    params = tuple(cell.parameters())
    if isinstance(cell, ConvLSTMCell):
        c = torch.randn(1, 3, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)

        def fn(x, h, c, *ps):
            out, (_, c_new) = torch.func.functional_call(
                cell, dict(zip(dict(cell.named_parameters()), ps)), (x, (h, c))
            )
            return out, c_new

        assert torch.autograd.gradcheck(fn, (x, h, c, *params), fast_mode=True)
    else:

        def fn(x, h, *ps):
            return torch.func.functional_call(
                cell, dict(zip(dict(cell.named_parameters()), ps)), (x, h)
            )[0]

        assert torch.autograd.gradcheck(fn, (x, h, *params), fast_mode=True)


@pytest.mark.parametrize("cls", [ConvLSTMCell, ConvGRUCell])
def test_bad_input(cls):
    with pytest.raises(ValueError, match="odd"):
        cls(2, 3, kernel_size=4)
    with pytest.raises(ValueError, match="hidden_channels: expected a positive int, got 0"):
        cls(2, 0)
    with pytest.raises(ValueError, match="in_channels: expected an int >= 0, got -1"):
        cls(-1, 3)  # 0 is allowed: a cell with no input weights (test_conv_no_input.py)
    cell = cls(2, 3)
    with pytest.raises(ValueError, match=r"4-d tensor \(B, C, H, W\), got 3-d"):
        cell(torch.randn(2, 5, 5))
    with pytest.raises(ValueError, match="expected 2 input channels.*got 5"):
        cell(torch.randn(1, 5, 4, 4))
    with pytest.raises(ValueError, match="expected 2 input channels.*got 5"):
        cell.project_input(torch.randn(1, 3, 5, 4, 4))
    wrong = torch.randn(1, 3, 4, 5)
    state = (wrong, wrong) if cls is ConvLSTMCell else wrong
    with pytest.raises(ValueError, match=r"expected shape \(1, 3, 4, 4\), got \(1, 3, 4, 5\)"):
        cell(torch.randn(1, 2, 4, 4), state)
