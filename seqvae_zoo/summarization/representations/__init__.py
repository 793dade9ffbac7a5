"""Registered sentence representations, one module per representation; ``base`` holds the interface.

``context_prior`` (VRAE-SA: p(c~_T | z_T)), ``posterior`` (VRAE: q(z_enc | x)), ``final_state`` (LSTM: the last
hidden state) and ``lda`` (topic mixtures, the LDA baseline).
"""
