"""A result as a table for people (the JSON dict itself is the record for machines)."""

from __future__ import annotations

from tabulate import tabulate

from seqvae_zoo.evaluation.protocol import METRICS


def format_result(result: dict, tablefmt: str = "simple") -> str:
    """The metrics of one result, one row each with what it means, under a line naming the protocol version."""
    labels = {metric.path: (metric.label, metric.description) for metric in METRICS}
    extra_kl = [f"kl.{name}" for name in result.get("kl", {}) if f"kl.{name}" not in labels]
    rows = []
    for path in [metric.path for metric in METRICS] + extra_kl:
        section, _, key = path.partition(".")
        if key in (result.get(section) or {}):
            label, description = labels.get(path, (path, ""))
            rows.append((label, _value(result[section][key]), description))
    iw = result["iw"]
    samples = "exact (no latent)" if iw["exact"] else f"K={iw['samples']}"
    where = " ".join(str(result[k]) for k in ("dataset", "split") if result.get(k))
    header = (f"evaluation protocol v{result['protocol_version']}{' - ' + where if where else ''}: "
              f"{result['sentences']:,} sentences, {result['words']:,} words, {result['tokens']:,} tokens; "
              f"IW {samples}; seed {result['seed']}")
    if result.get("posterior_refinement"):
        header += f"\nposterior: {result['posterior_refinement']}"
    return header + "\n" + tabulate(rows, headers=("metric", "value", "definition"), tablefmt=tablefmt,
                                    disable_numparse=True)


def _value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if abs(value) >= 1e6:
        return f"{value:.3e}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
