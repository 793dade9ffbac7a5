"""DUC 2007 in NIST's layout: the newswire sentence splitter and tokenizer on real documents, the loader's counts and
checksum, and a clear error for every kind of broken copy."""

import os
import re
import shutil
from pathlib import Path

import pytest

from seqvae_zoo.data.base import DataError
from seqvae_zoo.data.duc2007 import Duc2007, read_document, read_nist_layout, split_sentences, tokenize
from seqvae_zoo.data.loading import load_dataset

DUC = Path(os.environ["SEQVAE_DATA"]) / "duc2007"
REFERENCED = ["D0701A", "D0703A", "D0704A", "D0705A", "D0706B", "D0707B", "D0710C", "D0711C", "D0714D", "D0716D",
              "D0718D", "D0720E", "D0721E", "D0724F", "D0727G", "D0728G", "D0729G", "D0730G", "D0734H", "D0739I",
              "D0740I", "D0742J", "D0743J"]


def document(topic: str, docno: str):
    return read_document(DUC / "docs" / topic / docno, docno)


def paragraph_with(doc, text: str) -> str:
    return next(paragraph for paragraph in doc.paragraphs if text in paragraph)


# -- splitting real paragraphs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("topic, docno, needle, expected", [
    ("D0701A", "APW19990612.0141", "Bordenkircher", [
        "If convicted, Gilliam, could face six or seven years in prison, said Assistant U.S. Attorney Greg "
        "Bordenkircher.",
        "No charges were immediately filed in connection with the grenade purchase."]),
    ("D0712C", "NYT19980925.0388", "Rushdie is not", [
        "``We maintain close contact with the relevant authorities in all matters that might affect the safety and "
        "security of our passengers,'' Tobin said.",
        "``Mr. Rushdie is not a British Airways customer.''"]),
    ("D0741I", "NYT19990801.0138", "Acworth, Ga. gas station", [
        "But there was evidence the nation was still focused on Mark O. Barton's shooting spree Thursday at two "
        "Buckhead office buildings, where he left nine dead and 12 injured.",
        "He later shot himself in the head in an Acworth, Ga. gas station."]),
    ("D0701A", "NYT19990827.0030", "Sen. Joe McCarthy", [
        "Butler said he never agreed with fighting Germany, and was invigorated by newsreels of marching Germans.",
        "His racial activism, he said, began after returning from the war when ``things just didn't seem right'' "
        "and he became an admirer of Sen. Joe McCarthy's movement about communism."]),
    ("D0710C", "APW19981107.0309", "Nov. 16", [
        "The men were identified as Udi Hargov, 27 and Igal Damary, 49.",
        "They will appear in court again on Nov. 16 when formal charges could be filed or the prosecution might ask "
        "for further remand."]),
    ("D0711C", "NYT19991105.0200", "Microsoft Corp.", [
        "May 30 _ The Federal Trade Commission staff opens an antitrust probe of Microsoft Corp.",
        "The agency ponders charges that Microsoft illegally thwarted competition while adding hidden codes to its "
        "operating system software in a bid to hinder competing applications vendors."]),
])
def test_real_paragraphs_split_at_sentence_ends_only(topic, docno, needle, expected):
    """Titles (Mr., Sen.), initials, months before a day, U.S. and Ga. inside a sentence, quotes: no false breaks;
    "Corp." before "The" does end one."""
    assert split_sentences(paragraph_with(document(topic, docno), needle)) == expected


def test_a_quotation_with_its_attribution_is_one_sentence():
    doc = document("D0701A", "APW19990612.0141")
    assert split_sentences(paragraph_with(doc, "wanted to kill everybody")) == [
        "``He wanted to kill everybody,'' David Pasqualotto, a special agent with the Bureau of Alcohol, Tobacco and "
        "Firearms, said Friday."]


def test_datelines_are_stripped_and_kept_apart():
    ap = document("D0701A", "APW19990612.0141")
    assert ap.dateline == "MOBILE, Ala. (AP) --"
    assert ap.sentences[0].text.startswith("A white supremacist arrested after buying hand grenades")
    xinhua = document("D0704A", "XIE19960208.0020")
    assert xinhua.dateline == "JERUSALEM, February 8 (Xinhua) --"
    assert xinhua.sentences[0].text.startswith("Secretary General of the Amnesty International Pierre Sane")


