"""The evaluation protocol: the paper's reconstruction NLL/PPL, honest bounds (ELBO, importance-weighted NLL and
perplexity), what z_enc carries (mutual information, active units), the synthetic corpus's gap to the true NLL,
and a table of a result. ``protocol`` holds the versioned definitions and :func:`evaluate`; ``importance``,
``latent`` and ``synthetic`` the estimators; ``report`` the table.
"""

from seqvae_zoo.evaluation.protocol import (DEFAULT_IW_SAMPLES, METRICS, PROTOCOL_VERSION, EvaluationError, Metric,
                                            evaluate)
from seqvae_zoo.evaluation.report import format_result

__all__ = ["DEFAULT_IW_SAMPLES", "METRICS", "PROTOCOL_VERSION", "EvaluationError", "Metric", "evaluate",
           "format_result"]
