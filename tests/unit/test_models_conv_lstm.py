import pytest
import torch

from forecast.models.conv_lstm import ConvLSTMForecaster


@pytest.mark.parametrize("frames", [None, [4], [4, 6]])
def test_shapes_with_and_without_frame_codec(frames):
    torch.manual_seed(0)
    m = ConvLSTMForecaster(1, horizon=3, hidden_channels=[4], patch=2, frame_channels=frames)
    x = torch.randn(2, 4, 1, 16, 8)
    assert m(x).shape == (2, 3, 1, 16, 8)


def test_frame_codec_refuses_indivisible_grid_and_bad_channels():
    m = ConvLSTMForecaster(1, horizon=2, hidden_channels=[4], patch=1, frame_channels=[4, 4])
    with pytest.raises(ValueError, match="not divisible by 4"):
        m(torch.randn(1, 3, 1, 10, 8))
    with pytest.raises(ValueError, match=r"expected input \(B, T, 1, H, W\)"):
        m(torch.randn(1, 3, 2, 8, 8))
