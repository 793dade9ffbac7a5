"""Extractive summarization on DUC 2007: ROUGE-1, the word budget, near-duplicates, the rankers and representations,
the LEAD and random baselines on the 23 referenced topics, tiny models end to end, NIST file names."""

import json
import subprocess
import sys

import pytest
import torch

from seqvae_zoo.cli import main
from seqvae_zoo.data.duc2007 import Sentence, Topic, tokenize
from seqvae_zoo.data.loading import load_dataset
from seqvae_zoo.data.vocab import Vocabulary
from seqvae_zoo.errors import UserError
from seqvae_zoo.latents.gaussian import GaussianLatent
from seqvae_zoo.presets import build_model, parse_config
from seqvae_zoo.registry import REGISTRIES
from seqvae_zoo.summarization import (RANKERS, REPRESENTATIONS, Summarizer, baseline_metrics, baseline_summarizers,
                                      model_summarizer, render_table, run_systems, summarize_and_score,
                                      summarize_topics, write_summaries)
from seqvae_zoo.summarization.lda import LDA
from seqvae_zoo.summarization.pipeline import score_summaries, table_rows
from seqvae_zoo.summarization.rankers.base import RankingInput
from seqvae_zoo.summarization.rankers.kl import KLRanker, kl_divergence
from seqvae_zoo.summarization.representations.base import Categorical, TopicRepresentation
from seqvae_zoo.summarization.rouge import rouge1
from seqvae_zoo.summarization.selection import SelectionSettings, select
from seqvae_zoo.training.run import train_run

TINY = ["EMBEDDING = 8", "HIDDEN = 8", "LATENT = 4"]


@pytest.fixture(scope="module")
def duc():
    return load_dataset("duc2007")


@pytest.fixture(scope="module")
def topics(duc):
    return {topic.id: topic for topic in duc.extras["topics"]}


@pytest.fixture(scope="module")
def baselines(duc):
    """LEAD and the random baseline (5 seeds) on every topic: (summarizer, summaries, score) per system."""
    settings = SelectionSettings()
    runs = []
    for summarizer in baseline_summarizers(("lead", "random")):
        summaries = summarize_topics(summarizer, duc.extras["topics"], settings)
        runs.append((summarizer, summaries))
    return runs


def sentence(text: str, docno: str = "APW19990101.0001", position: int = 0) -> Sentence:
    return Sentence(text, tuple(tokenize(text)), docno, position)


