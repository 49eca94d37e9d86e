"""Evaluation shards under DDP: every validation and test window is scored exactly once.

Lightning gives every loader a ``DistributedSampler`` under DDP. For training that is right (each
rank its own shard, equal lengths keep the gradient all-reduce in step), but for evaluation the
sampler pads the split with repeated windows until it divides by the world size, and the padded
windows are then counted twice in the pooled metrics. Evaluation loaders therefore get Lightning's
``UnrepeatedDistributedSampler`` (shards may differ by one window); Lightning keeps a sampler that
is already distributed. Uneven shards are safe here: evaluation runs without gradients (DDP syncs
no buffers), the metric states are summed across ranks once, in ``compute``, and epoch-level
logging syncs once at the end of the epoch.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import Dataset, Sampler


def evaluation_sampler(dataset: Dataset[Any]) -> Sampler[int] | None:
    """An unpadded, in-order shard of ``dataset`` for this rank; None outside a multi-process run.

    Args:
        dataset: the validation or test windows (sized).

    Returns:
        The sampler to hand to the ``DataLoader``, or None to let it read the split in order.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return UnrepeatedDistributedSampler(dataset, shuffle=False)
