"""The evaluation protocol: the paper's reconstruction NLL/PPL, honest bounds (ELBO, importance-weighted NLL and
perplexity), what z_enc carries (mutual information, active units), the synthetic corpus's gap to the true NLL and
latent probe, and a table of a result. ``protocol`` holds the versioned definitions, :func:`evaluate` and
:func:`evaluate_corpus`; ``importance``, ``latent`` and ``synthetic`` the estimators; ``report`` the table.
"""

from seqvae_zoo.evaluation.protocol import (DEFAULT_IW_SAMPLES, METRICS, PROTOCOL_VERSION, EvaluationError, Metric,
                                            evaluate, evaluate_corpus)
from seqvae_zoo.evaluation.report import format_result

__all__ = ["DEFAULT_IW_SAMPLES", "METRICS", "PROTOCOL_VERSION", "EvaluationError", "Metric", "evaluate",
           "evaluate_corpus", "format_result"]
