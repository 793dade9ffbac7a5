"""A result as a table for people (the JSON dict itself is the record for machines)."""

from __future__ import annotations

from tabulate import tabulate

from seqvae_zoo.evaluation.protocol import METRICS


def format_result(result: dict, tablefmt: str = "simple") -> str:
    """The metrics of one result, one row each with what it means, under a line naming the protocol version."""
    known = {metric.key: metric for metric in METRICS}
    metrics = result["metrics"]
    order = [m.key for m in METRICS if m.key in metrics] + sorted(k for k in metrics if k not in known)
    rows = [(known[key].label if key in known else key, _value(metrics[key]),
             known[key].description if key in known else "") for key in order]
    samples = "exact (no latent)" if result.get("iw_exact") else f"K={result['iw_samples']}"
    where = " ".join(str(result[k]) for k in ("dataset", "split") if result.get(k))
    header = (f"evaluation protocol v{result['protocol_version']}{' - ' + where if where else ''}: "
              f"{result['sentences']:,} sentences, {result['words']:,} words, {result['tokens']:,} tokens; "
              f"IW {samples}; seed {result['seed']}")
    return header + "\n" + tabulate(rows, headers=("metric", "value", "definition"), tablefmt=tablefmt,
                                    disable_numparse=True)


def _value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
