"""The standard step: one optimizer step of the whole model on each batch."""

from __future__ import annotations

from seqvae_zoo.registry import PROCEDURES
from seqvae_zoo.training.procedures.base import Procedure


@PROCEDURES.register("standard")
class Standard(Procedure):
    """Each batch: the model's objective, one step of every parameter (the paper's training)."""

    def train_step(self, trainer, batch) -> None:
        trainer.update(batch)
