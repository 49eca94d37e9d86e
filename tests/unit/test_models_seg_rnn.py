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


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_decoder_equals_one_rnn_step_per_query_from_the_repeated_state(cell):
    m = make(cell=cell, horizon=10).eval()  # m = 3 output segments
    b, n, steps = 2, m.series, m.n_out
    seg = m.embed(torch.randn(b * n, 3, m.segment))
    with torch.no_grad():
        _, state = m.rnn(seg)
        query = torch.cat(
            [m.pos[None].expand(n, -1, -1), m.chan[:, None].expand(-1, steps, -1)], dim=-1
        ).repeat(b, 1, 1)
        query = query.reshape(b * n * steps, 1, -1)
        if isinstance(state, tuple):
            repeated = tuple(s.repeat_interleave(steps, dim=1) for s in state)
        else:
            repeated = state.repeat_interleave(steps, dim=1)
        expected, _ = m.rnn(query, repeated)  # the plain form: B*N*m one-step sequences
        got = m._decode(state, b)
    assert got.shape == (b, n, steps, 8)
    assert torch.allclose(got.reshape(b * n * steps, -1), expected[:, 0], atol=1e-6)
