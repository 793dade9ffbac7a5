"""The training-procedure interface: what one training step does with the batches, and what it remembers."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import torch

from seqvae_zoo.errors import UserError, check_number

if TYPE_CHECKING:
    from seqvae_zoo.model import SeqVAE
    from seqvae_zoo.training.trainer import TrainBatch, Trainer


class ProcedureError(UserError, ValueError):
    """A procedure's settings, or the model it is asked to train, do not fit it; the message says what to do."""


class Procedure:
    """One training step over the trainer's batch stream.

    ``train_step`` learns from the batch it is given through :meth:`Trainer.update` (one optimizer step each, on
    all the parameters or a part of them, with the model's objective or a loss of its own) and may draw further
    batches of the epoch with :meth:`Trainer.next_batch`, so every batch comes from the one sampler stream and a
    resumed run sees the same batches. The trainer writes checkpoints and honours stop requests between calls of
    ``train_step``; whatever the procedure must remember across them goes in ``state_dict``.
    """

    registry_name: str  # set by the registry

    def bind(self, trainer: Trainer) -> None:
        """Check that the procedure can train ``trainer.model`` (called once, before training or resuming)."""

    def train_step(self, trainer: Trainer, batch: TrainBatch) -> None:  # pragma: no cover
        raise NotImplementedError

    def weights(self, trainer: Trainer, step: int, weights: dict[str, float]) -> dict[str, float]:
        """The weights of the objective's terms at ``step`` of the run, given the KL schedule's."""
        return weights

    def end_epoch(self, trainer: Trainer) -> dict[str, float]:
        """Called after each epoch's validation (``trainer.epoch`` counts it); returns columns for its row."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    @contextmanager
    def scoring(self, model: SeqVAE) -> Iterator[str | None]:
        """How evaluation reads a model this procedure trained, within the block; yields what differs from reading
        the encoder's posterior as it is (None by default: nothing), for the record. A procedure whose model is
        meant to be read another way (SA-VAE's, through the refined posterior) installs that way here."""
        yield None


@contextmanager
def held_fixed(parameters: Iterable[torch.Tensor]) -> Iterator[None]:
    """Within the block, ``parameters`` require no gradient, so a backward pass skips the products that would give
    theirs (a step that updates the others only, a gradient with respect to a posterior's parameters only); they
    require it again afterwards. The gradients that are computed are the same, to the bit."""
    held = [parameter for parameter in parameters if parameter.requires_grad]
    for parameter in held:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in held:
            parameter.requires_grad_(True)


def require_encoder(procedure: Procedure, trainer: Trainer) -> None:
    """Refuse a model without a sentence latent: the procedure trains q(z_enc|x)."""
    if trainer.model.encoder is None:
        raise ProcedureError(f"procedure {procedure.registry_name!r} trains the encoder's posterior q(z_enc|x), and "
                             "this model has no encoder (models.SeqVAE.encoder = None): choose a VAE preset, or "
                             "training.TrainingSettings.procedure = @procedures.standard()")


def check_setting(procedure: str, name: str, value: Any, integer: bool, valid: Callable[[Any], bool],
                  wanted: str) -> None:
    """One clear error for a setting that is not a number (an integer where ``integer``) for which ``valid``
    holds, which ``wanted`` states."""
    check_number(f"procedures.{procedure}.{name}", value, integer, valid, wanted, ProcedureError)
