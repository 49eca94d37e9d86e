"""Training losses that honour missing-data masks: a filled target is never trained on.

Every loss is ``loss(pred, target, mask=None) -> scalar``. ``mask`` is a bool tensor shaped like
``target`` (True = observed); non-finite targets count as missing as well, so a NaN that slipped
past the data layer is skipped rather than turning the loss into NaN. A batch with no observed
target gives a zero loss that is still connected to the graph (the step then changes nothing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def observed(target: Tensor, mask: Tensor | None) -> Tensor:
    """Bool tensor shaped like ``target``: the mask (if any) and finite values.

    Args:
        target: (B, ...) targets.
        mask: (B, ...) bool, True where observed, or None.

    Returns:
        (B, ...) bool.
    """
    if target.is_floating_point():
        valid = torch.isfinite(target)
    else:
        valid = torch.ones_like(target, dtype=torch.bool)
    if mask is None:
        return valid
    if mask.shape != target.shape:
        raise ValueError(
            f"mask: expected the target's shape {tuple(target.shape)}, got {tuple(mask.shape)}"
        )
    return valid & mask.bool()


def _check_same_shape(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} does not match target shape "
            f"{tuple(target.shape)}"
        )


class MaskedLoss(nn.Module):
    """Mean of an elementwise error over observed targets.  pred, target, mask: (B, ...)."""

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        """Per-element error; targets at missing places are already replaced by ``pred``."""
        raise NotImplementedError

    def reduce(self, err: Tensor, valid: Tensor) -> Tensor:
        """Mean over the observed elements."""
        return err.sum() / valid.sum().clamp(min=1)

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """pred, target, mask: (B, ...) -> scalar loss over observed targets."""
        _check_same_shape(pred, target)
        valid = observed(target, mask)
        # Missing targets are replaced by the prediction itself (zero error, zero gradient):
        # filling with 0 would train the net towards the fill value.
        filled = torch.where(valid, target.to(pred.dtype), pred.detach())
        err = torch.where(valid, self.elementwise(pred, filled), torch.zeros_like(pred))
        return self.reduce(err, valid)


class MaskedMSE(MaskedLoss):
    """Mean squared error over observed targets."""

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        """(pred - target)^2."""
        return (pred - target).pow(2)


class MaskedSSE(MaskedLoss):
    """Sum of squared errors over observed targets, per sample (sum / batch size)."""

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        """(pred - target)^2."""
        return (pred - target).pow(2)

    def reduce(self, err: Tensor, valid: Tensor) -> Tensor:
        """Sum over every observed element, divided by the batch size (lr independent of B)."""
        return err.sum() / err.shape[0]


class LatWeightedMSE(MaskedMSE):
    """Squared error weighted by grid row (latitude), as the ``_lat`` metrics weigh it.

    The task hands over the data's row weights (``row_weights``, (H,) for rows on axis -2) at
    build time; without them (data with no latitude) this is :class:`MaskedMSE`. The mean is
    over the observed elements' weights, so an all-ones weighting gives the plain mean.
    """

    row_weights: Tensor | None = None

    def reduce(self, err: Tensor, valid: Tensor) -> Tensor:
        """Weighted mean over the observed elements."""
        if self.row_weights is None:
            return super().reduce(err, valid)
        if err.dim() < 2 or err.shape[-2] != len(self.row_weights):
            raise ValueError(
                f"latitude-weighted loss: expected {len(self.row_weights)} grid rows on axis -2,"
                f" got a target shaped {tuple(err.shape)}"
            )
        w = self.row_weights.to(err)[:, None]  # (H, 1), broadcast over the columns
        return (err * w).sum() / (valid * w).sum().clamp(min=1e-12)


class MaskedMAE(MaskedLoss):
    """Mean absolute error over observed targets."""

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        """|pred - target|."""
        return (pred - target).abs()


class MaskedBCE(MaskedLoss):
    """Binary cross-entropy on logits over observed targets; targets must lie in [0, 1]."""

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """pred: (B, ...) logits; target: (B, ...) in [0, 1] -> scalar."""
        valid = observed(target, mask)
        t = target[valid]
        if t.numel() and (bool((t < 0).any()) or bool((t > 1).any())):
            raise ValueError(
                f"binary cross-entropy: expected targets in [0, 1], got values in "
                f"[{float(t.min())}, {float(t.max())}]"
            )
        return super().forward(pred, target, mask)

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        """Per-element BCE on logits."""
        return F.binary_cross_entropy_with_logits(pred, target, reduction="none")


class MaskedCE(nn.Module):
    """Cross-entropy with the class dimension last, over observed labels.

    Many-to-one classification: logits (B, K), labels (B,). Synced per-step labelling:
    logits (B, T, K), labels (B, T). Any leading shape works as long as it matches.

    Args:
        n_classes: K; labels outside [0, K) are refused.
    """

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes: expected at least 2, got {n_classes}")
        self.n_classes = n_classes

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """pred: (..., K) logits; target: (...) int labels; mask: (...) bool -> scalar."""
        if pred.shape[:-1] != target.shape or pred.shape[-1] != self.n_classes:
            raise ValueError(
                f"cross-entropy: expected logits {(*target.shape, self.n_classes)} for labels "
                f"{tuple(target.shape)}, got {tuple(pred.shape)}"
            )
        valid = observed(target, mask)
        labels = torch.where(valid, target, torch.zeros_like(target)).long()
        seen = labels[valid]
        if seen.numel() and (int(seen.min()) < 0 or int(seen.max()) >= self.n_classes):
            raise ValueError(
                f"cross-entropy: expected labels in [0, {self.n_classes}), got "
                f"[{int(seen.min())}, {int(seen.max())}]"
            )
        err = F.cross_entropy(pred.flatten(0, -2), labels.flatten(), reduction="none")
        err = torch.where(valid.flatten(), err, torch.zeros_like(err))
        return err.sum() / valid.sum().clamp(min=1)
