import pytest
import torch

from forecast.models.seg_rnn import SegRNN


def make(**kw):
    torch.manual_seed(0)
    args = dict(in_channels=2, context=12, horizon=5, segment=4, hidden_size=8, n_sensors=3)
    args.update(kw)
    return SegRNN(**args)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("norm", ["none", "last", "revin"])
def test_shapes(cell, norm):
    m = make(cell=cell, instance_norm=norm)
    assert m(torch.randn(2, 12, 3, 2)).shape == (2, 5, 3, 2)


def test_revin_is_equivariant_to_shift_and_scale():
    m = make(instance_norm="revin").eval()
    x = torch.randn(2, 12, 3, 2)
    with torch.no_grad():
        assert torch.allclose(m(3.0 * x + 7.0), 3.0 * m(x) + 7.0, atol=1e-4)


def test_channels_are_independent_and_targets_selected():
    m = make(variables=("a", "b"), targets=("b",))
    x = torch.randn(2, 12, 3, 2)
    y = m(x)
    assert y.shape == (2, 5, 3, 1)
    x2 = x.clone()
    x2[..., 0] += 1.0  # feature "a" is not a target: no effect on "b"'s forecast
    assert torch.allclose(m(x2), y)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="not a multiple of segment"):
        make(context=10)
    with pytest.raises(ValueError, match=r"expected x \(B, 12, 3, 2\)"):
        make()(torch.randn(2, 10, 3, 2))
    with pytest.raises(ValueError, match="must be"):
        make(variables=("a", "b"), targets=("c",))
