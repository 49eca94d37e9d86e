"""LSTM over a whole sequence with a hand-written BPTT: the fast path for peephole/coupled LSTMs.

Autograd records ~15 nodes per step of `LSTMCell.step`; at hidden 128 and batch 32 their
bookkeeping, not the arithmetic, dominates. This function runs the time loop with no graph,
writes every step into preallocated buffers (no per-step concatenation or stacking), and in the
backward pass runs the lecture's BPTT by hand: one (B, G*H) x (G*H, H) matmul per step for
dL/dh_{t-1}, then the weight gradient sum_t dgates_t^T h_{t-1} as ONE matmul over all steps and
the input-projection gradient as the gate gradients themselves (batched by the caller's linear).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _sig_grad(s: Tensor) -> Tensor:
    """σ'(x) from s = σ(x): s - s², one kernel."""
    return torch.addcmul(s, s, s, value=-1.0)


def _tanh_grad(y: Tensor) -> Tensor:
    """tanh'(x) from y = tanh(x): 1 - y², one kernel."""
    return torch.addcmul(torch.ones((), dtype=y.dtype, device=y.device), y, y, value=-1.0)


def first_or_last(t_len: int, reverse: bool) -> int:
    """Index of the final state in the (T+1, ...) buffers: T forward, 0 reverse."""
    return 0 if reverse else t_len


