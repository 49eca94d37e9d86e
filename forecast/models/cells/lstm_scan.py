"""LSTM over a whole sequence with a hand-written BPTT: the fast path for peephole/coupled LSTMs.

Autograd records ~15 nodes per step of `LSTMCell.step`; at hidden 128 and batch 32 their
bookkeeping and the per-op launch cost, not the arithmetic, dominate. So:
- the time loop runs with no graph and writes every step into preallocated buffers;
- the directions of a bidirectional layer run in ONE loop: the backward direction's inputs are
  reversed in time by the caller, and each step is one `baddbmm` over a stacked (D, H, G*H)
  weight, so a step costs the same number of launches for one direction or two;
- the backward pass precomputes, for all steps at once, every factor of the lecture's BPTT that
  does not depend on the incoming gradient (σ', tanh', peephole terms), so each backward step is
  one batched matmul for dL/dh_{t-1} and four fused element-wise ops;
- the weight gradients are ONE batched matmul over all steps, and the input-projection gradient
  is the gate gradients themselves (batched by the caller's linear);
- tanh is computed as 2σ(2x) - 1 (see `_LSTMScan.forward`), and the per-step matmul outputs are
  contiguous, so no step op is split over threads needlessly (costly on a busy shared CPU);
- no large buffer is first written by small per-step ops: a fresh allocation's pages fault in on
  first touch, which per step cost ~5x a bulk fill (the gate factors become dL/dgates in place,
  state buffers are zero-filled in bulk);
- a zero initial state (h0 = c0 = None) skips step 0's matmul and peephole terms and the
  gradients of (h0, C0).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from forecast.models.cells.checks import check_rank, check_shape


def _gate_factors(
    act: Tensor, cs: Tensor, tcs: Tensor, weight_c: Tensor | None, coupled: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradient factors of every step, all steps at once (none depends on dL/dh).

    With dh = dL/dh_t and dc = dL/dC_t (after adding the path through h_t):
    d(o pre) = dh * A,  dc = dc_next * F_{t+1} + dh * Bc,  d(i, f, g pre) = dc * P.
    Written with in-place ops and `addcmul` (σ' = s - s², tanh' = 1 - y²) to keep the number of
    (D, T, B, H) temporaries small: on a busy CPU each fresh buffer costs page faults.

    Args:
        act: (D, T, B, G*H) activated gates.
        cs: (D, T+1, B, H) cell states, C_{s-1} at s and C_s at s+1.
        tcs: (D, T, B, H) tanh(C_s).
        weight_c: (D, G-1, H) peepholes or None.
        coupled: gate blocks (f, g, o) instead of (i, f, g, o).

    Returns:
        pa: (D, T, B, G*H) contiguous: P for the blocks before o (multiplies dc), A for o
            (multiplies dh).
        bc: (D, T, B, H) dC_t/dh_t factor; fc: (D, T, B, H) dC_{t-1}/dC_t factor.
    """
    hid = tcs.shape[-1]
    a = hid if coupled else 2 * hid
    one = act.new_ones(())
    c_prev = cs[:, :-1]
    g, o = act[..., a : a + hid], act[..., a + hid :]
    # D-major, unlike act: the backward pass turns pa into dL/d(gates) in place, and dW is
    # then one bmm over the (T*B) rows of each direction.
    pa = act.new_empty(act.shape)
    p_o = torch.addcmul(o, o, o, value=-1.0, out=pa[..., a + hid :])  # σ'(o)
    p_o.mul_(tcs)  # A = tanh(C) σ'(o)
    bc = torch.addcmul(one, tcs, tcs, value=-1.0).mul_(o)  # o tanh'(C)
    p_g = torch.addcmul(one, g, g, value=-1.0, out=pa[..., a : a + hid])  # tanh'(g)
    f = act[..., :hid] if coupled else act[..., hid:a]
    p_f = torch.addcmul(f, f, f, value=-1.0, out=pa[..., a - hid : a])  # σ'(f)
    if coupled:
        p_f.mul_(c_prev - g)  # P_f = (C_{t-1} - g) σ'(f)
        p_g.mul_(torch.sub(one, f))  # P_g = (1 - f) tanh'(g)
    else:
        i = act[..., :hid]
        p_i = torch.addcmul(i, i, i, value=-1.0, out=pa[..., :hid])
        p_i.mul_(g)  # P_i = g σ'(i)
        p_f.mul_(c_prev)  # P_f = C_{t-1} σ'(f)
        p_g.mul_(i)  # P_g = i tanh'(g)
    fc = f.clone()
    if weight_c is not None:
        wc = weight_c[:, None, None]  # (D, 1, 1, G-1, H)
        bc.addcmul_(p_o, wc[..., -1, :])  # the o peephole reads C_t
        # i and f peepholes read C_{t-1}: dC_{t-1} gains dc * P_k * w_k.
        for k in range(a // hid):
            fc.addcmul_(pa[..., k * hid : (k + 1) * hid], wc[..., k, :])
    return pa, bc, fc


class _LSTMScan(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        xp: Tensor,
        h0: Tensor | None,
        c0: Tensor | None,
        weight_hh: Tensor,
        weight_c: Tensor | None,
        coupled: bool,
    ) -> tuple[Tensor, Tensor]:
        n_dir, t_len, batch, gh = xp.shape
        hid = weight_hh.shape[-1]
        zero = h0 is None  # zero initial state: step 0 has no matmul and no C_{-1} terms
        a = hid if coupled else 2 * hid  # width of the gates reading C_{t-1}: (f) or (i, f)
        n_in = a // hid
        # tanh(x) = 2σ(2x) - 1: torch's CPU tanh splits even 8k elements over threads, which
        # cost ~30x a sigmoid on this shared 2-core machine. Doubling the g rows of the input
        # projection and of W_h lets one sigmoid cover i, f and g (and o without peepholes).
        scale = xp.new_ones(gh)
        scale[a : a + hid] = 2.0
        # (D, T, B, G*H) pre-activations, then activated gates in place. Stored time-major so
        # that act[:, s] is contiguous: baddbmm_ into a strided batch falls back to one addmm_
        # per direction, i.e. one more threaded call per step.
        act = xp.new_empty(t_len, n_dir, batch, gh).transpose(0, 1)
        torch.mul(xp, scale, out=act)
        w_t = (weight_hh * scale[:, None]).transpose(1, 2).contiguous()  # (D, H, G*H)
        # Zero-filled, not empty: a fresh buffer's pages fault in on first write, and one bulk
        # fill pays that ~5x cheaper per page than the small per-step writes would.
        hs = xp.new_zeros(n_dir, t_len + 1, batch, hid)  # h_{s-1} at s, h_s at s+1
        cs = xp.new_zeros(n_dir, t_len + 1, batch, hid)
        tcs = xp.new_zeros(n_dir, t_len, batch, hid)  # tanh(C_s)
        if not zero:
            assert h0 is not None and c0 is not None
            hs[:, 0], cs[:, 0] = h0, c0
        minus_one = xp.new_full((), -1.0)
        two = xp.new_full((), 2.0)
        wc_in = None if weight_c is None else weight_c[:, None, :n_in]  # (D, 1, n_in, H)
        wc_out = None if weight_c is None else weight_c[:, None, -1]  # (D, 1, H)
        sig_end = gh if weight_c is None else a + hid  # o waits for C_t when it peeps
        # Every per-step view made up front (one unbind per block, not ~10 slicing ops a step).
        step_h, step_c, step_tc = hs.unbind(1), cs.unbind(1), tcs.unbind(1)
        step_gates, step_sig = act.unbind(1), act[..., :sig_end].unbind(1)
        step_i, step_f = act[..., :hid].unbind(1), act[..., a - hid : a].unbind(1)
        step_g, step_o = act[..., a : a + hid].unbind(1), act[..., a + hid :].unbind(1)
        if wc_in is not None:
            step_pin = act[..., :a].unflatten(-1, (n_in, hid)).unbind(1)  # (D, B, n_in, H)
            step_cin = cs.unsqueeze(3).unbind(1)  # (D, B, 1, H)
        for s in range(t_len):
            first = zero and s == 0  # h_{-1} = C_{-1} = 0: skip what multiplies them
            if not first:
                step_gates[s].baddbmm_(step_h[s], w_t)  # all gates, all directions: one matmul
            c_prev, c_new, tc = step_c[s], step_c[s + 1], step_tc[s]
            if wc_in is not None and not first:
                step_pin[s].addcmul_(wc_in, step_cin[s])
            step_sig[s].sigmoid_()
            i, g, o = step_i[s], step_g[s], step_o[s]
            torch.add(minus_one, g, alpha=2.0, out=g)  # tanh of the g pre-activation
            if first and coupled:  # C_0 = g - f g
                torch.addcmul(g, i, g, value=-1.0, out=c_new)
            elif first:  # C_0 = i g
                torch.mul(i, g, out=c_new)
            elif coupled:  # C_t = g + f (C_{t-1} - g); here i is the f block
                torch.addcmul(g, i, c_prev - g, out=c_new)
            else:
                torch.mul(step_f[s], c_prev, out=c_new)
                c_new.addcmul_(i, g)
            if wc_out is not None:
                o.addcmul_(wc_out, c_new)
                o.sigmoid_()
            torch.mul(c_new, two, out=tc).sigmoid_()
            torch.add(minus_one, tc, alpha=2.0, out=tc)  # tanh(C_t)
            torch.mul(o, tc, out=step_h[s + 1])
        ctx.save_for_backward(act, hs, cs, tcs, weight_hh, weight_c)
        ctx.coupled, ctx.zero = coupled, zero
        # Only the final C leaves: intermediate cell states are internal to the layer.
        return hs, cs[:, t_len].clone()

    @staticmethod
    def backward(ctx: Any, d_hs: Tensor, d_c_last: Tensor) -> tuple[Tensor | None, ...]:
        act, hs, cs, tcs, weight_hh, weight_c = ctx.saved_tensors
        coupled = ctx.coupled
        n_dir, t_len, batch, gh = act.shape
        hid = hs.shape[-1]
        k = (2 if coupled else 3) * hid  # width of the blocks driven by dc: (f, g) or (i, f, g)
        pa, bc, fc = _gate_factors(act, cs, tcs, weight_c, coupled)
        # Accumulated in place by baddbmm_, so stored time-major (see forward).
        # A fresh buffer: the incoming gradient must not be modified.
        d_hs = d_hs.new_empty(t_len + 1, n_dir, batch, hid).copy_(d_hs.transpose(0, 1))
        d_hs = d_hs.transpose(0, 1)  # (D, T+1, B, H)
        # pa becomes dL/d(gates) step by step, in place: no fresh (D, T, B, G*H) buffer.
        dgates = pa
        dc = d_c_last.contiguous()
        step_dh, step_bc, step_fc = d_hs.unbind(1), bc.unbind(1), fc.unbind(1)
        step_dg = dgates.unbind(1)
        step_ddc = dgates[..., :k].unflatten(-1, (k // hid, hid)).unbind(1)  # (D, B, k/H, H)
        step_ddh = dgates[..., k:].unbind(1)
        for s in range(t_len - 1, -1, -1):
            dh = step_dh[s + 1]
            if s < t_len - 1:  # dL/dh_s = direct + through every gate of step s+1: one matmul
                dh.baddbmm_(step_dg[s + 1], weight_hh)
            dc = torch.addcmul(dc, dh, step_bc[s])
            step_ddc[s].mul_(dc.unsqueeze(2))
            step_ddh[s].mul_(dh)
            if s or not ctx.zero:  # no dL/dC_{-1} for a zero state that is no input
                dc = dc * step_fc[s]  # dL/dC_{s-1}
        # sum_s dgates_s^T h_{s-1} per direction: one batched matmul over all steps (without
        # step 0 when h_{-1} = 0, whose rows would add nothing).
        s0 = int(ctx.zero)
        d_w = torch.bmm(
            dgates[:, s0:].reshape(n_dir, (t_len - s0) * batch, gh).transpose(1, 2),
            hs[:, s0:-1].reshape(n_dir, (t_len - s0) * batch, hid),
        )
        d_wc = None
        if weight_c is not None:
            a = k - hid
            # Products written into bc and fc, dead by now: fresh buffers would fault in.
            sums = []
            for j, c_read in [*((j, cs[:, :-1]) for j in range(a // hid)), (k // hid, cs[:, 1:])]:
                scratch = bc if j % 2 == 0 else fc
                torch.mul(dgates[..., j * hid : (j + 1) * hid], c_read, out=scratch)
                sums.append(scratch.sum((1, 2)))  # (D, H)
            d_wc = torch.stack(sums, dim=1)  # (D, G-1, H): i/f read C_{t-1}, o reads C_t
        if ctx.zero:
            return dgates, None, None, d_w, d_wc, None
        d_h0 = d_hs[:, 0].baddbmm_(dgates[:, 0], weight_hh)
        return dgates, d_h0, dc, d_w, d_wc, None


def lstm_scan_directions(
    xp: Tensor,
    h0: Tensor | None,
    c0: Tensor | None,
    weight_hh: Tensor,
    weight_c: Tensor | None = None,
    coupled: bool = False,
) -> tuple[Tensor, Tensor]:
    """Run D independent LSTM directions in one time loop over time-major input projections.

    Step s of direction d reads xp[d, s]; a backward direction is run by reversing its inputs in
    time before the call (and its outputs after it). Any memory layout of xp works; a time-major
    one (a (T, D, ...) buffer seen through `.transpose(0, 1)`) saves a copy.

    Args:
        xp: (D, T, B, G*H) pre-activations W_x x + b, gate blocks (i, f, g, o), or (f, g, o)
            when `coupled`.
        h0: (D, B, H) initial h per direction, or None with c0 None: a zero state, for which
            step 0 skips its matmul and peephole terms and the backward pass skips d(h0, C0).
        c0: (D, B, H) initial C per direction, or None (with h0 None).
        weight_hh: (D, G*H, H) recurrent weights per direction.
        weight_c: (D, G-1, H) diagonal peepholes ((i, f, o) or (f, o)) per direction, or None.
        coupled: input gate = 1 - f.

    Returns:
        hs: (D, T+1, B, H); hs[:, 0] = h0, hs[:, s+1] = h after step s (hs[:, -1] is the final h).
        c_last: (D, B, H) final cell state.
    """
    check_rank(xp, 4, "(D, T, B, G*H)", "xp")
    n_dir, t_len, batch, gh = xp.shape
    hid = weight_hh.shape[-1]
    n_gates = 3 if coupled else 4
    check_shape(weight_hh, (n_dir, n_gates * hid, hid), "weight_hh")
    check_shape(xp, (n_dir, t_len, batch, n_gates * hid), "xp")
    if (h0 is None) != (c0 is None):
        raise ValueError(
            "h0, c0: expected both tensors or both None (zero state), got "
            f"h0 {'None' if h0 is None else 'given'} and c0 {'None' if c0 is None else 'given'}"
        )
    if h0 is not None and c0 is not None:
        check_shape(h0, (n_dir, batch, hid), "h0")
        check_shape(c0, (n_dir, batch, hid), "c0")
    if weight_c is not None:
        check_shape(weight_c, (n_dir, n_gates - 1, hid), "weight_c")
    if t_len == 0:
        raise ValueError(f"xp: expected at least one time step, got shape {tuple(xp.shape)}")
    return _LSTMScan.apply(xp, h0, c0, weight_hh.contiguous(), weight_c, coupled)


def lstm_scan(
    xp: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    weight_c: Tensor | None = None,
    coupled: bool = False,
    reverse: bool = False,
) -> tuple[Tensor, Tensor]:
    """Run one LSTM direction over a time-major sequence of input projections.

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
    check_rank(xp, 3, "(T, B, G*H)", "xp")
    if reverse:
        xp = xp.flip(0)
    hs, c_last = lstm_scan_directions(
        xp.unsqueeze(0),
        h0.unsqueeze(0),
        c0.unsqueeze(0),
        weight_hh.unsqueeze(0),
        None if weight_c is None else weight_c.unsqueeze(0),
        coupled,
    )
    hs = hs.squeeze(0)
    return (hs.flip(0) if reverse else hs), c_last.squeeze(0)
