import pytest
import torch

from forecast.models.conv_lstm import ConvLSTMForecaster
from forecast.models.encoders import FrameEncoder


@pytest.mark.parametrize("frames", [None, [4], [4, 6]])
def test_shapes_with_and_without_frame_codec(frames):
    torch.manual_seed(0)
    m = ConvLSTMForecaster(1, horizon=3, hidden_channels=[4], patch=2, frame_channels=frames)
    x = torch.randn(2, 4, 1, 16, 8)
    assert m(x).shape == (2, 3, 1, 16, 8)


@pytest.mark.parametrize(
    ("grid", "patch", "frames"),
    [((25, 53), 2, None), ((33, 49), 4, None), ((33, 49), 2, [4]), ((10, 8), 1, [4, 4])],
)
def test_grid_the_patch_does_not_divide_is_padded_inside_the_net(grid, patch, frames):
    torch.manual_seed(0)
    m = ConvLSTMForecaster(1, horizon=2, hidden_channels=[4], patch=patch, frame_channels=frames)
    x = torch.randn(2, 3, 1, *grid)
    y = m(x)
    assert y.shape == (2, 2, 1, *grid) and bool(torch.isfinite(y).all())


def test_padding_is_cropped_off_and_reads_only_the_grid():
    # the forecast of a padded grid depends on the grid alone: its gradient reaches every input
    # cell and the output keeps the input's exact size (nothing of the padding is returned)
    torch.manual_seed(0)
    m = ConvLSTMForecaster(1, horizon=1, hidden_channels=[4], patch=4)
    x = torch.randn(1, 2, 1, 9, 7, requires_grad=True)
    y = m(x)
    assert y.shape == (1, 1, 1, 9, 7)
    y.sum().backward()
    assert x.grad is not None and bool((x.grad[:, -1] != 0).all())


def test_frame_codec_refuses_indivisible_grid_and_bad_channels():
    with pytest.raises(ValueError, match="not divisible by 4"):
        FrameEncoder(1, [4, 4])(torch.randn(1, 3, 1, 10, 8))
    m = ConvLSTMForecaster(1, horizon=2, hidden_channels=[4], patch=1, frame_channels=[4, 4])
    with pytest.raises(ValueError, match=r"expected input \(B, T, 1, H, W\)"):
        m(torch.randn(1, 3, 2, 8, 8))


@pytest.mark.parametrize("grid", [(25, 53), (21, 33)])
def test_coordinate_channels_let_a_constant_field_give_a_forecast_that_varies_in_space(grid):
    # without coordinates a field that is the same everywhere gets the same forecast everywhere
    # away from the edges (every convolution is the same everywhere); with them it need not
    torch.manual_seed(0)
    x = torch.ones(1, 3, 1, *grid)
    inner = (slice(None),) * 3 + (slice(7, -7), slice(7, -7))  # beyond the edges' reach
    plain = ConvLSTMForecaster(1, horizon=2, hidden_channels=[4], patch=1)(x)[inner]
    assert float(plain.std(dim=(-2, -1)).max()) < 1e-6  # per lead, over space
    torch.manual_seed(0)
    coords = ConvLSTMForecaster(1, horizon=2, hidden_channels=[4], patch=2, coords=True)(x)
    assert coords.shape == (1, 2, 1, *grid) and float(coords[inner].std(dim=(-2, -1)).min()) > 1e-4