class _LSTMScan(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        xp: Tensor,
        h0: Tensor,
        c0: Tensor,
        weight_hh: Tensor,
        weight_c: Tensor | None,
        coupled: bool,
        reverse: bool,
    ) -> tuple[Tensor, Tensor]:
        t_len, batch, gh = xp.shape
        hid = h0.shape[1]
        a = hid if coupled else 2 * hid  # width of the gates reading C_{t-1}: (f) or (i, f)
        n_in = a // hid
        act = torch.empty_like(xp)  # (T, B, G*H) activated gates, by time position
        hs = xp.new_empty(t_len + 1, batch, hid)  # states; forward: h_t at t+1, reverse: at t
        cs = xp.new_empty(t_len + 1, batch, hid)
        tcs = xp.new_empty(t_len, batch, hid)  # tanh(C_t)
        first = t_len if reverse else 0
        hs[first], cs[first] = h0, c0
        w_t = weight_hh.t()
        for t in range(t_len - 1, -1, -1) if reverse else range(t_len):
            prev, cur = (t + 1, t) if reverse else (t, t + 1)
            g_t = act[t]
            torch.addmm(xp[t], hs[prev], w_t, out=g_t)  # all gates in one matmul
            c_prev, c_new = cs[prev], cs[cur]
            if weight_c is not None:
                g_t[:, :a].view(batch, n_in, hid).addcmul_(weight_c[:n_in], c_prev.unsqueeze(1))
            g_t[:, :a].sigmoid_()
            g = g_t[:, a : a + hid].tanh_()
            if coupled:  # C_t = g + f (C_{t-1} - g)
                torch.addcmul(g, g_t[:, :hid], c_prev - g, out=c_new)
            else:
                torch.mul(g_t[:, hid:a], c_prev, out=c_new)
                c_new.addcmul_(g_t[:, :hid], g)
            o = g_t[:, a + hid :]
            if weight_c is not None:
                o.addcmul_(weight_c[-1], c_new)
            o.sigmoid_()
            torch.mul(o, torch.tanh(c_new, out=tcs[t]), out=hs[cur])
        ctx.save_for_backward(act, hs, cs, tcs, weight_hh, weight_c)
        ctx.coupled, ctx.reverse = coupled, reverse
        # Only the final C leaves: intermediate cell states are internal to the layer.
        return hs, cs[first_or_last(t_len, reverse)].clone()

    @staticmethod
    def backward(ctx: Any, d_hs: Tensor, d_c_last: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        act, hs, cs, tcs, weight_hh, weight_c = ctx.saved_tensors
        coupled, reverse = ctx.coupled, ctx.reverse
        t_len, batch, gh = act.shape
        hid = hs.shape[2]
        a = hid if coupled else 2 * hid
        n_in = a // hid
        dgates = torch.empty_like(act)
        last = 0 if reverse else t_len
        dh, dc = d_hs[last].clone(), d_c_last.clone()
        for t in range(t_len) if reverse else range(t_len - 1, -1, -1):
            prev = t + 1 if reverse else t
            g_t, dg = act[t], dgates[t]
            o, tc = g_t[:, a + hid :], tcs[t]
            c_prev, g = cs[prev], g_t[:, a : a + hid]
            d_o = dg[:, a + hid :]
            torch.mul(dh, tc, out=d_o)
            d_o.mul_(_sig_grad(o))
            dc.addcmul_(dh * o, _tanh_grad(tc))  # through h_t = o tanh(C_t)
            if weight_c is not None:
                dc.addcmul_(d_o, weight_c[-1])  # the output gate's peephole read C_t
            d_g = dg[:, a : a + hid]
            if coupled:
                f = g_t[:, :hid]
                d_f = dg[:, :hid]
                torch.mul(dc, c_prev - g, out=d_f)
                d_f.mul_(_sig_grad(f))
                torch.mul(dc, 1.0 - f, out=d_g)
            else:
                i, f = g_t[:, :hid], g_t[:, hid:a]
                d_i, d_f = dg[:, :hid], dg[:, hid:a]
                torch.mul(dc, g, out=d_i)
                d_i.mul_(_sig_grad(i))
                torch.mul(dc, c_prev, out=d_f)
                d_f.mul_(_sig_grad(f))
                torch.mul(dc, i, out=d_g)
            d_g.mul_(_tanh_grad(g))
            dc = dc * f
            if weight_c is not None:  # the i and f peepholes read C_{t-1}
                for k in range(n_in):
                    dc.addcmul_(dg[:, k * hid : (k + 1) * hid], weight_c[k])
            dh = torch.addmm(d_hs[prev], dg, weight_hh)  # dL/dh_{t-1}: one matmul
        h_prev = hs[1:] if reverse else hs[:-1]  # (T, B, H) state each step read
        d_w = dgates.view(t_len * batch, gh).t() @ h_prev.reshape(t_len * batch, hid)
        d_wc = None
        if weight_c is not None:
            c_prev_all = cs[1:] if reverse else cs[:-1]
            c_new_all = cs[:-1] if reverse else cs[1:]
            d_in = (dgates[..., :a].view(t_len, batch, n_in, hid) * c_prev_all.unsqueeze(2)).sum(
                (0, 1)
            )
            d_out = (dgates[..., a + hid :] * c_new_all).sum((0, 1))
            d_wc = torch.cat([d_in, d_out.unsqueeze(0)])
        # dh already holds d_hs[first] (added by the last addmm).
        return dgates, dh, dc, d_w, d_wc, None, None


def lstm_scan(
    xp: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    weight_c: Tensor | None = None,
    coupled: bool = False,
    reverse: bool = False,
) -> tuple[Tensor, Tensor]:
    """Run an LSTM layer direction over a time-major sequence of input projections.

    Args:
        xp: (T, B, G*H) pre-activations W_x x_t + b from `LSTMCell.project_input`, gate blocks
            (i, f, g, o), or (f, g, o) when `coupled`.
        h0: (B, H) initial h.
        c0: (B, H) initial C.
        weight_hh: (G*H, H) recurrent weights.
        weight_c: (G-1, H) diagonal peepholes ((i, f, o) or (f, o)), or None.
        coupled: input gate = 1 - f.
        reverse: run from t = T-1 down to 0 (the backward direction reads s_{t+1}).

    Returns:
        hs: (T+1, B, H). Forward: h_t at index t+1, initial state at 0. Reverse: h_t at index t,
        initial state at T. So outputs are hs[1:] (forward) or hs[:-1] (reverse), and the
        final h is hs[-1] (forward) or hs[0] (reverse).
        c_last: (B, H) final cell state.
    """
    return _LSTMScan.apply(xp, h0, c0, weight_hh, weight_c, coupled, reverse)
