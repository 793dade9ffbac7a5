"""KL-cost annealing schedules: constant, linear warm-up, cyclical, and the authors' code's two-phase schedule."""

from __future__ import annotations

import math
from typing import Sequence

from seqvae_zoo.registry import KL_SCHEDULES
from seqvae_zoo.schedules.base import WeightSchedule

KL_TERMS = ("z_enc", "z_t")


def _ramp(progress: float, start: float = 0.0) -> float:
    """Linear from ``start`` at progress 0 to 1 at progress 1, clamped."""
    return start + (1.0 - start) * min(max(progress, 0.0), 1.0)


@KL_SCHEDULES.register("constant")
class Constant(WeightSchedule):
    """The same weight for the named KL terms all along (1: the plain ELBO)."""

    def __init__(self, value: float = 1.0, terms: Sequence[str] = KL_TERMS):
        self.value, self.terms = value, tuple(terms)

    def weights(self, step: int, epoch: float) -> dict[str, float]:
        return {name: self.value for name in self.terms}


@KL_SCHEDULES.register("linear")
class Linear(WeightSchedule):
    """Bowman et al.'s KL-cost annealing: from ``start`` to 1 linearly over ``warmup_epochs``."""

    def __init__(self, warmup_epochs: float = 2.0, start: float = 0.0, terms: Sequence[str] = KL_TERMS):
        if warmup_epochs <= 0:
            raise ValueError(f"kl_schedules.linear.warmup_epochs must be positive, got {warmup_epochs}")
        self.warmup_epochs, self.start, self.terms = warmup_epochs, start, tuple(terms)

    def weights(self, step: int, epoch: float) -> dict[str, float]:
        value = _ramp(epoch / self.warmup_epochs, self.start)
        return {name: value for name in self.terms}


@KL_SCHEDULES.register("cyclical")
class Cyclical(WeightSchedule):
    """Fu et al. (2019): repeated cycles of ``cycle_epochs``; within each, a linear rise over the first ``ratio``
    of the cycle, then weight 1."""

    def __init__(self, cycle_epochs: float = 2.0, ratio: float = 0.5, terms: Sequence[str] = KL_TERMS):
        if cycle_epochs <= 0 or not 0 < ratio <= 1:
            raise ValueError("kl_schedules.cyclical needs cycle_epochs > 0 and 0 < ratio <= 1, "
                             f"got {cycle_epochs} and {ratio}")
        self.cycle_epochs, self.ratio, self.terms = cycle_epochs, ratio, tuple(terms)

    def weights(self, step: int, epoch: float) -> dict[str, float]:
        phase = math.fmod(epoch, self.cycle_epochs) / self.cycle_epochs
        value = _ramp(phase / self.ratio)
        return {name: value for name in self.terms}


@KL_SCHEDULES.register("two_phase")
class TwoPhase(WeightSchedule):
    """The authors' public code: z_enc's KL weight held at ``hold_value`` for ``hold_epochs`` then raised linearly to
    1 over ``anneal_epochs``; the per-step KL raised linearly over the first ``step_kl_epochs``; the auxiliary term
    off until ``aux_from_epoch`` (its size is the aux loss's own weight, 0.25 in that code)."""

    def __init__(self, hold_value: float = 0.1, hold_epochs: float = 5.0, anneal_epochs: float = 5.0,
                 step_kl_epochs: float = 5.0, aux_from_epoch: float = 5.0,
                 aux_terms: Sequence[str] = ("context_prediction",)):
        self.hold_value, self.hold_epochs, self.anneal_epochs = hold_value, hold_epochs, anneal_epochs
        self.step_kl_epochs, self.aux_from_epoch, self.aux_terms = step_kl_epochs, aux_from_epoch, tuple(aux_terms)

    def weights(self, step: int, epoch: float) -> dict[str, float]:
        sentence = self.hold_value if epoch < self.hold_epochs else _ramp(
            (epoch - self.hold_epochs) / self.anneal_epochs, self.hold_value)
        weights = {"z_enc": sentence, "z_t": _ramp(epoch / self.step_kl_epochs)}
        weights.update({name: float(epoch >= self.aux_from_epoch) for name in self.aux_terms})
        return weights
