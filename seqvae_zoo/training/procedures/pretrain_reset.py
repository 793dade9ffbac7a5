"""Pretrain, then reset the decoder (Li et al. 2019, "A surprisingly effective fix for deep latent variable modeling
of text"): the encoder learns from an autoencoder first, and the fresh decoder cannot ignore a latent that already
carries the sentence."""

from __future__ import annotations

from seqvae_zoo.registry import PROCEDURES
from seqvae_zoo.regularizers.free_bits import FreeBits
from seqvae_zoo.training.procedures.base import Procedure, ProcedureError, check_setting, require_encoder


@PROCEDURES.register("pretrain_reset")
class PretrainThenReset(Procedure):
    """Li et al.'s fix: an autoencoder first, then a fresh decoder trained with free bits.

    ``pretrain_epochs`` epochs with every KL weight 0 (an autoencoder with a noisy code), then the decoder is
    re-initialized (its parameters back to their initial draw, its Adam moments cleared; the encoder, prior and
    auxiliary heads are kept) and training goes on with the KL schedule's weights and free bits. Until the reset
    the checkpoint holds the decoder's initial draw too.

    Free bits are the model's own regularizer (``models.SeqVAE.regularizers = [@regularizers.free_bits()]``), which
    the procedure requires: while every KL weight is 0 they cost nothing, so they act from the reset on. (Li et al.
    floor each dimension's batch-mean KL: ``regularizers.free_bits.per_dimension = True``, with their floor per
    dimension as ``regularizers.free_bits.nats``.) The ``pretraining`` column
    of an epoch's row is 1 for the epochs before the reset.
    """

    def __init__(self, pretrain_epochs: int = 1):
        check_setting("pretrain_reset", "pretrain_epochs", pretrain_epochs, True, lambda v: v >= 1, ">= 1")
        self.pretrain_epochs = pretrain_epochs
        self.pretraining = True
        self.initial_decoder: dict | None = None  # the decoder's initial draw, kept until the reset

    def bind(self, trainer) -> None:
        require_encoder(self, trainer)
        if not any(isinstance(r, FreeBits) for r in trainer.model.regularizers):
            raise ProcedureError("procedures.pretrain_reset trains with free bits after the reset, and the model has "
                                 "none: add models.SeqVAE.regularizers = [@regularizers.free_bits()] (and set "
                                 "regularizers.free_bits.nats)")
        if self.pretrain_epochs >= trainer.settings.epochs:
            raise ProcedureError(f"procedures.pretrain_reset.pretrain_epochs ({self.pretrain_epochs}) leaves no epoch "
                                 f"after the reset in training.TrainingSettings.epochs = {trainer.settings.epochs}: "
                                 "pretrain for fewer epochs or train for more")
        self.initial_decoder = {name: value.detach().clone()
                                for name, value in trainer.model.decoder.state_dict().items()}

    def train_step(self, trainer, batch) -> None:
        trainer.update(batch)

    def weights(self, trainer, step: int, weights: dict[str, float]) -> dict[str, float]:
        if not self.pretraining:
            return weights
        return {**weights, **{name: 0.0 for name in trainer.model.kl_terms}}

    def end_epoch(self, trainer) -> dict[str, float]:
        row = {"pretraining": float(self.pretraining)}
        if self.pretraining and trainer.epoch >= self.pretrain_epochs:
            self._reset_decoder(trainer)
        return row

    def _reset_decoder(self, trainer) -> None:
        decoder = trainer.model.decoder
        decoder.load_state_dict(self.initial_decoder)
        for parameter in decoder.parameters():
            trainer.optimizer.state.pop(parameter, None)
        self.pretraining, self.initial_decoder = False, None

    def state_dict(self) -> dict:
        return {"pretraining": self.pretraining, "initial_decoder": self.initial_decoder}

    def load_state_dict(self, state: dict) -> None:
        self.pretraining, self.initial_decoder = state["pretraining"], state["initial_decoder"]
