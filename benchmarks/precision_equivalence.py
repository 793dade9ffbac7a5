"""Does bfloat16 training move the metrics? The precision-ptb suite's records, float32 against bfloat16, per preset.

For each preset and metric (test IW-NLL, the paper-protocol PPL) it prints each precision's values over the seeds,
the difference of the two precisions' means, and the spread between seeds (the largest max - min over the seeds of
one precision): bf16 is equivalent on a metric when the difference is smaller than that spread. It also prints each
precision's training rate (tokens/s), measured one run after another on the same machine.

    python benchmarks/precision_equivalence.py [benchmarks/results/precision-ptb]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from tabulate import tabulate

from seqvae_zoo.bench.leaderboard import metric_value
from seqvae_zoo.bench.records import is_complete, read_record
from seqvae_zoo.errors import UserError

METRICS = (("iw.nll", "IW-NLL"), ("paper.ppl", "recon. PPL (paper)"))
PRECISIONS = ("fp32", "bf16")


def preset_of(record: dict) -> str:
    """The preset and bindings of a run, less its precision: what two precisions' rows share."""
    bindings = [b for b in record.get("bindings", []) if "TrainingSettings.precision" not in b]
    return " + ".join(record["configs"]) + (f" ({'; '.join(bindings)})" if bindings else "")


def gather(folder: Path) -> dict[str, dict[str, list[dict]]]:
    """Records by preset, then by training precision (their own ``training.precision``), each list by seed."""
    paths = sorted((folder / "records").glob("*.json"))
    if not paths:
        raise UserError(f"no records in {str(folder / 'records')!r}: give the precision-ptb folder of a bench "
                        "(`seqvae bench precision-ptb --out DIR` writes DIR/precision-ptb)")
    runs: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for path in paths:
        record = read_record(path)
        if "training" in record:
            runs[preset_of(record)][record["training"]["precision"]].append(record)
    for by_precision in runs.values():
        for records in by_precision.values():
            records.sort(key=lambda r: r["seed"])
    return runs


def rows(runs: dict[str, dict[str, list[dict]]]) -> list[list[str]]:
    table = []
    for preset, by_precision in runs.items():
        for metric, header in METRICS:
            values = {p: [metric_value(r, metric) for r in by_precision.get(p, []) if is_complete(r)]
                      for p in PRECISIONS}
            values = {p: [v for v in vs if v is not None] for p, vs in values.items()}
            shown = {p: ", ".join(f"{v:.2f}" for v in vs) or "pending" for p, vs in values.items()}
            spreads = [max(vs) - min(vs) for vs in values.values() if len(vs) >= 2]
            if all(values.values()) and spreads:
                difference = statistics.fmean(values["bf16"]) - statistics.fmean(values["fp32"])
                spread = max(spreads)
                verdict = "within" if abs(difference) < spread else "OUTSIDE"
                cells = [f"{difference:+.2f}", f"{spread:.2f}", verdict]
            else:
                cells = ["-", "-", "needs two seeds of each precision"]
            table.append([preset, header, shown["fp32"], shown["bf16"], *cells])
        rates = {p: [r["training"]["tokens_per_s"] for r in by_precision.get(p, [])] for p in PRECISIONS}
        if all(rates.values()):
            ratio = statistics.fmean(rates["bf16"]) / statistics.fmean(rates["fp32"])
            table.append([preset, "train tokens/s", ", ".join(f"{v:,.0f}" for v in rates["fp32"]),
                          ", ".join(f"{v:,.0f}" for v in rates["bf16"]), f"{ratio:.2f}x", "-", "bf16 / fp32"])
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(Path(__file__).parent / "results" / "precision-ptb"),
                        help="the suite's results folder (default: benchmarks/results/precision-ptb)")
    args = parser.parse_args(argv)
    try:
        runs = gather(Path(args.folder))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(tabulate(rows(runs), headers=["preset", "metric", "fp32 (by seed)", "bf16 (by seed)",
                                        "bf16 - fp32 (means)", "seed spread", "equivalent"], tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
