"""DUC 2005 and 2006 copies in NIST's layout, from fixtures written here in each year's format (no DUC text is
copied): topics without <docs>, documents from the topic's folder, DUC 2005's lower-case topic numbers and its
Financial Times and LA Times documents; the registered datasets' checks; summarizing and scoring such a copy."""

from pathlib import Path

import pytest

from seqvae_zoo.data.base import DataError
from seqvae_zoo.data.duc2007 import Duc2005, Duc2006, read_nist_layout
from seqvae_zoo.data.files import DataFile
from seqvae_zoo.registry import DATASETS

STORY = ("The city council approved a new budget for the harbor on Monday after a long debate. "
         "Council members said the plan would repair three piers and dredge the main channel. "
         "Critics argued that the harbor authority had wasted money on earlier projects. "
         "The mayor said work would begin in the spring and end within two years.")

TOPICS_2006 = """<topic>
<num> {id} </num>
<title> Harbor budget </title>
<narr>
Describe the harbor budget and the debate around it. What will the money repair?
</narr>
</topic>

"""

TOPICS_2005 = TOPICS_2006.replace("</narr>\n", "</narr>\n<granularity> specific </granularity>\n")

AQUAINT_DOCUMENT = """<DOC>
<DOCNO> {docno} </DOCNO>
<DOCTYPE> NEWS STORY </DOCTYPE>
<DATE_TIME> 1999-07-07 13:09:43 </DATE_TIME>
<BODY>
<HEADLINE>
Council approves harbor budget
</HEADLINE>
<TEXT>
<P>
   PORTSMOUTH (AP) -- {first}
</P>
<P>
   {rest}
</P>
</TEXT>
</BODY>
<TRAILER> AP-NY-07-07-99 1309EDT </TRAILER>
</DOC>
"""

FT_DOCUMENT = """<DOC>
<DOCNO> {docno} </DOCNO>
<PROFILE>_AN-CCCARAC7FT</PROFILE>
<DATE>920303
</DATE>
<HEADLINE>
FT  03 MAR 92 / Council approves harbor budget
</HEADLINE>
<TEXT>
{first}

{rest}
</TEXT>
<PUB>The Financial Times
</PUB>
<PAGE>
London Page 4
</PAGE>
</DOC>
"""

LA_TIMES_DOCUMENT = """<DOC>
<DOCNO> {docno} </DOCNO>
<DOCID> 81 </DOCID>
<DATE>
<P>
January 1, 1989, Sunday, Home Edition
</P>
</DATE>
<HEADLINE>
<P>
Council Approves Harbor Budget
</P>
</HEADLINE>
<TEXT>
<P>
{first}
</P>
<P>
{rest}
</P>
</TEXT>
</DOC>
"""

REFERENCE = ("The council approved a harbor budget that repairs three piers and dredges the channel.\n"
             "Critics said earlier projects wasted money.\nWork begins in the spring.\n")


def write_copy(root: Path, year: int, documents: int = 3, references: str = "ABCD") -> Path:
    """A two-topic copy in ``year``'s format: the topics file, ``documents`` documents a topic, four references."""
    if year == 2005:
        ids, topics_file, template = ["d301i", "d302j"], "duc2005_topics.sgml", TOPICS_2005
        docnos = [f"FT921-{100 + n}" if n % 2 else f"LA0101{89 + n:02d}-0018" for n in range(documents)]
    else:
        ids, topics_file, template = ["D0601A", "D0602B"], "duc2006_topics.sgml", TOPICS_2006
        docnos = [f"APW1999070{n}.0181" for n in range(documents)]
    root.mkdir(parents=True, exist_ok=True)
    (root / topics_file).write_text("".join(template.format(id=topic_id) for topic_id in ids))
    sentences = STORY.split(". ")
    for topic_id in ids:
        folder = root / "docs" / topic_id
        folder.mkdir(parents=True)
        for number, docno in enumerate(docnos):
            form = AQUAINT_DOCUMENT if year == 2006 else FT_DOCUMENT if docno.startswith("FT") else LA_TIMES_DOCUMENT
            order = sentences[number % len(sentences):] + sentences[:number % len(sentences)]
            (folder / docno).write_text(form.format(docno=docno, first=order[0] + ".",
                                                    rest=". ".join(order[1:]).rstrip(".") + "."))
    (root / "refs").mkdir()
    for topic_id in ids:
        for summarizer in references:
            (root / "refs" / f"{topic_id[:-1].upper()}.M.250.{topic_id[-1].upper()}.{summarizer}").write_text(
                REFERENCE)
    return root


