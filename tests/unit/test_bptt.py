"""The lecture's BPTT by hand, and vanishing gradients: tanh RNN vs the LSTM cell path."""

import torch

from forecast.models.cells import LSTMCell, RNNCell


def test_hand_written_bptt_equals_autograd():
    """dL/dW = sum_t sum_{k<=t} dL_t/ds_t (prod_{j=k+1}^{t} ds_j/ds_{j-1}) d+s_k/dW."""
    torch.manual_seed(0)
    h, f, o, t_len = 5, 3, 4, 6
    cell = RNNCell(f, h, "tanh").double()
    v = torch.randn(o, h, dtype=torch.float64)
    c = torch.randn(o, dtype=torch.float64)
    x = torch.randn(t_len, f, dtype=torch.float64)
    labels = torch.randint(0, o, (t_len,))
    u, w, b = cell.weight_ih.detach(), cell.weight_hh.detach(), cell.bias.detach()

    # Forward as in the lecture: s_t = tanh(U x_t + W s_{t-1} + b), y_t = softmax(V s_t + c).
    s = [torch.zeros(h, dtype=torch.float64)]
    for t in range(t_len):
        s.append(torch.tanh(u @ x[t] + w @ s[-1] + b))
    grad_w = torch.zeros_like(w)
    for t in range(1, t_len + 1):
        y = torch.softmax(v @ s[t] + c, dim=0)
        d = torch.nn.functional.one_hot(labels[t - 1], o).double()
        delta = v.t() @ (y - d)  # dL_t/ds_t for cross-entropy after softmax
        for k in range(t, 0, -1):
            delta_pre = delta * (1 - s[k] ** 2)  # through tanh at step k
            grad_w += torch.outer(delta_pre, s[k - 1])  # d+s_k/dW: W's direct use at step k
            delta = w.t() @ delta_pre  # ds_k/ds_{k-1}: one more factor of the product

    state, loss = None, 0.0
    for t in range(t_len):
        out, state = cell(x[t : t + 1], state)
        logits = out[0] @ v.t() + c
        loss = loss + torch.nn.functional.cross_entropy(logits[None], labels[t : t + 1])
    loss.backward()
    torch.testing.assert_close(cell.weight_hh.grad, grad_w)
    assert grad_w.abs().max() > 1e-3  # not trivially zero


def _jacobian_norm(fn, s0):
    return torch.autograd.functional.jacobian(fn, s0).norm().item()  # Frobenius


def test_vanishing_gradient_tanh_rnn_but_not_lstm_cell_path():
    torch.manual_seed(1)
    h = 8
    rnn = RNNCell(h, h, "tanh").double()
    lstm = LSTMCell(h, h, forget_bias=20.0).double()  # f ≈ 1
    x = torch.randn(60, 1, h, dtype=torch.float64)

    def rnn_last(t_len):
        def fn(s0):
            s = s0
            for t in range(t_len):
                s, _ = rnn(x[t], s)
            return s[0]

        return fn

    def lstm_cell_last(t_len):
        def fn(c0):
            state = (torch.zeros(1, h, dtype=torch.float64), c0)
            for t in range(t_len):
                _, state = lstm(x[t], state)
            return state[1][0]

        return fn

    s0 = torch.randn(1, h, dtype=torch.float64) * 0.1
    rnn_norms = [_jacobian_norm(rnn_last(t), s0) for t in (1, 5, 20, 50)]
    lstm_norms = [_jacobian_norm(lstm_cell_last(t), s0) for t in (1, 5, 20, 50)]
    assert all(a > b for a, b in zip(rnn_norms, rnn_norms[1:])), rnn_norms
    assert rnn_norms[-1] < 1e-6 * rnn_norms[0], rnn_norms
    # The cell path contributes prod_t diag(f_t) ≈ I to dC_T/dC_0, so its norm does not fall
    # below ||I||_F = sqrt(H) (paths through h may add to it; they do not remove it).
    assert min(lstm_norms) > 0.9 * h**0.5, lstm_norms
    assert lstm_norms[-1] > 1e5 * rnn_norms[-1]
