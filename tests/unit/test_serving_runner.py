"""The served net's inference graph: used only where it reproduces the eager net."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from forecast.models.conv_lstm import ConvLSTMForecaster
from forecast.serving.runner import inference_runner


def probe(*shape):
    return torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))


def test_conv_lstm_is_traced_and_matches_eager_at_any_batch_size():
    torch.manual_seed(0)
    net = ConvLSTMForecaster(1, 3, [4, 4], patch=2).eval()
    runner = inference_runner(net, probe(5, 1, 8, 6))
    assert runner.kind == "torchscript" and not runner.reason
    x = torch.randn(4, 5, 1, 8, 6)
    with torch.inference_mode():
        torch.testing.assert_close(runner.fn(x), net(x), rtol=1e-5, atol=1e-5)


class SignBranch(nn.Module):
    """Python control flow on the data: a trace records only the branch of its probe."""

    def forward(self, x):
        return x * 2 if float(x.sum()) > 0 else x * 3


class DictOut(nn.Module):
    def forward(self, x):
        return {"y": x + 1}


def test_data_dependent_branch_falls_back_to_eager():
    net = SignBranch().eval()
    runner = inference_runner(net, probe(3, 4).abs())
    assert runner.kind == "eager" and "differs" in runner.reason
    assert runner.fn is net


def test_untraceable_net_falls_back_to_eager_with_the_reason():
    runner = inference_runner(DictOut().eval(), probe(3))
    assert runner.kind == "eager" and "tracing failed" in runner.reason


def test_probe_must_be_one_sample_and_net_in_eval_mode():
    net = ConvLSTMForecaster(1, 2, [4])
    with pytest.raises(ValueError, match="eval mode"):
        inference_runner(net, probe(3, 1, 4, 4))
    with pytest.raises(ValueError, match=r"one sample \(1, \*sample_shape\), got \(2, 3\)"):
        inference_runner(net.eval(), torch.zeros(2, 3))
