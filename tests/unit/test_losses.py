import pytest
import torch

from forecast.training.losses import (
    LatWeightedMSE,
    MaskedBCE,
    MaskedCE,
    MaskedMAE,
    MaskedMSE,
    MaskedSSE,
)


def test_mse_ignores_masked_and_nan_targets():
    pred = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    target = torch.tensor([[0.0, float("nan"), 3.0, 100.0]])
    mask = torch.tensor([[True, True, True, False]])
    # only the first and third entries count: ((1-0)^2 + 0) / 2
    assert MaskedMSE()(pred, target, mask).item() == pytest.approx(0.5)


def test_masked_targets_give_no_gradient():
    pred = torch.zeros(2, 3, requires_grad=True)
    target = torch.ones(2, 3)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    MaskedMSE()(pred, target, mask).backward()
    assert torch.equal(pred.grad != 0, mask)


def test_sse_and_mae_hand_values():
    pred = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    target = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    assert MaskedSSE()(pred, target).item() == pytest.approx((1 + 4 + 4) / 2)
    assert MaskedMAE()(pred, target).item() == pytest.approx((1 + 2 + 2) / 4)


def test_bce_matches_torch_and_refuses_out_of_range():
    logits = torch.tensor([[0.3, -1.2, 2.0]])
    target = torch.tensor([[1.0, 0.0, 1.0]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert MaskedBCE()(logits, target).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        MaskedBCE()(logits, torch.tensor([[2.0, 0.0, 1.0]]))


def test_ce_many_to_one_and_synced_with_mask():
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, 1, 1])
    expected = torch.nn.functional.cross_entropy(logits, labels)
    assert MaskedCE(3)(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    seq = torch.randn(2, 5, 3)
    seq_labels = torch.randint(0, 3, (2, 5))
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[:, :2] = True
    ref = torch.nn.functional.cross_entropy(
        seq[:, :2].reshape(-1, 3), seq_labels[:, :2].reshape(-1)
    )
    assert MaskedCE(3)(seq, seq_labels, mask).item() == pytest.approx(ref.item(), rel=1e-6)


def test_ce_refuses_labels_out_of_range_and_bad_shapes():
    with pytest.raises(ValueError, match=r"labels in \[0, 3\), got \[0, 5\]"):
        MaskedCE(3)(torch.randn(2, 3), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="expected logits"):
        MaskedCE(3)(torch.randn(2, 4), torch.tensor([0, 1]))


def test_shape_mismatch_names_both_sides():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        MaskedMSE()(torch.zeros(2, 3), torch.zeros(2, 4))


def test_all_missing_batch_is_zero_and_differentiable():
    pred = torch.ones(2, 2, requires_grad=True)
    loss = MaskedMSE()(pred, torch.full((2, 2), float("nan")))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(pred.grad == 0)


def test_lat_weighted_mse_weighs_rows_and_honours_the_mask():
    pred = torch.zeros(2, 3, 2, 4)  # (B, T, H, W): rows on axis -2
    target = torch.ones(2, 3, 2, 4)
    target[:, :, 1] = 3.0  # row 1 errs by 3 (squared 9), row 0 by 1
    loss = LatWeightedMSE()
    assert loss(pred, target).item() == pytest.approx(5.0)  # no weights: the plain mean
    loss.row_weights = torch.tensor([3.0, 1.0])
    assert loss(pred, target).item() == pytest.approx((3 * 1 + 1 * 9) / 4)
    mask = torch.ones_like(target, dtype=torch.bool)
    mask[:, :, 0] = False  # only row 1 observed: its own error, whatever the weights
    assert loss(pred, target, mask).item() == pytest.approx(9.0)
    with pytest.raises(ValueError, match="2 grid rows"):
        loss(torch.zeros(2, 3, 5, 4), torch.ones(2, 3, 5, 4))