def test_documents_without_paragraph_tags_split_at_indented_lines():
    doc = document("D0704A", "APW19980713.0779")  # APW sent this one without <P>
    assert doc.dateline == "KIGALI, Rwanda (AP) _"
    assert doc.paragraphs[1] == ("A delegation representing the U.N. Human Rights Field Operations in Rwanda arrived "
                                 "in Kigali Sunday for five days of talks with the government.")
    assert "returned only in Nov. 1996." in doc.paragraphs[-2]
    assert all("(REG:" not in sentence.text for sentence in doc.sentences)


def test_a_story_outside_the_text_element_is_read():
    """A few NYT syndicate features carry the story in <BODY> before an almost empty <TEXT>."""
    doc = document("D0701A", "NYT19990825.0042")
    assert len(doc.sentences) > 20
    assert any("Morris Dees of the Southern Poverty Law Center" in sentence.text for sentence in doc.sentences)


def test_sgml_codes_and_entities_are_decoded():
    sentences = [s.text for s in document("D0701A", "NYT20000711.0211").sentences]
    assert any("Hate & Violence" in text for text in sentences)
    typeset = document("D0701A", "NYT19980715.0137")  # full of &QL; &UR; &LR; typesetting codes
    assert not any(re.search(r"&[A-Za-z0-9]+;", s.text) for s in typeset.sentences)
    assert "In the current Spin , O'Connor, on the road this suumer" in " ".join(s.text for s in typeset.sentences)


def test_tokens_follow_mikolovs_ptb():
    assert tokenize("Mr. Dees didn't say, ``It's $6.3 million,'' in 1999.") == [
        "mr.", "dees", "did", "n't", "say", "it", "'s", "$", "N", "million", "in", "N"]
    assert tokenize("The U.S. Attorney's office (in Mobile, Ala.) -- co-founded.") == [
        "the", "u.s.", "attorney", "'s", "office", "in", "mobile", "ala.", "co-founded"]


# -- the loader ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def duc():
    return load_dataset("duc2007")


def test_the_layout_has_45_topics_of_25_documents_and_23_referenced_topics(duc):
    topics = duc.extras["topics"]
    assert [len(topic.documents) for topic in topics] == [25] * 45
    assert [topic.id for topic in topics if topic.references] == REFERENCED
    assert all(len(topic.references) == 4 for topic in topics if topic.references)
    assert duc.checksums["topics.sgml"] == "e6b48b5de4e4864931d6fe5fcbe844f0"
    assert duc.metadata["references"] == 92
    first = topics[0]
    assert (first.id, first.cluster, first.assessor, first.title) == ("D0701A", "D0701", "A",
                                                                      "Southern Poverty Law Center")
    assert first.narrative.startswith("Describe the activities of Morris Dees")
    assert sorted(r.name for r in first.references) == [f"D0701.M.250.A.{s}" for s in "AGHI"]


def test_the_corpus_holds_every_sentence_with_a_small_held_out_slice(duc):
    sentences = [s for topic in duc.extras["topics"] for s in topic.sentences()]
    counts = {split: len(duc.splits[split]) for split in ("train", "valid", "test")}
    assert sum(counts.values()) == len(sentences) > 20000
    assert counts["test"] == len(range(0, len(sentences), 40))
    assert duc.splits["test"][0] == list(sentences[0].words)
    assert duc.splits["valid"][0] == list(sentences[20].words)
    assert duc.splits["train"][0] == list(sentences[1].words)
    words = [w for sentence in duc.splits["train"] for w in sentence]
    assert all(w == w.lower() or w == "N" for w in words) and "N" in words and "," not in words


def test_holdout_must_leave_something_to_train_on():
    with pytest.raises(DataError, match="holdout_every must be at least 2"):
        Duc2007(holdout_every=1)


