from functools import partial

import pytest
import torch

from forecast.models.encoders import GridReadout
from forecast.models.heads import ClassHead, DirectHead, PerSensorConvHead
from forecast.models.recurrent import StackedRecurrent
from forecast.models.sequence import SequenceForecaster

B, T, S, F, H = 2, 7, 3, 2, 4


def backbone(bidirectional=True, cell="lstm"):
    return partial(
        StackedRecurrent, hidden_size=8, num_layers=2, cell=cell, bidirectional=bidirectional
    )


def net(**kw):
    torch.manual_seed(0)
    args = dict(
        in_channels=F, horizon=H, n_sensors=S, backbone=backbone(), head=partial(DirectHead)
    )
    args.update(kw)
    return SequenceForecaster(**args)


def x_(seed=0):
    return torch.randn(B, T, S, F, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_deep_birnn_direct_head_shape(cell):
    m = net(backbone=backbone(cell=cell))
    assert m.bidirectional
    assert m(x_()).shape == (B, H, S, F)


def test_per_sensor_cnn_rnn_shape_and_own_weights_per_sensor():
    m = net(
        sensor_encoder=partial(PerSensorConvHead, channels=[4, 5], kernel_size=3),
        out_channels=1,
        head=partial(DirectHead, hidden=16),
    )
    assert m(x_()).shape == (B, H, S, 1)
    conv = m.sensor_encoder.convs[0]
    assert conv.groups == S  # one CNN per sensor


def test_per_sensor_cnn_is_causal_and_sensor_separate():
    enc = PerSensorConvHead(S, F, [4, 4], kernel_size=3)
    x = x_()
    x2 = x.clone()
    x2[:, 4, 1] += 1.0  # sensor 1 at step 4
    d = (enc(x2) - enc(x)).abs().reshape(B, T, S, 4).sum(dim=(0, 3))
    assert torch.all(d[:4] == 0)  # earlier steps unaffected
    assert torch.all(d[:, [0, 2]] == 0)  # other sensors unaffected
    assert d[4:, 1].sum() > 0


def test_hybrid_grid_read_out_at_sensor_cells_and_pooled():
    cells = ((0, 0), (3, 5), (7, 7))
    grid = torch.randn(B, T, 2, 8, 8)
    for readout in ("cells", "pool"):
        m = net(
            grid_encoder=partial(GridReadout, hidden_channels=[4], readout=readout),
            grid_channels=2,
            sensor_cells=cells,
            sensor_encoder=partial(PerSensorConvHead, channels=[4]),
        )
        assert m(x_(), grid=grid).shape == (B, H, S, F)
    with pytest.raises(ValueError, match="grid"):
        m(x_())


def test_grid_readout_reads_the_named_cell():
    enc = GridReadout(1, [2], kernel_size=1, readout="cells", sensor_cells=((2, 3),))
    g = torch.zeros(1, 3, 1, 6, 6)
    base = enc(g)
    g[:, :, :, 0, 0] = 5.0  # far from the sensor; kernel 1 cannot carry it over
    assert torch.allclose(enc(g), base)
    g[:, :, :, 2, 3] = 5.0
    assert not torch.allclose(enc(g), base)


def test_many_to_one_classification_head():
    m = net(head=partial(ClassHead, n_classes=5))
    assert m(x_()).shape == (B, 5)


def test_bidirectional_reads_only_the_context():
    # the forecast is a function of the context alone: whatever the horizon holds, the same output
    m = net().eval()
    x = x_()
    full = torch.cat([x, torch.randn(B, H, S, F)], dim=1)
    other = torch.cat([x, torch.randn(B, H, S, F) * 100], dim=1)
    with torch.no_grad():
        assert torch.equal(m(full[:, :T]), m(other[:, :T]))
    # and every context step, the first included, reaches the forecast (backward direction)
    xg = x.clone().requires_grad_(True)
    m(xg).sum().backward()
    assert torch.all(xg.grad.abs().sum(dim=(0, 2, 3)) > 0)


def test_residual_and_bad_inputs():
    m = net(residual=True, variables=("a", "b"), targets=("b",), out_channels=1)
    x = x_()
    assert m(x).shape == (B, H, S, 1)
    with pytest.raises(ValueError, match="every target must be an input"):
        net(residual=True, variables=("a", "b"), targets=("c",), out_channels=1)
    with pytest.raises(ValueError, match="expected 2 input features"):
        net()(torch.randn(B, T, S, 3))
    with pytest.raises(ValueError, match="expected 3 sensors"):
        net()(torch.randn(B, T, 4, F))
