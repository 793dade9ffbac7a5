"""KL-cost annealing schedules: constant, linear warm-up, cyclical, and the authors' code's two-phase schedule."""

from __future__ import annotations

import math
from typing import Sequence

from seqvae_zoo.registry import KL_SCHEDULES
from seqvae_zoo.schedules.base import EVERY_AUX_TERM, EVERY_KL_TERM, WeightSchedule, weighted_terms


def _terms(terms: Sequence[str] | None) -> tuple[str, ...] | None:
    return tuple(terms) if terms is not None else None


def _ramp(progress: float, start: float = 0.0) -> float:
    """Linear from ``start`` at progress 0 to 1 at progress 1, clamped."""
    return start + (1.0 - start) * min(max(progress, 0.0), 1.0)


@KL_SCHEDULES.register("constant")
class Constant(WeightSchedule):
    """The same KL weight all along (1: the plain ELBO), for the named ``terms`` or (None) every KL term."""

    def __init__(self, value: float = 1.0, terms: Sequence[str] | None = None):
        self.value, self.terms = value, _terms(terms)

    def weights(self, step: int, epoch: float) -> dict[str, float]:
        return weighted_terms(self.terms, self.value)


@KL_SCHEDULES.register("linear")
class Linear(WeightSchedule):
    """Bowman et al.'s KL-cost annealing: the KL weight from ``start`` to 1 linearly over ``warmup_epochs``, for the
    named ``terms`` or (None) every KL term."""

    def __init__(self, warmup_epochs: float = 2.0, start: float = 0.0, terms: Sequence[str] | None = None):
        if warmup_epochs <= 0:
            raise ValueError(f"kl_schedules.linear.warmup_epochs must be positive, got {warmup_epochs}")
        self.warmup_epochs, self.start, self.terms = warmup_epochs, start, _terms(terms)

    def weights(self, step: int, epoch: float) -> dict[str, float]:
        return weighted_terms(self.terms, _ramp(epoch / self.warmup_epochs, self.start))


@KL_SCHEDULES.register("cyclical")
class Cyclical(WeightSchedule):
    """Fu et al.'s (2019) cyclical KL annealing: cycles of ``cycle_epochs``, each a linear rise of the KL weight
    over its first ``ratio``, then weight 1; for the named ``terms`` or (None) every KL term."""

    def __init__(self, cycle_epochs: float = 2.0, ratio: float = 0.5, terms: Sequence[str] | None = None):
        if cycle_epochs <= 0 or not 0 < ratio <= 1:
            raise ValueError("kl_schedules.cyclical needs cycle_epochs > 0 and 0 < ratio <= 1, "
                             f"got {cycle_epochs} and {ratio}")
        self.cycle_epochs, self.ratio, self.terms = cycle_epochs, ratio, _terms(terms)

    def weights(self, step: int, epoch: float) -> dict[str, float]:
        phase = math.fmod(epoch, self.cycle_epochs) / self.cycle_epochs
        return weighted_terms(self.terms, _ramp(phase / self.ratio))


@KL_SCHEDULES.register("two_phase")
class TwoPhase(WeightSchedule):
    """The authors' public code's two-phase schedule: the sentence KL held low, then annealed; the per-step KL
    annealed; the auxiliary losses off at first.

    The sentence latent's KL weight (``z_enc``) is held at ``hold_value`` for ``hold_epochs``, then raised linearly
    to 1 over ``anneal_epochs``; every other KL term (the per-step latents) is raised linearly over the first
    ``step_kl_epochs``; the auxiliary losses (``aux_terms``, None: all) are off until ``aux_from_epoch`` (their size
    is each loss's own weight, 0.25 in that code)."""

    def __init__(self, hold_value: float = 0.1, hold_epochs: float = 5.0, anneal_epochs: float = 5.0,
                 step_kl_epochs: float = 5.0, aux_from_epoch: float = 5.0, aux_terms: Sequence[str] | None = None):
        self.hold_value, self.hold_epochs, self.anneal_epochs = hold_value, hold_epochs, anneal_epochs
        self.step_kl_epochs, self.aux_from_epoch = step_kl_epochs, aux_from_epoch
        self.aux_terms = tuple(aux_terms) if aux_terms is not None else (EVERY_AUX_TERM,)

    def weights(self, step: int, epoch: float) -> dict[str, float]:
        sentence = self.hold_value if epoch < self.hold_epochs else _ramp(
            (epoch - self.hold_epochs) / self.anneal_epochs, self.hold_value)
        weights = {"z_enc": sentence, EVERY_KL_TERM: _ramp(epoch / self.step_kl_epochs)}
        weights.update({name: float(epoch >= self.aux_from_epoch) for name in self.aux_terms})
        return weights
