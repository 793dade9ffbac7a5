"""The weight-schedule interface."""

from __future__ import annotations

#: The weight under this name applies to every KL term the model declares (``SeqVAE.kl_terms``) without a weight of
#: its own.
EVERY_KL_TERM = "kl"
#: The weight under this name applies to every auxiliary loss of the model without a weight of its own.
EVERY_AUX_TERM = "aux"


class WeightSchedule:
    """Gives the weight of loss terms at a point of training.

    Names are the model's KL terms (``SeqVAE.kl_terms``: "z_enc", and a decoder's per-step latents such as "z_t"),
    its auxiliary losses ("context_prediction"), or ``EVERY_KL_TERM`` and ``EVERY_AUX_TERM`` for all of them; a term
    that no name covers has weight 1. The model refuses a name it does not have. ``epoch`` is fractional:
    step / steps_per_epoch.
    """

    def weights(self, step: int, epoch: float) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError


def weighted_terms(terms: tuple[str, ...] | None, value: float) -> dict[str, float]:
    """``value`` for each of ``terms``; None: for every KL term the model declares."""
    return {name: value for name in (terms if terms is not None else (EVERY_KL_TERM,))}
