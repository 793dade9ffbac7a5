"""The zoo-ptb suite and published numbers: a reference measured under another protocol is shown apart from our
columns, with its source and protocol, and a reference that does not say where it comes from is refused."""

from __future__ import annotations

import pytest

from seqvae_zoo.bench.leaderboard import render
from seqvae_zoo.bench.suite import SuiteError, load_suite

DESCRIPTION = {
    "name": "tiny", "title": "Tiny", "models": ["VRAE"],
    "columns": [{"header": "IW-NLL", "metric": "iw.nll"}],
    "references": [
        {"model": "VRAE", "source": "Paper A, Table 1", "values": {"iw.nll": 99.5}},
        {"model": "VAE", "source": "Paper B, Table 2", "protocol": "IW-NLL K=100, end-of-sentence not counted",
         "apart": True, "values": {"NLL": 88.25}},
    ],
}
RECORDS = [{"model": "VRAE", "dataset": {"name": "ptb"}, "protocol_version": "1", "metrics": {"iw": {"nll": 101.0}}}]


def test_a_reference_under_another_protocol_stands_apart_from_our_columns():
    text = render([(DESCRIPTION, RECORDS)], "md")
    ours, _, apart = text.partition("Published under other protocols")
    assert "99.50" in ours and "101.00" in ours  # same protocol: in our column
    assert "88.25" not in ours and "Paper B" not in ours
    assert "Paper B, Table 2" in apart and "end-of-sentence not counted" in apart and "NLL 88.25" in apart
    assert "Published under other protocols" in render([(DESCRIPTION, RECORDS)], "latex")


@pytest.mark.parametrize("reference, missing", [
    ('model = "VAE"\nvalues = { "NLL" = 1.0 }', "source"),
    ('model = "VAE"\nsource = "Paper B, Table 2"\napart = true\nvalues = { "NLL" = 1.0 }', "protocol"),
])
def test_a_reference_without_its_source_or_protocol_is_refused(tmp_path, reference, missing):
    path = tmp_path / "s.toml"
    path.write_text('datasets = ["synthetic"]\n[[models]]\nname = "VRAE"\nconfigs = ["vrae"]\n[[columns]]\n'
                    f'header = "IW-NLL"\nmetric = "iw.nll"\n[[references]]\n{reference}\n')
    with pytest.raises(SuiteError, match=f"lacks {missing}"):
        load_suite(str(path))