class SmallDuc2006(Duc2006):
    """duc2006's checks at the fixture's size (its topics file is not NIST's, so no checksum)."""

    files = (DataFile("duc2006_topics.sgml", None),)
    topic_count = 2
    documents_per_topic = (3, 3)


class SmallDuc2005(Duc2005):
    topic_count = 2
    documents_per_topic = (2, 4)


@pytest.mark.parametrize("year", [2005, 2006])
def test_a_copy_without_docs_lists_reads_each_topic_folder(tmp_path, year):
    root = write_copy(tmp_path / f"duc{year}", year)
    topics = read_nist_layout(root, f"duc{year}_topics.sgml")
    expected = [("d301i", "D301", "I"), ("d302j", "D302", "J")] if year == 2005 else [
        ("D0601A", "D0601", "A"), ("D0602B", "D0602", "B")]
    assert [(t.id, t.cluster, t.assessor) for t in topics] == expected
    assert all(len(t.documents) == 3 and len(t.references) == 4 for t in topics)
    first = topics[0]
    assert first.title == "Harbor budget" and first.narrative.startswith("Describe the harbor budget")
    assert [d.docno for d in first.documents] == sorted(p.name for p in (root / "docs" / first.id).iterdir())
    assert all(len(d.paragraphs) == 2 and len(d.sentences) == 4 for d in first.documents)
    assert "The city council approved a new budget for the harbor on Monday after a long debate." in {
        d.sentences[0].text for d in first.documents}
    assert not any("PORTSMOUTH" in s.text for s in first.sentences())
    assert all(d.headline.endswith("Harbor Budget") or d.headline.endswith("harbor budget")
               for d in first.documents)


def test_the_registered_years_know_their_topics_files_and_where_to_get_them():
    assert {name: DATASETS.get(name).files[0].name for name in ("duc2005", "duc2006", "duc2007")} == {
        "duc2005": "duc2005_topics.sgml", "duc2006": "duc2006_topics.sgml", "duc2007": "topics.sgml"}
    assert Duc2006.files[0].md5 == "5960fedc573f4d18655ff6572026b653"
    assert all("duc.nist.gov" in DATASETS.get(name).source for name in ("duc2005", "duc2006", "duc2007"))


def test_duc2006_checks_the_topics_file_against_nists_checksum(tmp_path):
    write_copy(tmp_path / "duc2006", 2006)
    with pytest.raises(DataError, match=r"duc2006_topics\.sgml has md5 \w+, expected 5960fedc573f4d18655ff6572026b653"):
        Duc2006(data_dir=str(tmp_path)).topics()


def test_duc2005_counts_its_fifty_topics(tmp_path):
    write_copy(tmp_path / "duc2005", 2005)
    with pytest.raises(DataError, match=r"duc2005_topics\.sgml has 2 topics, expected 50"):
        Duc2005(data_dir=str(tmp_path)).topics()


def test_a_topic_folder_with_a_document_too_few_is_named(tmp_path):
    root = write_copy(tmp_path / "duc2006", 2006)
    (root / "docs" / "D0602B" / "APW19990701.0181").unlink()
    with pytest.raises(DataError, match=r"topic D0602B has 2 documents \(.*docs/D0602B\), expected 3 in duc2006\. "
                                        r"Copy the topic's complete folder"):
        SmallDuc2006(data_dir=str(tmp_path)).topics()


def test_a_stray_file_in_a_topic_folder_is_named(tmp_path):
    root = write_copy(tmp_path / "duc2006", 2006)
    (root / "docs" / "D0601A" / "notes.txt").write_text("to read\n")
    with pytest.raises(DataError, match=r"docs/D0601A/notes\.txt is not a readable NIST SGML file: it has no <DOCNO>"):
        SmallDuc2006(data_dir=str(tmp_path)).topics()


