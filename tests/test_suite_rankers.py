"""A summarization suite row that changes only the ranker (paper-duc's query-focused row): the model's own
[evaluation] settings reach its evaluation and its cache key, and nothing else of the protocol can differ by row."""

import pytest

from seqvae_zoo.bench.harness import Bench
from seqvae_zoo.bench.suite import SuiteError, load_suite

SUITE = """
title = "rankers"
datasets = ["synthetic"]
seeds = [0]
epochs = 1
bindings = ["EMBEDDING = 16", "HIDDEN = 16", "LATENT = 4", "training.TrainingSettings.batch_size = 32",
            "training.TrainingSettings.checkpoint_every = 0"]

[dataset_options.synthetic]
train_size = 64
valid_size = 16
test_size = 16

[evaluation]
kind = "summarization"
ranker = "kl"

[[models]]
name = "VRAE"
configs = ["vrae"]

[[models]]
name = "VRAE + query"
configs = ["vrae"]
evaluation = { ranker = "query" }

[[columns]]
header = "R-1 F"
metric = "rouge1.f"
"""


def test_a_row_may_change_its_ranker_and_is_its_own_run(tmp_path, monkeypatch):
    import seqvae_zoo.bench.harness as harness

    rankers = {}

    def fake_evaluation(settings, model, vocab, corpus, seed):
        rankers[len(rankers)] = settings["ranker"]
        return {"rouge1": {"recall": 0.5, "precision": 0.4, "f": 0.45 if settings["ranker"] == "kl" else 0.47}}

    monkeypatch.setattr(harness, "evaluate_trained", fake_evaluation)
    path = tmp_path / "rankers.toml"
    path.write_text(SUITE)
    suite = load_suite(str(path))
    bench = Bench(suite, tmp_path, progress=False, log=lambda _: None)
    keys = {model.name: bench.run_key(model, "synthetic", 0)[0] for model in suite.models}
    assert len(set(keys.values())) == 2
    table = bench.run()
    assert sorted(rankers.values()) == ["kl", "query"]
    assert "| VRAE + query |" in table and "0.47" in table


def test_a_row_may_not_change_the_protocol(tmp_path):
    path = tmp_path / "rankers.toml"
    path.write_text(SUITE.replace('evaluation = { ranker = "query" }', 'evaluation = { rouge = "rouge-score" }'))
    with pytest.raises(SuiteError, match=r"model 'VRAE \+ query' sets evaluation rouge; a model may set only ranker"):
        load_suite(str(path))


def test_paper_duc_reports_rouge_2_and_su4_and_the_query_row():
    suite = load_suite("paper-duc")
    assert suite.evaluation["rouge"] == "duc"
    assert [c.metric for c in suite.columns] == ["rouge1.recall", "rouge1.precision", "rouge1.f", "rouge2.recall",
                                                 "rougeSU4.recall"]
    query_row = next(model for model in suite.models if "query" in model.name)
    assert query_row.configs == ("vrae_sa_aux",) and suite.evaluation_for(query_row)["ranker"] == "query"
