"""in_channels=0: conv cells and stacks that only step with x=None own no input weights."""

import pytest
import torch

from forecast.models.cells import ConvGRUCell, ConvLSTMCell
from forecast.models.conv_recurrent import ConvRecurrentStack


def _states(cell, layers=2, b=2, ch=4, h=5, w=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda: torch.randn(b, ch, h, w, generator=g)  # noqa: E731
    return [(make(), make()) if cell == "lstm" else make() for _ in range(layers)]


@pytest.mark.parametrize("cls", [ConvLSTMCell, ConvGRUCell])
def test_cell_without_input_weights_steps_like_a_full_cell_with_no_input(cls):
    torch.manual_seed(0)
    full = cls(in_channels=3, hidden_channels=4, kernel_size=3)
    bare = cls(in_channels=0, hidden_channels=4, kernel_size=3)
    assert bare.weight_x is None
    assert "weight_x" not in dict(bare.named_parameters())
    missing = bare.load_state_dict(full.state_dict(), strict=False)
    assert missing.unexpected_keys == ["weight_x"] and not missing.missing_keys
    state = _states("lstm" if cls is ConvLSTMCell else "gru", layers=1)[0]
    want, _ = full.step(None, state)
    got, _ = bare.step(None, state)
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="in_channels=0.*expected x=None"):
        bare.project_input(torch.randn(2, 3, 5, 7))
    with pytest.raises(ValueError, match="in_channels: expected an int >= 0, got -1"):
        cls(in_channels=-1, hidden_channels=4)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_forecaster_stack_every_parameter_gets_a_gradient(cell):
    """What DDP's unused-parameter check needs: an x=None run reaches every parameter."""
    torch.manual_seed(1)
    states = _states(cell)
    bare = ConvRecurrentStack(0, [4, 4], cell=cell)
    out, _ = bare(None, states=states, steps=3)
    assert out.shape == (2, 3, 4, 5, 7)
    out.square().sum().backward()
    assert all(p.grad is not None for p in bare.parameters())
    # The same stack built with input channels leaves its input weights without a gradient.
    full = ConvRecurrentStack(3, [4, 4], cell=cell)
    full(None, states=states, steps=3)[0].square().sum().backward()
    assert full.cells[0].weight_x.grad is None
    with pytest.raises(ValueError, match="in_channels=0.*expected x=None"):
        bare(torch.randn(2, 3, 1, 5, 7))
