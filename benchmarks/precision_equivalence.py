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


def preset_of(record: dict, common: set[str]) -> str:
    """The preset and bindings of a run, less its precision and the bindings every run of the suite has: what two
    precisions' rows share, and what tells the presets apart."""
    bindings = [b for b in record.get("bindings", []) if "TrainingSettings.precision" not in b and b not in common]
    return " + ".join(record["configs"]) + (f" ({'; '.join(bindings)})" if bindings else "")


def gather(folder: Path) -> dict[str, dict[str, list[dict]]]:
    """Records by preset, then by training precision (their own ``training.precision``), each list by seed."""
    paths = sorted((folder / "records").glob("*.json"))
    if not paths:
        raise UserError(f"no records in {str(folder / 'records')!r}: give the precision-ptb folder of a bench "
                        "(`seqvae bench precision-ptb --out DIR` writes DIR/precision-ptb)")
    records = [record for record in map(read_record, paths) if "training" in record]
    common = set.intersection(*(set(record.get("bindings", [])) for record in records)) if records else set()
    runs: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        runs[preset_of(record, common)][record["training"]["precision"]].append(record)
    for by_precision in runs.values():
        for records in by_precision.values():
            records.sort(key=lambda r: r["seed"])
    return runs


def rows(runs: dict[str, dict[str, list[dict]]]) -> list[list[str]]:
    table = []
    for preset, by_precision in runs.items():
        for metric, header in METRICS:
            by_seed = {p: [metric_value(r, metric) if is_complete(r) or metric != "iw.nll" else None
                           for r in by_precision.get(p, [])] for p in PRECISIONS}
            shown = {p: ", ".join("pending" if v is None else f"{v:.2f}" for v in vs) or "-"
                     for p, vs in by_seed.items()}
            values = {p: [v for v in vs if v is not None] for p, vs in by_seed.items()}
            if all(len(vs) >= 2 for vs in values.values()):
                difference = statistics.fmean(values["bf16"]) - statistics.fmean(values["fp32"])
                spread = max(max(vs) - min(vs) for vs in values.values())
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
                                        "bf16 - fp32 (means)", "seed spread", "equivalent"], tablefmt="github",
                   disable_numparse=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
