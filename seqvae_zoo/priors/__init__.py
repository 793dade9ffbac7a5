"""Priors over the sentence latent z_enc: standard normal, and a learned mixture of Gaussians.

The per-step conditional prior p(z_t | h_{t-1}) is part of the stochastic decoders, which compute it inside their
recurrence.
"""
