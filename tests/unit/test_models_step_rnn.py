import pytest
import torch

from forecast.models.step_rnn import StepRNN


def make(**kw):
    torch.manual_seed(0)
    args = dict(in_channels=2, horizon=3, hidden_size=8, n_sensors=4)
    args.update(kw)
    return StepRNN(**args)


def test_rollout_and_sequence_shapes():
    m = make()
    x = torch.randn(2, 5, 4, 2)
    assert m(x).shape == (2, 3, 4, 2)
    out, state = m.forward_sequence(x)
    assert out.shape == x.shape
    g = make(in_channels=1, n_sensors=None, grid=(3, 4))
    assert g.gridded and g(torch.randn(2, 5, 1, 3, 4)).shape == (2, 3, 1, 3, 4)


def test_state_carry_equals_one_pass():
    m = make()
    x = torch.randn(2, 6, 4, 2)
    whole, _ = m.forward_sequence(x)
    a, s = m.forward_sequence(x[:, :4])
    b, _ = m.forward_sequence(x[:, 4:], s)
    assert torch.allclose(torch.cat([a, b], 1), whole, atol=1e-6)


def test_teacher_forcing_feeds_targets():
    m = make()
    x = torch.randn(2, 5, 4, 2)
    t1, t2 = torch.randn(2, 3, 4, 2), torch.randn(2, 3, 4, 2)
    free = m(x)
    assert torch.equal(free, m(x, targets=t1, teacher_forcing=0.0))
    f1, f2 = m(x, targets=t1, teacher_forcing=1.0), m(x, targets=t2, teacher_forcing=1.0)
    assert torch.equal(f1[:, 0], f2[:, 0])  # lead 1 reads only the context
    assert not torch.allclose(f1[:, 1], f2[:, 1])  # lead 2 read the true lead 1
    with pytest.raises(ValueError, match="needs `targets`"):
        m(x, teacher_forcing=0.5)


def test_labelling_and_refusals():
    lab = make(n_classes=3, bidirectional=True)
    assert lab(torch.randn(2, 5, 4, 2)).shape == (2, 5, 3)
    with pytest.raises(ValueError, match="read the future"):
        make(bidirectional=True)
    with pytest.raises(ValueError, match="out_channels must equal"):
        make(out_channels=1)
    with pytest.raises(ValueError, match="expected steps shaped"):
        make()(torch.randn(2, 5, 3, 2))
