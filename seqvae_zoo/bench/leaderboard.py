"""Leaderboard tables from run records: Markdown, LaTeX and CSV through tabulate, mean +- std over seeds.

A results folder holds, per suite, ``suite.json`` (title, columns, model order, reference rows) and ``records/``
(one JSON per run). Tables are built from those files alone, so ``seqvae leaderboard`` reprints exactly what
``seqvae bench`` printed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

from tabulate import tabulate

from seqvae_zoo.bench.records import read_record
from seqvae_zoo.errors import UserError

FORMATS = {"md": "github", "latex": "latex_booktabs"}


def metric_value(record: dict[str, Any], path: str) -> float | None:
    """The number at a dotted path of a record (``metrics.iw.nll``; paths without a known root are read under
    ``metrics``), or None where the run has no such metric (e.g. a KL for the LSTM)."""
    node: Any = record
    parts = path.split(".")
    if parts[0] not in record:
        node = record.get("metrics", {})
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def metric_interval(record: dict[str, Any], path: str) -> tuple[float, float] | None:
    """The 95% interval (low, high) that a record gives for a metric under ``metrics.intervals`` (DUC's ROUGE:
    ``rouge1.f`` has ``intervals.rouge1.f.low`` and ``.high``), or None."""
    low, high = (metric_value(record, f"metrics.intervals.{path}.{bound}") for bound in ("low", "high"))
    return (low, high) if low is not None and high is not None else None


def load_results(results_dir: str | Path) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Every (suite description, its records) under ``results_dir``."""
    results_dir = Path(results_dir)
    suites = sorted(results_dir.rglob("suite.json"))
    if not suites:
        raise UserError(f"no results under {str(results_dir)!r}: expected <suite>/suite.json and "
                        "<suite>/records/*.json as written by `seqvae bench --out DIR`")
    loaded = []
    for path in suites:
        description = json.loads(path.read_text())
        records = [read_record(p) for p in sorted((path.parent / "records").glob("*.json"))]
        loaded.append((description, records))
    return loaded