def rouge_score_f(summary: str, references: list[str], words: int = 250) -> float:
    """ROUGE-1 F straight from the rouge-score package: the summary's first ``words`` words, Porter stemming, the mean
    over the references. What a score the pipeline reports under its "rouge-score" protocol must equal (the default
    protocol, DUC's ROUGE-1.5.5, is held to NIST's own output in tests/test_duc_rouge.py)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
    peer = " ".join(summary.split()[:words])
    return sum(scorer.score(reference, peer)["rouge1"].fmeasure for reference in references) / len(references)


# -- ROUGE -----------------------------------------------------------------------------------------------------------
def test_a_reference_scores_one_against_itself(topics):
    reference = topics["D0701A"].references[0].text
    score = rouge1(reference, [reference])
    assert (score.recall, score.precision, score.f) == (1.0, 1.0, 1.0)


def test_an_unrelated_topics_reference_scores_low(topics):
    """The Southern Poverty Law Center against the introduction of the Euro: function words only."""
    splc, euro = topics["D0701A"].references, topics["D0703A"].references
    unrelated = rouge1(euro[0].text, [reference.text for reference in splc])
    same_topic = rouge1(splc[1].text, [splc[0].text, splc[2].text, splc[3].text])
    assert unrelated.f < 0.3
    assert same_topic.f > unrelated.f + 0.15


def test_the_summary_is_cut_at_the_budget_before_scoring():
    reference = "the euro was introduced on january first"
    assert rouge1(reference + " and nothing else matters here", [reference], words=7).precision == 1.0
    assert rouge1(reference + " and nothing else matters here", [reference], words=12).precision == pytest.approx(
        7 / 12)


def test_rouge_needs_a_reference():
    with pytest.raises(UserError, match="at least one reference"):
        rouge1("a summary", [])


# -- selection -------------------------------------------------------------------------------------------------------
def test_sentences_are_taken_in_rank_order_until_the_budget_and_the_last_is_cut():
    sentences = [sentence("Wolves returned to Yellowstone National Park in 1995."),
                 sentence("Ranchers fear for their cattle and sheep."),
                 sentence("The euro replaced eleven national currencies.")]
    summary = select(sentences, [2, 0, 1], SelectionSettings(words=10), "D0701A", "TEST")
    assert summary.sentences == ["The euro replaced eleven national currencies.", "Wolves returned to Yellowstone"]
    assert summary.word_count == 10
    whole = select(sentences, [2, 0, 1], SelectionSettings(words=10, cut_last=False), "D0701A", "TEST")
    assert whole.sentences == ["The euro replaced eleven national currencies."]
    fits = select(sentences, [2, 1, 0], SelectionSettings(words=13), "D0701A", "TEST")
    assert fits.sentences == ["The euro replaced eleven national currencies.",
                              "Ranchers fear for their cattle and sheep."]


def test_near_duplicates_of_chosen_sentences_are_skipped():
    first = sentence("The Aryan Nations must pay $6.3 million to a woman and her son, a jury ruled Thursday.")
    update = sentence("The Aryan Nations must pay $6.3 million to a woman and her son, a jury ruled on Thursday.")
    other = sentence("Morris Dees said the verdict would bankrupt the group and its founder Richard Butler.")
    summary = select([first, update, other], [0, 1, 2], SelectionSettings(words=250), "D0701A", "TEST")
    assert summary.sentences == [first.text, other.text]


@pytest.mark.parametrize("options, message", [({"words": 0}, "at least 1 word"),
                                              ({"duplicate_similarity": 1.5}, "must be in \\(0, 1\\]")])
def test_bad_selection_settings_are_refused(options, message):
    with pytest.raises(UserError, match=message):
        SelectionSettings(**options)


# -- representations and rankers -------------------------------------------------------------------------------------
def test_the_topic_gaussian_has_the_mixtures_mean_and_variance():
    sentences = GaussianLatent(torch.tensor([[0.0, 1.0], [2.0, 1.0]]), torch.tensor([[1.0, 1.0], [1.0, 2.0]]).log())
    topic = sentences.moment_matched()
    assert torch.allclose(topic.mean, torch.tensor([1.0, 1.0]))
    # variance of the mixture = mean of the variances + variance of the means
    assert torch.allclose(topic.logvar.exp(), torch.tensor([1.0 + 1.0, 1.5 + 0.0]))


def ranking_input(distributions, topic, candidates=None) -> RankingInput:
    count = len(distributions[0])
    return RankingInput(topic=None, sentences=[None] * count, candidates=candidates or list(range(count)),
                        representation=TopicRepresentation(distributions, topic))


def test_kl_ranking_puts_the_sentence_closest_to_the_topic_first():
    sentences = GaussianLatent(torch.tensor([[3.0], [0.1], [-1.0]]), torch.zeros(3, 1))
    topic = GaussianLatent(torch.zeros(1), torch.zeros(1))
    assert KLRanker().rank(ranking_input(sentences, topic)) == [1, 2, 0]
    assert KLRanker().rank(ranking_input(sentences, topic, candidates=[0, 2])) == [2, 0]


def test_kl_directions_differ_on_spread():
    """KL(sentence || topic) measures distance in the topic's spread; the reverse in each sentence's own, so there
    a broad sentence far away beats a narrow one close by."""
    sentences = GaussianLatent(torch.tensor([[0.5], [2.0]]), torch.tensor([[-2.0], [3.0]]))
    topic = GaussianLatent(torch.zeros(1), torch.zeros(1))
    assert KLRanker("sentence_to_topic").rank(ranking_input(sentences, topic)) == [0, 1]
    assert KLRanker("topic_to_sentence").rank(ranking_input(sentences, topic)) == [1, 0]
    forward = kl_divergence(sentences, topic)
    assert torch.allclose(forward, 0.5 * (-sentences.logvar[:, 0] + sentences.logvar[:, 0].exp()
                                          + sentences.mean[:, 0] ** 2 - 1))
    symmetric = KLRanker("symmetric").rank(ranking_input(sentences, topic))
    assert symmetric == [0, 1]  # 0.69 + 3.12 against 10.0 + 1.13
    with pytest.raises(UserError, match="direction must be one of"):
        KLRanker("sideways")


def test_categorical_kl_and_cosine_rank_topic_mixtures():
    mixtures = Categorical(torch.tensor([[0.1, 0.9], [0.6, 0.4], [0.5, 0.5]]))
    topic = Categorical(torch.tensor([0.6, 0.4]))
    assert torch.allclose(kl_divergence(mixtures, topic)[1], torch.tensor(0.0))
    assert KLRanker().rank(ranking_input(mixtures, topic)) == [1, 2, 0]
    assert RANKERS.get("cosine")().rank(ranking_input(mixtures, topic)) == [1, 2, 0]


def test_lda_separates_two_vocabularies():
    wolves = [["wolves", "yellowstone", "pack", "ranchers", "elk"][i:] + ["wolves", "park"] for i in range(4)] * 10
    euro = [["euro", "currency", "bank", "markets", "francs"][i:] + ["euro", "rates"] for i in range(4)] * 10
    lda = LDA(num_topics=2, em_iterations=30, min_count=1).fit(wolves + euro)
    gamma = lda.infer([["wolves", "elk", "pack"], ["euro", "bank", "francs"], ["unseen", "words"]])
    first, second = (gamma[:2] / gamma[:2].sum(dim=1, keepdim=True)).argmax(dim=1).tolist()
    assert first != second
    assert torch.allclose(gamma[2], torch.full((2,), lda.alpha))  # nothing known: the prior
    assert set(lda.top_words(first, 3)) <= {"wolves", "yellowstone", "pack", "ranchers", "elk", "park"}


def test_lda_refuses_a_corpus_smaller_than_its_topics():
    with pytest.raises(UserError, match="fewer than its 50 topics"):
        LDA(num_topics=50).fit([["wolves", "yellowstone"], ["wolves", "yellowstone"]])


def test_the_registries_are_listed_with_every_component():
    assert REGISTRIES["representations"].names() == ["context_prior", "final_state", "lda", "posterior"]
    assert REGISTRIES["rankers"].names() == ["cosine", "kl", "lead", "query", "random"]


def test_a_fresh_process_loads_the_summarization_registries_with_the_others():
    code = ("from seqvae_zoo.registry import REGISTRIES, load_components; load_components(); "
            "print(REGISTRIES['rankers'].names(), REGISTRIES['representations'].names())")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == ("['cosine', 'kl', 'lead', 'query', 'random'] "
                              "['context_prior', 'final_state', 'lda', 'posterior']")


# -- baselines on the real topics ------------------------------------------------------------------------------------
def test_baseline_summaries_are_real_text_within_the_budget(baselines, topics):
    for summarizer, summaries in baselines:
        assert len(summaries) == 45
        for summary in summaries:
            assert summary.word_count == 250  # every topic has far more than 250 words of candidates
            texts = [s.text for s in topics[summary.topic_id].sentences()]
            assert all(text in texts for text in summary.sentences[:-1])
            assert any(text.startswith(summary.sentences[-1]) for text in texts)


def test_lead_starts_with_the_newest_documents_first_sentence(baselines, topics):
    lead = dict(zip((s.topic_id for s in baselines[0][1]), baselines[0][1]))
    topic = topics["D0701A"]
    newest = max(topic.documents, key=lambda document: document.order_key)
    assert newest.docno == "APW20000915.0189"
    assert lead["D0701A"].sentences[0] == newest.sentences[0].text


def test_lead_and_random_score_in_a_sane_range_on_the_23_referenced_topics(baselines, duc):
    scores = [score_summaries(summarizer, summaries, duc.extras["topics"], 250) for summarizer, summaries in
              baselines]
    rows = {row["label"]: row for row in table_rows(scores)}
    lead, random = rows["LEAD"], rows["Random (5 seeds)"]
    for row in (lead, random):
        assert row["topics_scored"] == 23 and row["topics"] == 45
        for value in row["rouge1"].values():
            assert 0.30 < value < 0.45
    assert lead["rouge1"]["f"] > random["rouge1"]["f"]
    assert 0 < random["f_std"] < 0.02
    table = render_table(scores, 250)
    assert "23 of 45 topics scored" in table and "Porter stemming" in table and "| LEAD " in table


def test_summaries_are_written_one_file_per_topic_in_nist_naming(baselines, topics, tmp_path):
    summarizer, summaries = baselines[0]
    paths = write_summaries(summaries, list(topics.values()), tmp_path, 250)
    assert len(paths) == 45
    assert paths[0] == tmp_path / "LEAD" / "D0701.M.250.A.LEAD"
    assert tmp_path / "LEAD" / "D0745.M.250.J.LEAD" in paths
    assert paths[0].read_text().splitlines() == summaries[0].sentences


def test_a_system_id_must_fit_a_nist_file_name():
    with pytest.raises(UserError, match="may only hold letters, digits"):
        Summarizer("my.system", "mine", RANKERS.get("lead")())
    with pytest.raises(UserError, match="compares representations"):
        Summarizer("KL", "kl without representation", RANKERS.get("kl")())


def test_an_unknown_baseline_or_no_random_seed_is_refused():
    with pytest.raises(UserError, match="unknown baseline sumy; baselines: lead, random, lda"):
        baseline_summarizers(["lead", "sumy"])
    with pytest.raises(UserError, match="needs at least one seed; got 0"):
        baseline_summarizers(["random"], random_seeds=0)


# -- models end to end -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vocab(duc):
    return Vocabulary.build(duc.splits["train"], max_size=3000)


def tiny_model(preset: str, vocab):
    parse_config([preset], TINY)
    torch.manual_seed(0)
    return build_model(vocab_size=vocab.size, pad_id=vocab.pad_id, bos_id=vocab.bos_id, unk_id=vocab.unk_id,
                       eos_id=vocab.eos_id)


@pytest.fixture(scope="module")
def small_topic(topics):
    """D0701A cut to its first five documents (with its references), so that models run it in seconds."""
    topic = topics["D0701A"]
    return Topic(topic.id, topic.title, topic.narrative, topic.documents[:5], topic.references)


@pytest.mark.parametrize("preset, representation", [("lstm", "final_state"), ("vrae", "posterior"),
                                                     ("vrae_sa_aux", "context_prior")])
def test_a_tiny_model_summarizes_end_to_end(preset, representation, small_topic, vocab):
    model = tiny_model(preset, vocab)
    summarizer = model_summarizer(model, vocab, system=preset)
    assert type(summarizer.representation).registry_name == representation
    summary, = summarize_topics(summarizer, [small_topic])
    assert summary.word_count == 250
    texts = [s.text for s in small_topic.sentences()]
    assert all(text in texts for text in summary.sentences[:-1])
    assert score_summaries(summarizer, [summary], [small_topic], 250, rouge="rouge-score").mean.f == pytest.approx(
        rouge_score_f(summary.text, [r.text for r in small_topic.references]))
    assert model.training  # left as it was found
    if preset == "vrae_sa_aux":  # the stochastic decoder runs at its means: the same summary every time
        assert summarize_topics(summarizer, [small_topic])[0].sentences == summary.sentences


def test_the_bench_gets_metrics_records_for_models_and_baselines(duc, vocab):
    record = summarize_and_score(tiny_model("vrae", vocab), vocab, duc, topic_ids=["D0701A"])
    assert (record["representation"], record["ranker"], record["topics_scored"]) == ("posterior", "kl", 1)
    assert set(record["rouge1"]) == {"recall", "precision", "f"} and "Porter stemming" in record["protocol"]
    baselines = baseline_metrics(duc, names=("lead", "random"), random_seeds=2, topic_ids=["D0701A"])
    assert list(baselines) == ["LEAD", "Random (2 seeds)"]
    assert baselines["Random (2 seeds)"]["systems"] == ["RANDOM-0", "RANDOM-1"]
    assert baselines["Random (2 seeds)"]["f_std"] > 0 and baselines["LEAD"]["f_std"] is None


def test_a_representation_the_model_does_not_have_is_refused(vocab):
    with pytest.raises(UserError, match="representation 'context_prior' does not apply to this model .*use one of "
                                        "final_state"):
        model_summarizer(tiny_model("lstm", vocab), vocab, representation="context_prior")


def test_the_lda_baseline_runs_through_the_same_path(duc, topics, tmp_path):
    lda = Summarizer("LDA", "LDA + KL", RANKERS.get("kl")(),
                     REPRESENTATIONS.get("lda")(num_topics=10, em_iterations=3))
    score, = run_systems([lda], duc, out_dir=tmp_path, topic_ids=["D0701A", "D0703A"], rouge="rouge-score")
    assert sorted(score.per_topic) == ["D0701A", "D0703A"]
    for topic_id, name in (("D0701A", "D0701.M.250.A.LDA"), ("D0703A", "D0703.M.250.A.LDA")):
        written = (tmp_path / "LDA" / name).read_text()
        assert score.per_topic[topic_id]["rouge1"].f == pytest.approx(
            rouge_score_f(written, [r.text for r in topics[topic_id].references]))


def test_an_unknown_topic_is_named(duc):
    with pytest.raises(UserError, match="duc2007 has no topic D0799A; its topics are D0701A to D0745J"):
        run_systems(baseline_summarizers(["lead"]), duc, topic_ids=["D0799A"])


# -- the command line ------------------------------------------------------------------------------------------------
def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """VRAE, tiny, trained for two steps on the DUC sentences."""
    run = train_run(["vrae"], "duc2007", tmp_path_factory.mktemp("run"), bindings=TINY, max_steps=2, progress=False,
                    device="cpu")
    return run.out_dir / "checkpoint.pt"


def test_summarize_writes_summaries_and_scores(checkpoint, topics, tmp_path, capsys):
    status, out, err = run_cli(capsys, "summarize", str(checkpoint), "--data", "duc2007", "--topics", "D0701A",
                               "--baselines", "lead", "--out", str(tmp_path), "--device", "cpu", "--rouge",
                               "rouge-score")
    assert status == 0, err
    assert "1 of 1 topics scored" in out and "| LEAD " in out
    assert "| model (posterior + kl; trained on duc2007)" in out
    for system in ("model", "LEAD"):
        summary = (tmp_path / system / f"D0701.M.250.A.{system}").read_text()
        assert len(summary.split()) == 250
    record = json.loads((tmp_path / "scores.json").read_text())
    assert [system["system"] for system in record["systems"]] == ["model", "LEAD"]
    assert record["systems"][0]["rouge1"]["f"] == pytest.approx(rouge_score_f(
        (tmp_path / "model" / "D0701.M.250.A.model").read_text(), [r.text for r in topics["D0701A"].references]))
    assert (tmp_path / "scores.md").read_text().strip() == out.split("\n\nsummaries in")[0].strip()


@pytest.mark.parametrize("extra, message", [
    (["--ranker", "kll"], "error: unknown ranker 'kll'. Did you mean 'kl'?"),
    (["--representation", "contextprior"], "error: unknown representation 'contextprior'. Did you mean "
                                           "'context_prior'?"),
    (["--baselines", "lead,sumy"], "error: unknown baseline sumy"),
])
def test_summarize_refuses_unknown_names_before_reading_anything(extra, message, tmp_path, capsys):
    status, _, err = run_cli(capsys, "summarize", str(tmp_path / "no-such.pt"), *extra)
    assert status == 2 and err.startswith(message)


def test_summarize_names_an_unreadable_checkpoint(tmp_path, capsys):
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    status, _, err = run_cli(capsys, "summarize", str(tmp_path / "broken.pt"))
    assert status == 2 and "cannot read checkpoint" in err and "broken.pt" in err


def test_summarize_names_an_unknown_topic(checkpoint, tmp_path, capsys):
    status, _, err = run_cli(capsys, "summarize", str(checkpoint), "--topics", "D0701A,D0799Z", "--out",
                             str(tmp_path), "--device", "cpu")
    assert status == 2 and "duc2007 has no topic D0799Z" in err
