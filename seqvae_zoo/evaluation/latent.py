"""How much the sentence latent z_enc carries: mutual information I_q(x; z_enc) and active units.

Both read only the posteriors q(z_enc | x_n) of every sentence of a split, given as (N, D) means and log-variances.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from seqvae_zoo.gaussian import DiagGaussian, gaussian_log_prob

#: The thresholds on Cov_x(E_q[z_u]) at which a unit counts as active: Burda et al.'s 0.01, and a stricter 0.2.
ACTIVE_UNIT_THRESHOLDS = (0.01, 0.2)


def mutual_information(posterior: DiagGaussian, samples_per_sentence: int = 1, block_size: int = 128,
                       generator: torch.Generator | None = None) -> float:
    """I_q(x; z) = E_x E_{q(z|x)}[log q(z|x) - log q(z)] (He et al. 2019), in nats.

    The aggregate posterior q(z) is the mixture (1/N) sum_m q(z | x_m) over all N sentences given; z is drawn from
    each q(z | x_n). This equals E_x[KL(q(z|x) || p(z))] - KL(q(z) || p(z)) for any prior p, which cancels. Every term
    is at most log N, so the estimate is too; it is exactly 0 when all posteriors are equal. The N x N mixture
    densities are computed ``block_size`` samples at a time.
    """
    mean, logvar = posterior.mean.double(), posterior.logvar.double()
    count = mean.size(0)
    noise = torch.randn(samples_per_sentence, *mean.shape, generator=generator, dtype=mean.dtype)
    z = (mean + torch.exp(0.5 * logvar) * noise.to(mean.device)).reshape(-1, mean.size(1))  # sample-major
    owner = torch.arange(count, device=mean.device).repeat(samples_per_sentence)
    total = 0.0
    for start in range(0, z.size(0), block_size):
        block, rows = z[start:start + block_size], owner[start:start + block_size]
        log_q_all = gaussian_log_prob(block[:, None, :], mean[None], logvar[None])  # (block, N)
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
