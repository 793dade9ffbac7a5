"""The oneDNN products live in :mod:`seqvae_zoo.kernels.matmul`; this module keeps the older import path working."""

from seqvae_zoo.kernels.matmul import linear, linear_layer, onednn_linear_available, rows_inner_product

__all__ = ["linear", "linear_layer", "onednn_linear_available", "rows_inner_product"]