def _aggregate(values: list[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def table_rows(description: dict[str, Any], records: list[dict[str, Any]], dataset: str) -> list[dict[str, Any]]:
    """One row per model of the suite (in suite order) that has records on ``dataset``, reference rows first.

    Each cell is (mean, std or None, seeds, interval) or None; the interval is the 95% one (low, high) a single
    run's record gives for that metric (DUC's ROUGE), else None."""
    columns = description["columns"]
    rows = []
    for reference in description.get("references", []):
        if reference.get("dataset", dataset) != dataset or reference.get("apart"):
            continue
        cells = [(float(reference["values"][c["metric"]]), None, 0, None) if c["metric"] in reference["values"]
                 else None for c in columns]
        rows.append({"model": f"{reference['model']} ({reference.get('source', 'published')})", "cells": cells,
                     "seeds": 0})
    for model in description["models"]:
        runs = [r for r in records if r["model"] == model and r["dataset"]["name"] == dataset]
        if not runs:
            continue
        cells = []
        for column in columns:
            values = [v for v in (metric_value(r, column["metric"]) for r in runs) if v is not None]
            interval = metric_interval(runs[0], column["metric"]) if len(runs) == 1 else None
            cells.append((*_aggregate(values), len(values), interval) if values else None)
        rows.append({"model": model + _run_notes(runs), "cells": cells, "seeds": len(runs)})
    return rows


def _run_notes(runs: list[dict[str, Any]]) -> str:
    """What a row's label must say about its runs: a diverged training, columns still being evaluated, a posterior
    read through a refinement (SA-VAE's) rather than as the encoder gives it."""
    notes = [f"diverged at step {r['diverged']['step']} (epoch {r['diverged']['epoch']}): "
             f"{r['diverged']['reason']}" for r in runs if r.get("diverged")]
    if any((r.get("metrics") or {}).get("posterior_refinement") for r in runs):
        notes.append("scored through its refined posterior")
    pending = sum(not r.get("complete", True) for r in runs)
    if pending:
        notes.append(f"incomplete: IW-NLL of {pending} run{'s' if pending > 1 else ''} pending")
    return f" ({'; '.join(notes)})" if notes else ""


#: From this magnitude on a number is printed in scientific notation: its 2 decimals would be noise among 20 digits
#: (the PPL of a model that runs away, e^36).
SCIENTIFIC_FROM = 1e9


def format_number(value: float, digits: int) -> str:
    """``value`` with thousands separators and ``digits`` decimals, or as 3.81e+15 once it is too large to read; a
    value that rounds to zero reads 0.00, not -0.00 (an estimator a hair below zero, the MI of a collapsed latent)."""
    if math.isfinite(value) and abs(value) >= SCIENTIFIC_FROM:
        return f"{value:.{max(digits, 2)}e}"
    return f"{value:z,.{digits}f}"


def _format_cell(cell, digits: int) -> str:
    if cell is None:
        return "–"
    mean, std, _, interval = cell
    if math.isnan(mean):
        return "nan"
    text = format_number(mean, digits)
    if interval is not None:
        text += f" [{format_number(interval[0], digits)}, {format_number(interval[1], digits)}]"
    return f"{text} ± {format_number(std, digits)}" if std is not None else text


def render(results: list[tuple[dict[str, Any], list[dict[str, Any]]]], fmt: str = "md") -> str:
    """Every table of every suite, in ``fmt`` ("md", "latex" or "csv")."""
    if fmt not in (*FORMATS, "csv"):
        raise UserError(f"unknown table format {fmt!r}: use md, latex or csv")
    parts = []
    for description, records in results:
        datasets = list(dict.fromkeys(r["dataset"]["name"] for r in records))
        protocols = sorted({str(r.get("protocol_version")) for r in records})
        for dataset in datasets:
            rows = table_rows(description, records, dataset)
            unpublished = any(r["dataset"].get("departures_from_published") for r in records
                              if r["dataset"]["name"] == dataset)
            shown = (f"{dataset} read from files that are not the published ones (its checks off; the records' "
                     f"dataset.departures_from_published say how they differ)" if unpublished else dataset)
            title = (f"{description['title']}: {shown} (metric protocol {', '.join(protocols)}; "
                     f"mean ± std over seeds where there are several)")
            if fmt == "csv":
                parts.append(_csv(description, rows, dataset))
                continue
            headers = ["model", *(c["header"] for c in description["columns"]), "seeds"]
            body = [[row["model"], *(_format_cell(cell, c.get("digits", 2))
                                     for cell, c in zip(row["cells"], description["columns"])),
                     row["seeds"] or "–"] for row in rows]
            table = tabulate(body, headers=headers, tablefmt=FORMATS[fmt], disable_numparse=True)
            heading = f"### {title}" if fmt == "md" else f"% {title}"
            parts.append(f"{heading}\n\n{table}\n{_apart_references(description, dataset, fmt)}")
    return "\n".join(parts)


def _apart_references(description: dict[str, Any], dataset: str, fmt: str) -> str:
    """The published numbers measured under another protocol than the table's (``apart = true``), in a table of
    their own: each with its source and protocol, its values named as the paper names them."""
    references = [r for r in description.get("references", [])
                  if r.get("apart") and r.get("dataset", dataset) == dataset]
    if not references:
        return ""
    body = [[r["model"], r["source"], r["protocol"],
             "; ".join(f"{name} {value}" for name, value in r["values"].items())] for r in references]
    table = tabulate(body, headers=["published model", "source", "protocol", "values"], tablefmt=FORMATS[fmt],
                     disable_numparse=True)
    note = "Published under other protocols, not comparable with the columns above:"
    return f"\n{note}\n\n{table}\n" if fmt == "md" else f"\n% {note}\n{table}\n"


def _csv(description: dict[str, Any], rows: list[dict[str, Any]], dataset: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = description["columns"]
    with_interval = [any(row["cells"][i] is not None and row["cells"][i][3] is not None for row in rows)
                     for i in range(len(columns))]
    header = ["suite", "dataset", "model", "seeds"]
    for column, interval in zip(columns, with_interval):
        header += [column["header"], f"{column['header']} std"]
        header += [f"{column['header']} 95% low", f"{column['header']} 95% high"] if interval else []
    writer.writerow(header)
    for row in rows:
        line = [description["name"], dataset, row["model"], row["seeds"]]
        for cell, interval in zip(row["cells"], with_interval):
            line += ["", ""] if cell is None else [repr(cell[0]), "" if cell[1] is None else repr(cell[1])]
            if interval:
                line += ["", ""] if cell is None or cell[3] is None else [repr(cell[3][0]), repr(cell[3][1])]
        writer.writerow(line)
    return buffer.getvalue()
