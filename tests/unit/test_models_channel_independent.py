import functools

import pytest
import torch

from forecast.models.channel_independent import ChannelIndependent
from forecast.models.heads import DirectHead
from forecast.models.recurrent import StackedRecurrent
from forecast.models.revin import instance_stats
from forecast.models.sequence import SequenceForecaster

INNER = functools.partial(
    SequenceForecaster,
    backbone=functools.partial(
        StackedRecurrent, hidden_size=8, num_layers=2, cell="gru", bidirectional=True
    ),
    head=functools.partial(DirectHead),
)


def make(**kw):
    torch.manual_seed(0)
    args = dict(in_channels=2, context=12, horizon=5, net=INNER, n_sensors=3, segment=4)
    args.update(kw)
    return ChannelIndependent(**args)


@pytest.mark.parametrize("norm", ["none", "last", "mean", "revin"])
@pytest.mark.parametrize("segment", [1, 4])
def test_shapes(norm, segment):
    m = make(instance_norm=norm, segment=segment)
    assert m(torch.randn(2, 12, 3, 2)).shape == (2, 5, 3, 2)
    assert make(n_sensors=None)(torch.randn(2, 12, 2)).shape == (2, 5, 2)


def test_series_do_not_mix():
    m = make().eval()
    x = torch.randn(2, 12, 3, 2)
    with torch.no_grad():
        y = m(x)
        x2 = x.clone()
        x2[:, :, 1, 0] += torch.randn(12)  # one series changes: only its own forecast may
        y2 = m(x2)
    changed = (y2 - y).abs().amax(dim=1) > 1e-6  # (B, S, F)
    assert changed[:, 1, 0].all() and changed.sum() == 2


def test_same_weights_on_any_column_count_and_level():
    m = make(instance_norm="revin").eval()
    x = torch.randn(2, 12, 3, 2)
    wide = ChannelIndependent(2 * 2, 12, 5, INNER, n_sensors=3, segment=4, instance_norm="revin")
    wide.load_state_dict(m.state_dict())
    with torch.no_grad():
        y = m(x)
        y_wide = wide.eval()(torch.cat([x, 50.0 * x + 9.0], dim=-1))
    assert torch.allclose(y_wide[..., :2], y, atol=1e-5)
    assert torch.allclose(y_wide[..., 2:], 50.0 * y + 9.0, atol=1e-3)


def test_targets_subset_and_bad_input():
    m = make(variables=("a", "b"), targets=("b",))
    assert m(torch.randn(2, 12, 3, 2)).shape == (2, 5, 3, 1)
    with pytest.raises(ValueError, match="not a multiple of segment"):
        make(context=10)
    with pytest.raises(ValueError, match="must be among the inputs"):
        make(variables=("a", "b"), targets=("c",))
    with pytest.raises(ValueError, match=r"expected x \(B, 12, 3, 2\)"):
        make()(torch.randn(2, 10, 3, 2))


def test_instance_stats():
    z = torch.tensor([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]])
    shift, scale = instance_stats(z, "last")
    assert shift.flatten().tolist() == [3.0, 4.0] and (scale == 1).all()
    shift, scale = instance_stats(z, "revin")
    assert shift.flatten().tolist() == [2.0, 4.0] and scale[1, 0] == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="instance_norm"):
        instance_stats(z, "median")


def test_per_sensor_encoder_composes_inside():
    from forecast.models.heads import PerSensorConvHead

    inner = functools.partial(
        INNER, sensor_encoder=functools.partial(PerSensorConvHead, channels=[4], kernel_size=2)
    )
    m = make(net=inner)
    assert m(torch.randn(2, 12, 3, 2)).shape == (2, 5, 3, 2)
