"""Aggressive inference-network training (He et al. 2019, "Lagging inference networks and posterior collapse in
variational autoencoders", Algorithm 1)."""

from __future__ import annotations

import math

from seqvae_zoo.registry import PROCEDURES
from seqvae_zoo.training.procedures.base import Procedure, ProcedureError, check_setting, require_encoder


@PROCEDURES.register("aggressive")
class Aggressive(Procedure):
    """He et al.'s aggressive training: encoder-only inner loops and one decoder step, while the MI rises.

    While aggressive: per batch, encoder-only steps until the encoder has caught up with the decoder, then one
    decoder-only step on the batch (every parameter outside the encoder: decoder, prior, auxiliary heads); once
    I_q(x; z) on the validation split stops rising, standard steps.

    The inner loop starts on the batch itself and draws each further batch from the epoch's stream (so an epoch
    still reads every batch once, counting the inner ones, and a resumed run draws the same ones); it stops after
    ``max_inner_steps`` steps, or when the -ELBO per token over the last ``window`` inner batches is no lower than
    over the ``window`` before (He et al.: at most 100 steps, checked every few batches). The mutual information is
    checked at the end of every epoch: aggressive training ends at the first epoch whose MI is not above the
    previous one's (the first epoch's is held to 0, as in their code).

    He et al. keep an optimizer for the encoder and one for the decoder; here the trainer's Adam steps the part
    whose gradients it is given (the other part's gradients are dropped, so its parameters and moments stay as
    they are), which is the same update: Adam's state is per parameter. Gradient clipping reads the stepped part.
    Each update is a step of the run (the KL schedule, ``checkpoint_every`` and ``max_steps`` count them), and the
    epoch's train columns average every step's batch; ``encoder_only_steps`` counts the inner steps of the epoch
    and ``valid_mi`` is I_q(x; z) on the validation split after it.
    """

    def __init__(self, max_inner_steps: int = 100, window: int = 10):
        check_setting("aggressive", "max_inner_steps", max_inner_steps, True, lambda v: v >= 1, ">= 1")
        check_setting("aggressive", "window", window, True, lambda v: v >= 1, ">= 1")
        if window > max_inner_steps:
            raise ProcedureError(f"procedures.aggressive.window ({window}) must not exceed "
                                 f"procedures.aggressive.max_inner_steps ({max_inner_steps}): the inner loop compares "
                                 "windows of that many steps")
        self.max_inner_steps, self.window = max_inner_steps, window
        self.active = True
        self.previous_mi = 0.0
        self.encoder_only_steps = 0  # this epoch's

    def bind(self, trainer) -> None:
        require_encoder(self, trainer)

    def train_step(self, trainer, batch) -> None:
        if not self.active:
            trainer.update(batch)
            return
        encoder = list(trainer.model.encoder.parameters())
        self._train_encoder(trainer, batch, encoder)
        chosen = {id(p) for p in encoder}
        trainer.update(batch, parameters=[p for p in trainer.model.parameters() if id(p) not in chosen])

    def _train_encoder(self, trainer, batch, encoder) -> None:
        """Encoder-only steps, from ``batch`` on, until the windowed -ELBO stops falling or the cap is reached."""
        previous, nats, tokens = math.inf, 0.0, 0
        for count in range(1, self.max_inner_steps + 1):
            terms = trainer.update(batch, parameters=encoder)
            self.encoder_only_steps += 1
            nats, tokens = nats + float(terms.neg_elbo.sum()), tokens + int(terms.tokens.sum())
            if count % self.window == 0:
                window_nats, window_tokens = map(sum, zip(*trainer.distributed.all_gather((nats, tokens))))
                loss = window_nats / max(window_tokens, 1)
                if loss >= previous:
                    return
                previous, nats, tokens = loss, 0.0, 0
            if count == self.max_inner_steps:
                return
            batch = trainer.next_batch()
            if batch is None:  # the epoch's batches are spent
                return

    def end_epoch(self, trainer) -> dict[str, float]:
        mi = trainer.valid_mutual_information()
        row = {"aggressive": float(self.active), "encoder_only_steps": float(self.encoder_only_steps),
               "valid_mi": mi}
        if self.active and mi <= self.previous_mi:
            self.active = False
        self.previous_mi, self.encoder_only_steps = mi, 0
        return row

    def state_dict(self) -> dict:
        return {"active": self.active, "previous_mi": self.previous_mi, "encoder_only_steps": self.encoder_only_steps}

    def load_state_dict(self, state: dict) -> None:
        self.active, self.previous_mi = state["active"], state["previous_mi"]
        self.encoder_only_steps = state["encoder_only_steps"]
