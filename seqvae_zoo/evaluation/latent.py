"""How much the sentence latent z_enc carries: mutual information I_q(x; z_enc) and active units.

Both read only the posteriors q(z_enc | x_n) of every sentence of a split, a batch of N distributions of the latent
family (:class:`~seqvae_zoo.latents.base.LatentDistribution`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from seqvae_zoo.latents.base import LatentDistribution

#: The thresholds on Cov_x(E_q[z_u]) at which a unit counts as active: Burda et al.'s 0.01, and a stricter 0.2.
ACTIVE_UNIT_THRESHOLDS = (0.01, 0.2)


def mutual_information(posterior: LatentDistribution, samples_per_sentence: int = 1, block_size: int = 128,
                       generator: torch.Generator | None = None) -> float:
    """I_q(x; z) = E_x E_{q(z|x)}[log q(z|x) - log q(z)] (He et al. 2019), in nats.

    The aggregate posterior q(z) is the mixture (1/N) sum_m q(z | x_m) over all N sentences given; z is drawn from
    each q(z | x_n). This equals E_x[KL(q(z|x) || p(z))] - KL(q(z) || p(z)) for any prior p, which cancels. Every term
    is at most log N, so the estimate is too; it is exactly 0 when all posteriors are equal. The N x N mixture
    densities are computed ``block_size`` samples at a time.
    """
    posterior = posterior.map(lambda parameter: parameter.double())
    count = posterior.mean.size(0)
    repeated = posterior.map(lambda parameter: parameter.expand(samples_per_sentence, *parameter.shape))
    z = repeated.rsample(generator=generator).reshape(-1, posterior.mean.size(1))  # sample-major
    owner = torch.arange(count, device=z.device).repeat(samples_per_sentence)
    total = 0.0
    for start in range(0, z.size(0), block_size):
        block, rows = z[start:start + block_size], owner[start:start + block_size]
        log_q_all = posterior.log_prob(block[:, None, :])  # (block, N)
        log_q_own = log_q_all.gather(1, rows[:, None]).squeeze(1)
        log_q_aggregate = torch.logsumexp(log_q_all, dim=1) - math.log(count)
        total += (log_q_own - log_q_aggregate).sum().item()
    return total / z.size(0)


def active_units(posterior_mean: torch.Tensor, thresholds: Sequence[float] = ACTIVE_UNIT_THRESHOLDS
                 ) -> dict[float, int]:
    """Units u with Cov_x(E_q[z_u]) above each threshold (Burda et al. 2016): the variance over sentences of the
    posterior mean, unbiased. Needs at least two sentences."""
    variance = posterior_mean.double().var(dim=0, unbiased=True)
    return {threshold: int((variance > threshold).sum().item()) for threshold in thresholds}
