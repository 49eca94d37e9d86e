"""Trainer keyword arguments from a ``conf/trainer`` mapping, given the task they will train."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as L

from forecast.training.threads import set_threads


def trainer_options(options: Mapping[str, Any], task: L.LightningModule) -> dict[str, Any]:
    """Apply ``threads`` and return the rest, ready for ``instantiate`` / ``L.Trainer(**...)``.

    ``threads`` is not a Trainer argument: it sets torch's intra-op threads here, before any
    training thread pool starts. A manually optimised task (TBPTT) gets the Trainer's clipping
    settings through ``task.clip_manually``, because Lightning refuses ``gradient_clip_val``
    under manual optimisation.

    Args:
        options: the resolved ``cfg.trainer`` (``_target_`` may be included).
        task: the LightningModule to train.

    Returns:
        The options without ``threads`` (and, for a manual task, without clipping).
    """
    out = dict(options)
    set_threads(out.pop("threads", None))
    if not task.automatic_optimization:
        value = out.pop("gradient_clip_val", None)
        algorithm = out.pop("gradient_clip_algorithm", None)
        clip = getattr(task, "clip_manually", None)
        if callable(clip):
            clip(value, algorithm)
    return out
