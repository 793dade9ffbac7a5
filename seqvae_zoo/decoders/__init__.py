"""Decoders: predict every next token from the previous ones, optionally given z_enc and the encoder's states.

Deterministic (``lstm``), stochastic with per-step latents (``stochastic``) and attentive stochastic (``attentive``,
the paper's VRAE-SA). One module per decoder; each registers itself with ``@DECODERS.register(name)``.
"""
