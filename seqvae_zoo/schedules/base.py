"""The weight-schedule interface."""

from __future__ import annotations


class WeightSchedule:
    """Gives the weight of each named loss term at a point of training.

    Names are the model's KL terms ("z_enc", "z_t") and its auxiliary losses ("context_prediction"); a name the
    schedule does not give has weight 1. ``epoch`` is fractional: step / steps_per_epoch.
    """

    def weights(self, step: int, epoch: float) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError
