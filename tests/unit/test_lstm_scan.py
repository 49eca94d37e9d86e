"""lstm_scan_directions: D directions in one loop equal separate scans; gradcheck; bad input."""

import pytest
import torch

from forecast.models.cells import LSTMCell
from forecast.models.cells.lstm_scan import lstm_scan, lstm_scan_directions


def _setup(peephole, coupled, t=5, b=2, f=3, h=4):
    torch.manual_seed(0)
    cells = [LSTMCell(f, h, peephole=peephole, coupled=coupled).double() for _ in range(2)]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(t, b, f, generator=g, dtype=torch.float64)
    h0, c0 = (torch.randn(2, b, h, generator=g, dtype=torch.float64) for _ in range(2))
    xps = [cell.project_input(x).detach() for cell in cells]  # 2 x (T, B, G*H)
    return cells, xps, h0, c0


@pytest.mark.parametrize("peephole", [False, True])
@pytest.mark.parametrize("coupled", [False, True])
def test_two_directions_in_one_loop_equal_two_scans(peephole, coupled):
    cells, xps, h0, c0 = _setup(peephole, coupled)
    wc = None if not peephole else torch.stack([c.weight_c for c in cells])
    xp = torch.stack([xps[0], xps[1].flip(0)])  # backward direction reads reversed inputs
    hs, c_last = lstm_scan_directions(
        xp, h0, c0, torch.stack([c.weight_hh for c in cells]), wc, coupled
    )
    fwd, c_fwd = lstm_scan(xps[0], h0[0], c0[0], cells[0].weight_hh, cells[0].weight_c, coupled)
    bwd, c_bwd = lstm_scan(
        xps[1], h0[1], c0[1], cells[1].weight_hh, cells[1].weight_c, coupled, reverse=True
    )
    torch.testing.assert_close(hs[0], fwd)
    torch.testing.assert_close(hs[1].flip(0), bwd)  # reverse: h_t at index t, h0 at T
    torch.testing.assert_close(c_last, torch.stack([c_fwd, c_bwd]))


@pytest.mark.parametrize("coupled", [False, True])
def test_gradcheck_two_directions_with_peepholes(coupled):
    cells, xps, h0, c0 = _setup(True, coupled, t=3)
    args = (
        torch.stack([xps[0], xps[1].flip(0)]).requires_grad_(),
        h0.requires_grad_(),
        c0.requires_grad_(),
        torch.stack([c.weight_hh for c in cells]).detach().requires_grad_(),
        torch.stack([c.weight_c for c in cells]).detach().requires_grad_(),
    )
    assert torch.autograd.gradcheck(lambda *a: lstm_scan_directions(*a, coupled), args)


def test_time_major_input_layout_gives_the_same_result():
    cells, xps, h0, c0 = _setup(True, False)
    w = torch.stack([c.weight_hh for c in cells])
    wc = torch.stack([c.weight_c for c in cells])
    d_major = torch.stack(xps)
    t_major = torch.stack(xps, dim=1).transpose(0, 1)
    a = lstm_scan_directions(d_major, h0, c0, w, wc)
    b = lstm_scan_directions(t_major, h0, c0, w, wc)
    torch.testing.assert_close(a, b)


def test_bad_input():
    cells, xps, h0, c0 = _setup(False, False)
    w = torch.stack([c.weight_hh for c in cells])
    xp = torch.stack(xps)
    with pytest.raises(ValueError, match=r"4-d tensor \(D, T, B, G\*H\), got 3-d"):
        lstm_scan_directions(xps[0], h0, c0, w)
    with pytest.raises(ValueError, match=r"h0: expected shape \(2, 2, 4\), got \(1, 2, 4\)"):
        lstm_scan_directions(xp, h0[:1], c0, w)
    with pytest.raises(ValueError, match=r"weight_hh: expected shape \(2, 12, 4\)"):
        lstm_scan_directions(xp, h0, c0, w, coupled=True)
    with pytest.raises(ValueError, match="at least one time step"):
        lstm_scan_directions(xp[:, :0], h0, c0, w)


@pytest.mark.parametrize("peephole", [False, True])
@pytest.mark.parametrize("coupled", [False, True])
def test_zero_state_as_none_equals_explicit_zeros(peephole, coupled):
    """h0 = c0 = None skips step 0's matmul and peephole terms: same outputs and gradients."""
    cells, xps, h0, c0 = _setup(peephole, coupled)
    zeros = torch.zeros_like(h0)
    w = torch.stack([c.weight_hh for c in cells]).detach()
    wc = None if not peephole else torch.stack([c.weight_c for c in cells]).detach()
    xp = torch.stack([xps[0], xps[1].flip(0)])
    g = torch.Generator().manual_seed(1)
    results = []
    for state in ((None, None), (zeros, zeros)):
        args = [t.clone().requires_grad_() for t in (xp, w)]
        wc_ = None if wc is None else wc.clone().requires_grad_()
        hs, c_last = lstm_scan_directions(args[0], *state, args[1], wc_, coupled)
        # Random weights on every output, so each step's gradient path is exercised.
        loss = (hs * torch.randn(hs.shape, generator=g, dtype=hs.dtype)).sum() + c_last.sum()
        params = [*args, *([] if wc_ is None else [wc_])]
        results.append((hs, c_last, torch.autograd.grad(loss, params)))
        g.manual_seed(1)
    (hs_a, c_a, grads_a), (hs_b, c_b, grads_b) = results
    torch.testing.assert_close(hs_a, hs_b)
    torch.testing.assert_close(c_a, c_b)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(ga, gb)


@pytest.mark.parametrize("coupled", [False, True])
def test_gradcheck_zero_state_with_peepholes(coupled):
    cells, xps, _, _ = _setup(True, coupled, t=3)
    args = (
        torch.stack([xps[0], xps[1].flip(0)]).requires_grad_(),
        torch.stack([c.weight_hh for c in cells]).detach().requires_grad_(),
        torch.stack([c.weight_c for c in cells]).detach().requires_grad_(),
    )
    fn = lambda xp, w, wc: lstm_scan_directions(xp, None, None, w, wc, coupled)  # noqa: E731
    assert torch.autograd.gradcheck(fn, args)


def test_zero_state_needs_both_none():
    cells, xps, h0, c0 = _setup(False, False)
    w = torch.stack([c.weight_hh for c in cells])
    with pytest.raises(ValueError, match=r"h0, c0: expected both tensors or both None"):
        lstm_scan_directions(torch.stack(xps), h0, None, w)
