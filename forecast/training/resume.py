"""Resuming a fit exactly: the training shuffle's generator state travels in the checkpoint."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as L
import torch

KEY = "train_shuffle_generator"


def _generator(trainer: L.Trainer) -> torch.Generator | None:
    loader = trainer.train_dataloader
    sampler = getattr(loader, "sampler", None)
    gen = getattr(sampler, "generator", None)
    return gen if isinstance(gen, torch.Generator) else None


class ShuffleState(L.Callback):
    """Carry the training sampler's generator through checkpoints: a resume shuffles exactly.

    A seeded ``DataLoader`` generator advances once per epoch; a resumed fit builds a fresh
    loader whose generator restarts, so without this it would repeat epoch 1's order. A
    ``DistributedSampler`` (seeded per epoch) needs nothing and is left alone.
    """

    def __init__(self) -> None:
        """Start with no state to restore."""
        self._pending: torch.Tensor | None = None

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Store the generator's state beside the loop state."""
        gen = _generator(trainer)
        if gen is not None:
            checkpoint[KEY] = gen.get_state()

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Keep the state until the loader exists (it is built after the restore)."""
        self._pending = checkpoint.get(KEY)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Hand a restored state to the training loader as soon as it is built.

        Lightning builds the loader and draws the first batch in one step after every hook of
        a resumed fit has run, so the state is applied inside the loader hook itself.
        """
        if self._pending is None:
            return
        owner: Any = getattr(trainer, "datamodule", None) or pl_module
        build = owner.train_dataloader

        def restored() -> Any:
            loader = build()
            gen = getattr(getattr(loader, "sampler", None), "generator", None)
            if isinstance(gen, torch.Generator) and self._pending is not None:
                gen.set_state(self._pending)
            self._pending = None
            owner.train_dataloader = build  # once: later reloads start as they always do
            return loader

        owner.train_dataloader = restored
