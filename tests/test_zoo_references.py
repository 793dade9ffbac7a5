"""The zoo-ptb suite's published numbers can be checked: every reference names its paper's table and the address
where the number was read, says what the number measures, and is printed either in the column that implements its
protocol or, measured otherwise, in a table of its own below ours."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

from seqvae_zoo.bench.leaderboard import load_results, render
from seqvae_zoo.bench.suite import load_suite

#: This checkout's suite file (not an installed copy), so that the test reads the references it ships.
SUITE = load_suite(str(Path(__file__).resolve().parents[1] / "benchmarks" / "suites" / "zoo-ptb.toml"))
APART_NOTE = "Published under other protocols"


def test_every_reference_names_its_table_an_address_and_what_it_measures():
    assert SUITE.references
    columns = {column.metric for column in SUITE.columns}
    models = {model.name for model in SUITE.models}
    for reference in SUITE.references:
        assert reference.get("dataset") == "ptb", reference
        assert re.search(r"\bTable \d+\b", reference["source"]), f"no table named: {reference['source']!r}"
        assert re.search(r"https?://\S+", reference["source"]), f"no address: {reference['source']!r}"
        assert reference.get("protocol", "").strip(), f"no protocol: {reference}"
        if not reference.get("apart"):
            # In our table: a row of one of our models, each value in the column whose metric it names.
            assert reference["model"] in models, reference["model"]
            assert set(reference["values"]) <= columns, reference["values"]
            for metric in reference["values"]:
                assert metric in reference["protocol"], f"{reference['model']}: the protocol does not name {metric}"


def _results_folder(tmp_path: Path) -> Path:
    """A results folder as the bench writes it for zoo-ptb: the suite's description and one record."""
    root = tmp_path / "zoo-ptb"
    (root / "records").mkdir(parents=True)
    (root / "suite.json").write_text(json.dumps({
        "name": SUITE.name, "title": SUITE.title, "models": [m.name for m in SUITE.models],
        "columns": [asdict(c) for c in SUITE.columns], "references": SUITE.references}))
    record = {"model": "VRAE", "dataset": {"name": "ptb"}, "protocol_version": "1", "suite": SUITE.name,
              "metrics": {"iw": {"nll": 100.0}, "paper": {"ppl": 130.0}}}
    (root / "records" / "vrae.json").write_text(json.dumps(record))
    return tmp_path


def _markdown_rows(table: str) -> list[list[str]]:
    """The rows of the Markdown tables in ``table`` (header rows included), each a list of its cells."""
    rows = []
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and not set(cells[0]) <= set("-: "):
            rows.append(cells)
    return rows


def test_the_leaderboard_prints_same_protocol_references_in_their_column_and_the_others_apart(tmp_path):
    text = render(load_results(_results_folder(tmp_path)), "md")
    ours, note, apart = text.partition(APART_NOTE)
    our_rows = {row[0]: row[1:] for row in _markdown_rows(ours)}
    apart_rows = [row[:3] for row in _markdown_rows(apart)]
    headers = [column.header for column in SUITE.columns]
    assert our_rows["VRAE"][0] == "100.00"  # our run, in the first column (IW-NLL)
    for reference in SUITE.references:
        label = f"{reference['model']} ({reference['source']})"
        if reference.get("apart"):
            assert label not in our_rows and reference["source"] not in ours
            assert [reference["model"], reference["source"], reference["protocol"]] in apart_rows
            continue
        row = our_rows[label]
        for column in SUITE.columns:
            cell = row[headers.index(column.header)]
            value = reference["values"].get(column.metric)
            assert cell == (f"{value:,.{column.digits}f}" if value is not None else "–"), (label, column.header)
    assert bool(note) == any(reference.get("apart") for reference in SUITE.references)
