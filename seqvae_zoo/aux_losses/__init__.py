"""Auxiliary losses: extra per-sentence terms of the objective (the paper's attention-context prediction)."""