# -- broken copies ---------------------------------------------------------------------------------------------------
def replace_in(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


BREAKAGES = {
    "a missing document": (lambda duc: (duc / "docs/D0701A/NYT19990227.0073").unlink(),
                           r"topic D0701A: 1 of its 25 documents are missing, first .*docs/D0701A/NYT19990227\.0073"),
    "unreadable SGML": (lambda duc: replace_in(duc / "docs/D0701A/APW19990612.0141", "<TEXT>", "<TXT>"),
                        r"docs/D0701A/APW19990612\.0141 is not a readable NIST SGML file: it has no <TEXT> element"),
    "a document under another's name": (
        lambda duc: shutil.copy(duc / "docs/D0701A/APW19991013.0008", duc / "docs/D0701A/APW19990612.0141"),
        r"APW19990612\.0141 holds document 'APW19991013\.0008'"),
    "a changed topics file": (lambda duc: replace_in(duc / "topics.sgml", "Southern Poverty", "Northern Poverty"),
                              r"topics\.sgml has md5 \w+, expected e6b48b5de4e4864931d6fe5fcbe844f0"),
    "a missing reference": (lambda duc: (duc / "refs/D0743.M.250.J.B").unlink(),
                            r"topic D0743J has 3 references .*expected 4\. A reference file is missing"),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_a_broken_copy_is_refused_naming_the_file(breakage, tmp_path):
    shutil.copytree(DUC, tmp_path / "duc2007")
    damage, message = BREAKAGES[breakage]
    damage(tmp_path / "duc2007")
    with pytest.raises(DataError, match=message):
        Duc2007(data_dir=str(tmp_path)).topics()


def test_a_missing_topics_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQVAE_OFFLINE", "1")
    with pytest.raises(DataError, match=r"missing topics\.sgml \(md5 e6b48b5de4e4864931d6fe5fcbe844f0\) in "
                                        r".*duc2007.*duc\.nist\.gov"):
        load_dataset("duc2007", data_dir=str(tmp_path))


# -- the reader on other NIST copies ---------------------------------------------------------------------------------
def mini_layout(root: Path, topics: dict[str, str]) -> Path:
    """A NIST layout holding some DUC 2007 topics, renamed (``topics`` maps new id -> DUC 2007 id)."""
    source = (DUC / "topics.sgml").read_text()
    blocks = {block.split("<num>")[1].split("</num>")[0].strip(): "<topic>" + block
              for block in source.split("<topic>")[1:]}
    text = ""
    for new, old in topics.items():
        text += blocks[old].replace(old, new)
        shutil.copytree(DUC / "docs" / old, root / "docs" / new)
    (root / "topics.sgml").write_text(text)
    (root / "refs").mkdir()
    return root


def test_the_duc_2006_naming_reads_the_same(tmp_path):
    root = mini_layout(tmp_path, {"D0601A": "D0701A", "D0602B": "D0706B"})
    for old, new in (("D0701.M.250.A.", "D0601.M.250.A."), ("D0706.M.250.B.", "D0602.M.250.B.")):
        for reference in sorted((DUC / "refs").glob(old + "*")):
            shutil.copy(reference, root / "refs" / reference.name.replace(old, new))
    topics = read_nist_layout(root)
    assert [(t.id, t.cluster, len(t.documents), len(t.references)) for t in topics] == [
        ("D0601A", "D0601", 25, 4), ("D0602B", "D0602", 25, 4)]


def test_a_reference_that_no_topic_has_is_named(tmp_path):
    root = mini_layout(tmp_path, {"D0701A": "D0701A"})
    (root / "refs" / "D0799.M.250.A.A").write_text("A summary of nothing.\n")
    with pytest.raises(DataError, match=r"D0799\.M\.250\.A\.A is a reference for topic D0799, which topics\.sgml "
                                        r"does not have"):
        read_nist_layout(root)


def test_a_stray_file_among_the_references_is_named(tmp_path):
    root = mini_layout(tmp_path, {"D0701A": "D0701A"})
    (root / "refs" / "notes.txt").write_text("to do\n")
    with pytest.raises(DataError, match=r"notes\.txt is not named like a NIST reference summary"):
        read_nist_layout(root)
