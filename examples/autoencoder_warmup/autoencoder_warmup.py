"""A training procedure from outside the package: the first ``steps`` steps train an autoencoder (every KL weight
0), the rest are standard steps. Registering it under ``procedures`` is all it takes; the gin file selects it."""

from __future__ import annotations

from seqvae_zoo.registry import PROCEDURES
from seqvae_zoo.training.procedures.base import Procedure, check_setting


@PROCEDURES.register("autoencoder_warmup")
class AutoencoderWarmup(Procedure):
    """KL weights 0 for the first ``steps`` steps of the run, then the KL schedule's; one step per batch.

    It depends only on the run's step, which the checkpoint holds, so it needs no state of its own to resume."""

    def __init__(self, steps: int = 1000):
        check_setting("autoencoder_warmup", "steps", steps, True, lambda v: v >= 0, ">= 0")
        self.steps = steps

    def train_step(self, trainer, batch) -> None:
        trainer.update(batch)

    def weights(self, trainer, step: int, weights: dict[str, float]) -> dict[str, float]:
        if step >= self.steps:
            return weights
        return {**weights, **{name: 0.0 for name in trainer.model.kl_terms}}
