"""The two ROUGE protocols of the summarization pipeline on hand-made topics: what each reports, how the table
names it, and the messages for summaries of the wrong length or none at all."""

import pytest

from seqvae_zoo.data.duc2007 import Reference, Topic
from seqvae_zoo.errors import UserError
from seqvae_zoo.summarization import duc_rouge
from seqvae_zoo.summarization.pipeline import SystemScore, render_table
from seqvae_zoo.summarization.rouge import SummaryLengthWarning, protocol, score_system

REFERENCES = ["the council approved the harbor budget on monday",
              "council members approved a budget to repair the harbor piers",
              "the harbor budget repairs three piers and dredges the channel",
              "a new harbor budget was approved after a long debate"]
SUMMARY = "The council approved a new budget for the harbor piers"  # 10 words


def topic(topic_id="D0601A"):
    return Topic(topic_id, "Harbor budget", "Describe the budget.", [],
                 [Reference(f"{topic_id[:-1]}.M.10.{topic_id[-1]}.{name}", name, text)
                  for name, text in zip("ABCD", REFERENCES)])


def test_duc_reports_rouge_1_2_su4_jackknifed_with_intervals():
    result = score_system({"D0601A": SUMMARY}, [topic()], words=10)
    assert set(result.means) == {"rouge1", "rouge2", "rougeSU4"} == set(result.intervals)
    peer = duc_rouge.tokens(SUMMARY, 10)
    references = {name: duc_rouge.tokens(text, 10) for name, text in zip("ABCD", REFERENCES)}
    left_out = [duc_rouge.score_evaluation(peer, evaluation.references, "rouge1")
                for evaluation in duc_rouge.jackknife("D0601.M.10.A", references)]
    assert len(left_out) == 4  # one evaluation per left-out reference, each against the other three
    assert result.per_topic["D0601A"]["rouge1"].recall == pytest.approx(sum(s.recall for s in left_out) / 4)
    # one topic's four evaluations: the bootstrap mean stays within their range
    assert min(s.recall for s in left_out) <= result.means["rouge1"].recall <= max(s.recall for s in left_out)


def test_the_table_names_its_protocol_and_shows_what_it_has():
    for name, extra in (("duc", ["R-2 Recall", "R-SU4 Recall"]), ("rouge-score", ["R-2 Recall"])):
        score = SystemScore("model", "model", score_system({"D0601A": SUMMARY}, [topic()], 10, name), 1)
        table = render_table([score], 10)
        header, row = (line for line in table.splitlines() if line.startswith("| ") and "--" not in line)
        assert table.startswith(protocol(10, name))
        assert [cell.strip() for cell in header.strip("|").split("|")] == [
            "System", "R-1 Recall", "R-1 Precision", "R-1 F", *extra]
        intervals = [cell for cell in row.split("|") if "[" in cell]
        assert len(intervals) == (2 if name == "duc" else 0)
    assert "ROUGE-SU4" not in protocol(10, "rouge-score") and "not DUC's" in protocol(10, "rouge-score")


def test_an_unknown_protocol_is_refused():
    with pytest.raises(UserError, match="unknown ROUGE protocol 'rouge155': use one of duc, rouge-score"):
        score_system({"D0601A": SUMMARY}, [topic()], 10, "rouge155")


def test_a_summary_longer_than_the_budget_is_cut_with_a_warning():
    with pytest.warns(SummaryLengthWarning, match=r"system 'x': 1 summaries are longer than the 8-word budget "
                                                  r"\(D0601A \(10\)\); ROUGE scores their first 8 words"):
        longer = score_system({"D0601A": SUMMARY}, [topic()], words=8, system="x")
    cut = " ".join(SUMMARY.split()[:8])
    assert longer.per_topic == score_system({"D0601A": cut}, [topic()], words=8).per_topic


def test_a_summary_shorter_than_the_budget_is_scored_as_it_is_with_a_warning():
    with pytest.warns(SummaryLengthWarning, match=r"1 summaries are shorter than the 250-word budget \(D0601A \(10\)\)"
                                                  r"; they are scored as they are"):
        score_system({"D0601A": SUMMARY}, [topic()], words=250)


def test_an_empty_summary_is_an_error():
    with pytest.raises(UserError, match=r"system 'x' has an empty summary for topic D0601A: ROUGE would score it 0"):
        score_system({"D0601A": " \n"}, [topic()], words=10, system="x")
