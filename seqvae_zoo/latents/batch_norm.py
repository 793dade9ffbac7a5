"""BN-VAE (Zhu et al. 2020, "A batch normalized inference network keeps the KL vanishing away"): the posterior mean
goes through batch normalization with a fixed scale, which puts a floor under the expected KL."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqvae_zoo.errors import UserError
from seqvae_zoo.gaussian import split_params
from seqvae_zoo.latents.gaussian import GaussianFamily, GaussianLatent
from seqvae_zoo.registry import LATENTS


@LATENTS.register("bn_gaussian")
class BatchNormGaussianFamily(nn.Module, GaussianFamily):
    """BN-VAE (Zhu et al. 2020): the posterior mean batch-normalized with a fixed scale gamma; KL >= n gamma^2 / 2.

    N(mu^, diag(sigma^2)) with mu^_i = gamma (mu_i - m_i) / sqrt(v_i + eps) + beta_i, m and v the batch mean and
    (biased) variance of mu_i, gamma fixed, beta learned; log sigma^2 as the encoder gives it.

    Over a batch, mean(mu^_i^2) = gamma^2 v_i / (v_i + eps) + beta_i^2, so the batch-mean KL to N(0, I),
    (1/2) sum_i (mu^_i^2 + sigma_i^2 - log sigma_i^2 - 1) >= (1/2) sum_i mu^_i^2, is at least about n gamma^2 / 2
    for n latent dimensions, whatever the encoder does: the posterior cannot collapse. Evaluation normalizes with
    running statistics (updated with ``momentum``), as does training on a batch of one sentence, which has no
    variance. Unlike the other families it holds state: the encoder keeps it as a submodule."""

    def __init__(self, latent_dim: int, gamma: float = 0.6, momentum: float = 0.1, eps: float = 1e-5):
        if not gamma > 0:
            raise UserError(f"latents.bn_gaussian.gamma is the fixed scale of the normalized posterior mean and must "
                            f"be positive; got {gamma}")
        nn.Module.__init__(self)
        GaussianFamily.__init__(self, latent_dim)
        self.gamma, self.momentum, self.eps = float(gamma), momentum, eps
        self.shift = nn.Parameter(torch.zeros(latent_dim))  # beta
        self.register_buffer("running_mean", torch.zeros(latent_dim))
        self.register_buffer("running_var", torch.ones(latent_dim))

    def posterior(self, parameters: torch.Tensor) -> GaussianLatent:
        mean, logvar = split_params(parameters)
        rows = mean.reshape(-1, self.latent_dim)
        normalized = F.batch_norm(rows, self.running_mean, self.running_var, training=self.training and len(rows) > 1,
                                  momentum=self.momentum, eps=self.eps)
        return GaussianLatent((self.gamma * normalized + self.shift).reshape(mean.shape), logvar)

    def __repr__(self) -> str:
        return GaussianFamily.__repr__(self)
