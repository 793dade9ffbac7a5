"""Encoders: read a sentence and give its per-step states s_1..s_T and the Gaussian q(z_enc|x).

One module per encoder; each registers itself with ``@ENCODERS.register(name)``.
"""
