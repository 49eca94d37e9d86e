"""Custom cells reproduce torch.nn.LSTM/GRU/RNN outputs and gradients with copied weights."""

import pytest
import torch

from forecast.models.recurrent import StackedRecurrent


def copy_torch_weights(custom: StackedRecurrent, ref: StackedRecurrent) -> None:
    """Copy the weights of a torch-backed stack into a cells-backed one (biases summed)."""
    module = ref.torch_layers[0]
    with torch.no_grad():
        for layer, cells in enumerate(custom.cell_layers):
            for d, cell in enumerate(cells):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                cell.weight_ih.copy_(getattr(module, "weight_ih" + sfx))
                cell.weight_hh.copy_(getattr(module, "weight_hh" + sfx))
                b_ih, b_hh = getattr(module, "bias_ih" + sfx), getattr(module, "bias_hh" + sfx)
                if hasattr(cell, "bias_ih"):  # GRU keeps b_hn inside the reset product
                    cell.bias_ih.copy_(b_ih)
                    cell.bias_hh.copy_(b_hh)
                else:
                    cell.bias.copy_(b_ih + b_hh)


def _grads(module):
    return {n: p.grad for n, p in module.named_parameters()}


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_cells_match_torch(cell, bidirectional):
    torch.manual_seed(0)
    kw = dict(input_size=3, hidden_size=5, num_layers=2, cell=cell, bidirectional=bidirectional)
    ref = StackedRecurrent(**kw, impl="torch")
    custom = StackedRecurrent(**kw, impl="cells")
    assert ref.use_torch and not custom.use_torch
    copy_torch_weights(custom, ref)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 7, 3, generator=g)
    d = 2 if bidirectional else 1
    h0 = torch.randn(2 * d, 4, 5, generator=g)
    state = (h0, torch.randn(2 * d, 4, 5, generator=g)) if cell == "lstm" else h0
    xs = [x.clone().requires_grad_() for _ in range(2)]
    outs = []
    for module, xi in zip([ref, custom], xs):
        out, fin = module(xi, state)
        loss = out.pow(2).sum() + sum(f.sum() for f in (fin if cell == "lstm" else (fin,)))
        loss.backward()
        outs.append((out, fin))
    torch.testing.assert_close(outs[1][0], outs[0][0], atol=1e-5, rtol=1e-5)
    if cell == "lstm":
        for a, b in zip(outs[1][1], outs[0][1]):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(outs[1][1], outs[0][1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(xs[1].grad, xs[0].grad, atol=1e-5, rtol=1e-5)
    module = ref.torch_layers[0]
    for layer, cells in enumerate(custom.cell_layers):
        for dd, c in enumerate(cells):
            sfx = f"_l{layer}" + ("_reverse" if dd else "")
            torch.testing.assert_close(
                c.weight_ih.grad, getattr(module, "weight_ih" + sfx).grad, atol=1e-5, rtol=1e-5
            )
            torch.testing.assert_close(
                c.weight_hh.grad, getattr(module, "weight_hh" + sfx).grad, atol=1e-5, rtol=1e-5
            )
            bias_grad = c.bias_ih.grad if hasattr(c, "bias_ih") else c.bias.grad
            torch.testing.assert_close(
                bias_grad, getattr(module, "bias_ih" + sfx).grad, atol=1e-5, rtol=1e-5
            )


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_single_cells_match_torch_cells(cell):
    """One step of each cell equals torch.nn.LSTMCell / GRUCell / RNNCell."""
    from forecast.models.cells import GRUCell, LSTMCell, RNNCell

    torch.manual_seed(2)
    ours = {"lstm": LSTMCell, "gru": GRUCell, "rnn": RNNCell}[cell](3, 4)
    theirs = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}[cell](
        3, 4
    )
    with torch.no_grad():
        ours.weight_ih.copy_(theirs.weight_ih)
        ours.weight_hh.copy_(theirs.weight_hh)
        if cell == "gru":
            ours.bias_ih.copy_(theirs.bias_ih)
            ours.bias_hh.copy_(theirs.bias_hh)
        else:
            ours.bias.copy_(theirs.bias_ih + theirs.bias_hh)
    x, h, c = torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)
    if cell == "lstm":
        got_h, (_, got_c) = ours(x, (h, c))
        want_h, want_c = theirs(x, (h, c))
        torch.testing.assert_close(got_c, want_c, atol=1e-5, rtol=1e-5)
    else:
        got_h, _ = ours(x, h)
        want_h = theirs(x, h)
    torch.testing.assert_close(got_h, want_h, atol=1e-5, rtol=1e-5)
