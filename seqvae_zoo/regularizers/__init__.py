"""Regularizers: changes to the decoder's input or to the KL terms during training (word dropout, free bits)."""
