"""Latent families: what kind of distribution the sentence latent z_enc has, behind one interface.

A family (``latents.<name>`` in gin, one module per family) turns the encoder's output layer into the posterior
q(z_enc | x): :class:`~seqvae_zoo.latents.base.LatentFamily` says how many numbers it needs and builds a
:class:`~seqvae_zoo.latents.base.LatentDistribution`, which gives a reparameterized sample, the log-density, the
point that represents a sentence (``mean``), closed-form KL where one exists, and what summarization needs. The
model, importance-weighted NLL, MI, active units, the protocol and the summarization rankers read the posterior only
through that interface. ``gaussian`` is the diagonal Gaussian of the presets; ``vmf`` the von Mises-Fisher
distribution on the unit sphere with fixed concentration (Xu & Durrett 2018).
"""
