"""Aggressive inference-network training (He et al. 2019, "Lagging inference networks and posterior collapse in
variational autoencoders", Algorithm 1 and their code)."""

from __future__ import annotations

import math

import numpy as np
import torch

from seqvae_zoo.registry import PROCEDURES
from seqvae_zoo.training.procedures.base import Procedure, ProcedureError, check_setting, require_encoder


@PROCEDURES.register("aggressive")
class Aggressive(Procedure):
    """He et al.'s aggressive training: encoder-only inner loops and one decoder step per batch, while the MI rises.

    While aggressive, every batch of the epoch gets, in the epoch's order, an inner loop of encoder-only steps and
    then one decoder-only step on the batch (every parameter outside the encoder: decoder, prior, auxiliary heads);
    once I_q(x; z) on the validation split stops rising, standard steps. An epoch is thus one decoder step per batch,
    as in standard training, however long the inner loops.

    The inner loop starts on the batch itself; each further batch is drawn uniformly, with replacement, from the
    epoch's batches of the whole training split (this process's share of it), by a generator seeded from the run's
    seed, epoch and step whose state is part of the procedure's state (so a resumed run draws the same ones, and
    every process draws the same batch). It stops after ``max_inner_steps`` steps, or when the -ELBO per token over
    the last ``window`` inner steps is no lower than over the ``window`` before (their code: 15 and at most 100).
    The mutual information is checked at the end of every epoch: aggressive training ends at the first epoch whose
    MI is not above the previous one's (the first epoch's is held to 0, as in their code).

    The KL schedule follows the batches, not the updates: every update of a batch (its inner steps and its decoder
    step) has the schedule's weights at the batch's place in the run, as their code raises the KL weight once per
    batch. He et al. keep an optimizer for the encoder and one for the decoder; here the trainer's Adam steps the
    part whose gradients it is given (the other part's gradients are dropped, so its parameters and moments stay as
    they are), which is the same update: Adam's state is per parameter. Gradient clipping reads the stepped part.
    Each update is a step of the run (``checkpoint_every`` and ``max_steps`` count them), and the epoch's train
    columns average every update's batch; ``encoder_only_steps`` counts the inner steps of the epoch and
    ``valid_mi`` is I_q(x; z) on the validation split after it.
    """

    def __init__(self, max_inner_steps: int = 100, window: int = 15):
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
        self.generator: torch.Generator | None = None  # draws the inner batches; seeded at the first draw

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
            if count < self.max_inner_steps:
                batch = trainer.random_batch(self._generator(trainer))

    def _generator(self, trainer) -> torch.Generator:
        if self.generator is None:
            seed = np.random.SeedSequence([trainer.sampler.seed, trainer.epoch, trainer.step]).generate_state(1)[0]
            self.generator = torch.Generator().manual_seed(int(seed))
        return self.generator

    def weights(self, trainer, step: int, weights: dict[str, float]) -> dict[str, float]:
        """The schedule's weights at the batch under way (the last one, between epochs)."""
        position, per_epoch = trainer.sampler.state_dict(), len(trainer.sampler)
        batch = max(position["epoch"] * per_epoch + position["position"] - 1, 0)
        return trainer.settings.kl_schedule.weights(batch, batch / per_epoch)

    def end_epoch(self, trainer) -> dict[str, float]:
        mi = trainer.valid_mutual_information()
        row = {"aggressive": float(self.active), "encoder_only_steps": float(self.encoder_only_steps),
               "valid_mi": mi}
        if self.active and mi <= self.previous_mi:
            self.active = False
        self.previous_mi, self.encoder_only_steps = mi, 0
        return row

    def state_dict(self) -> dict:
        return {"active": self.active, "previous_mi": self.previous_mi, "encoder_only_steps": self.encoder_only_steps,
                "generator": None if self.generator is None else self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.active, self.previous_mi = state["active"], state["previous_mi"]
        self.encoder_only_steps = state["encoder_only_steps"]
        saved = state.get("generator")  # checkpoints before the random inner batches have none: seeded anew
        self.generator = None
        if saved is not None:
            self.generator = torch.Generator()
            self.generator.set_state(saved.cpu())