def test_a_reference_under_another_assessor_is_named(tmp_path):
    root = write_copy(tmp_path / "duc2006", 2006)
    (root / "refs" / "D0601.M.250.A.D").rename(root / "refs" / "D0601.M.250.B.D")
    with pytest.raises(DataError, match=r"D0601\.M\.250\.B\.D names assessor B, but topic D0601A's assessor is A"):
        SmallDuc2006(data_dir=str(tmp_path)).topics()


def test_a_duc_2005_copy_loads_as_a_corpus(tmp_path):
    write_copy(tmp_path / "duc2005", 2005, documents=4, references="ABCDEFGHI")
    corpus = SmallDuc2005(data_dir=str(tmp_path), holdout_every=4).load()
    assert {key: corpus.metadata[key] for key in ("topics", "documents", "referenced_topics", "references")} == {
        "topics": 2, "documents": 8, "referenced_topics": 2, "references": 18}
    assert set(corpus.checksums) == {"duc2005_topics.sgml", "docs/", "refs/"}
    assert sum(len(split) for split in corpus.splits.values()) == 2 * 4 * 4


@pytest.mark.parametrize("year, small", [(2005, SmallDuc2005), (2006, SmallDuc2006)])
def test_a_copy_summarizes_and_scores_with_ducs_rouge(tmp_path, year, small):
    from seqvae_zoo.summarization import baseline_summarizers, render_table, run_systems
    from seqvae_zoo.summarization.selection import SelectionSettings

    write_copy(tmp_path / f"duc{year}", year)
    corpus = small(data_dir=str(tmp_path), holdout_every=4).load()
    score, = run_systems(baseline_summarizers(["lead"]), corpus, SelectionSettings(words=20), tmp_path / "out")
    cluster, assessor = ("D301", "I") if year == 2005 else ("D0601", "A")
    written = (tmp_path / "out" / "LEAD" / f"{cluster}.M.20.{assessor}.LEAD").read_text()
    assert len(written.split()) == 20 and written.split("\n")[0] in STORY
    record = score.as_dict()
    assert record["topics_scored"] == 2 and set(record["intervals"]) == {"rouge1", "rouge2", "rougeSU4"}
    assert 0 < record["rougeSU4"]["recall"] < record["rouge1"]["recall"] < 1
    assert record["intervals"]["rouge2"]["recall"]["low"] <= record["rouge2"]["recall"] <= \
        record["intervals"]["rouge2"]["recall"]["high"]
    assert render_table([score], 20).startswith("DUC's ROUGE-1.5.5 (-n 2 -m -2 4 -u -f A -l 20")


def test_a_collection_of_ones_own_in_ducs_layout_summarizes_with_verify_off(tmp_path):
    """Two topics of three documents in DUC 2006's layout are not DUC 2006: the registered loader refuses them,
    saying how to read them anyway, and reads and summarizes them with its checks off."""
    from seqvae_zoo.data import load_dataset
    from seqvae_zoo.summarization import baseline_summarizers, run_systems
    from seqvae_zoo.summarization.selection import SelectionSettings

    write_copy(tmp_path / "duc2006", 2006)
    with pytest.raises(DataError, match=r"duc2006: .*duc2006_topics\.sgml has md5 .*datasets\.duc2006\.verify = False"):
        load_dataset("duc2006", data_dir=str(tmp_path))
    with pytest.warns(UserWarning, match="verify is off") as caught:
        corpus = load_dataset("duc2006", data_dir=str(tmp_path), holdout_every=4, verify=False)
    message = str(caught[0].message)
    assert len(caught) == 1 and "has 2 topics, expected 50" in message and "has 3 documents" in message
    assert corpus.metadata["topics"] == 2 and len(corpus.metadata["departures_from_published"]) == 4
    dataset = DATASETS.get("duc2006")(data_dir=str(tmp_path), holdout_every=4, verify=False)
    dataset.topics()  # read twice by one instance: its departures are counted once
    assert len(dataset.load().metadata["departures_from_published"]) == 4
    score, = run_systems(baseline_summarizers(["lead"]), corpus, SelectionSettings(words=20), tmp_path / "out")
    assert score.as_dict()["topics_scored"] == 2
