"""DUC multi-document summarization data in NIST's layout: DUC 2005, 2006 and 2007 (the module keeps the name of
the first year it read).

The layout as NIST delivers it::

    topics.sgml                     <topic> with <num> D0701A, <title>, <narr> (the query) and, in 2007 only,
    (duc2006_topics.sgml, ...)      <docs> (its DOCNOs); DUC 2005 numbers topics d301i and adds <granularity>
    docs/<TOPIC>/<DOCNO>            one newswire document in SGML: <DOC>, <DOCNO>, <HEADLINE>, <TEXT> with <P>
                                    (where a topic lists no <docs>, its documents are the files of its folder)
    refs/<D0701>.M.250.<A>.<B>      a human reference summary: topic cluster, multi-document, 250 words, the
                                    topic's assessor, the summarizer; one sentence a line

Reading turns each document into paragraphs (the ``<P>`` elements of ``<TEXT>``, or its indented lines where a
wire service sent no ``<P>``), strips the dateline (``WASHINGTON (AP) --``), splits the paragraphs into sentences with
a newswire splitter and tokenizes every sentence the way Mikolov's PTB is (lower case, numbers as ``N``, punctuation
dropped, clitics split), so a model trained on PTB reads DUC sentences with the same conventions.

``duc2005``, ``duc2006`` and ``duc2007`` are the registered datasets (:class:`DucDataset`): as a :class:`Corpus`
each gives every sentence of its topics' documents for training (a small held-out slice for validation), and
:meth:`DucDataset.topics` gives the structure summarization needs: topics, their documents and sentences with the
original text, and the references.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from seqvae_zoo.data.base import Corpus, DataError
from seqvae_zoo.data.files import DataFile, FileDataset, file_md5
from seqvae_zoo.registry import DATASETS

# --------------------------------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------------------------------

#: Abbreviations that keep their period as part of the token (PTB writes "mr." and "u.s."), lower case, no period.
TITLES = frozenset("""
    mr mrs ms messrs mme dr prof sen sens rep reps gov govs gen gens lt col maj capt sgt cpl cmdr adm rev fr msgr
    st mt ft supt insp det atty pres hon vs v no nos vol pp ref
""".split())
MONTHS = frozenset("jan feb mar apr jun jul aug sep sept oct nov dec".split())
#: Abbreviations that may end a sentence as well: a sentence ends after them only before a typical sentence start.
AMBIGUOUS = frozenset("""
    inc corp co ltd jr sr bros etc al dept univ assn
    ala ariz ark calif colo conn del fla ga ill ind kan kans ky la md mass mich minn miss mo mont neb nev okla ore pa
    tenn tex va vt wash wis wyo
""".split())
#: Words that begin sentences far more often than they follow an abbreviation inside one.
SENTENCE_STARTERS = frozenset("""
    the a an he she it they we i you his her its their our my this that these those there here but and or so yet
    in on at for with by from after before when while if as since although though however meanwhile still also
    then now today yesterday some many most all both each no not one other such what who which where why how
    under during according among despite until unless because once
""".split())

_CLITIC_NT = re.compile(r"(\w)(n't)\b")
_CLITIC = re.compile(r"(\w)('(?:s|re|ve|ll|d|m))\b")
_WORD = re.compile(r"""
      (?:[a-z]\.){2,}                 # u.s., a.m., n.j.
    | [a-z]+\.(?![a-z0-9])            # a word with a period: kept only for abbreviations (below)
    | n't | '(?:s|re|ve|ll|d|m)\b      # clitics, split off as in PTB
    | \d[\d,.:/]*\d | \d              # numbers
    | [a-z0-9]+(?:[-'&][a-z0-9]+)*    # words, hyphenated words
    | [$%&]
""", re.VERBOSE)
_NUMBER = re.compile(r"\d[\d,.:/]*\d|\d")


def tokenize(text: str) -> list[str]:
    """PTB-style tokens of one sentence: lower case, punctuation and quotes dropped, clitics ("'s", "n't") split
    off, numbers as ``N``; abbreviations keep their period ("mr.", "u.s."), as in Mikolov's PTB files."""
    text = _CLITIC_NT.sub(r"\1 \2", text.lower())
    text = _CLITIC.sub(r"\1 \2", text)
    words = []
    for word in _WORD.findall(text):
        if _NUMBER.fullmatch(word):
            words.append("N")
        elif word.endswith(".") and word.count(".") == 1:
            stem = word[:-1]
            words.append(word if stem in TITLES or stem in MONTHS or stem in AMBIGUOUS or len(stem) == 1 else stem)
        else:
            words.append(word)
    return words


# --------------------------------------------------------------------------------------------------------------------
# Sentences
# --------------------------------------------------------------------------------------------------------------------

_CLOSERS = "'\")]}"
_LIST_MARKER = re.compile(r"\(?(?:\d+|[A-Za-z])[.)]")
_OPENERS = "`'\"([{"
#: "WASHINGTON (AP) --", "KIGALI, Rwanda (AP) _", "CAIRO, June 1 (Xinhua) --", "SAN ANTONIO _", "(OMAHA, Neb.) _"
_DATELINE = re.compile(r"""
    ^\(?[A-Z][A-Z.'&-]+(?:\s+(?:[a-z]')?[A-Z][A-Z.'&-]*)*  # the place, in capitals (COEUR d'ALENE)
    (?:,\s*[A-Z][A-Za-z.]*(?:\s+[A-Z][A-Za-z.]*)*)?      # , state or country
    (?:,\s*[A-Z][a-z]+\.?\s+\d{1,2})?                    # , month and day
    \)?\s*(?:\([A-Za-z]+\s*\)\s*)?                       # (AP), (Xinhua)
    (?:--|_|-)\s+(?=[A-Z0-9`'"])
""", re.VERBOSE)


def strip_dateline(paragraph: str) -> tuple[str, str]:
    """Split a paragraph into its dateline and the text after it ("" when there is none). Any paragraph may start
    a story: wire digests join several under one <TEXT>."""
    match = _DATELINE.match(paragraph)
    if not match:
        return "", paragraph
    return match.group(0).strip(), paragraph[match.end():]


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of one paragraph of newswire, whitespace collapsed.

    A sentence ends at ".", "?" or "!" (with any closing quotes or brackets after it) when the next word starts
    with a capital letter, a digit or an opening quote. A period does not end a sentence after a title ("Mr.",
    "Sen.", "No."), a month ("Nov. 1996"), an ellipsis or an initial ("Mark O. Barton"); after other abbreviations
    ("U.S.", "Inc.", "Calif.", "p.m.") it does only when the next word is a typical sentence start ("The", "He").
    List and answer markers ("1.", "A.") stay with what follows them.
    """
    chunks = paragraph.split()
    sentences, current = [], []
    for index, chunk in enumerate(chunks):
        current.append(chunk)
        is_marker = len(current) == 1 and _LIST_MARKER.fullmatch(chunk)
        if index + 1 < len(chunks) and not is_marker and _ends_sentence(chunk, chunks[index + 1]):
            sentences.append(" ".join(current))
            current = []
    if current:
        sentences.append(" ".join(current))
    return sentences


def _ends_sentence(chunk: str, following: str) -> bool:
    """Whether the whitespace between ``chunk`` and the ``following`` one ends a sentence."""
    bare = chunk.rstrip(_CLOSERS)
    if not bare or bare[-1] not in ".?!":
        return False
    opened = following.lstrip(_OPENERS)
    if not opened or not (opened[0].isupper() or opened[0].isdigit()):
        return False
    if bare[-1] != "." or bare != chunk:  # "?", "!", or a period inside closing quotes: the quote ends with it
        return True
    word = bare.lstrip(_OPENERS)[:-1].lower()
    if word in TITLES or word in MONTHS:
        return False
    is_abbreviation = word.endswith("..") or (len(word) == 1 and word.isalpha()) or "." in word or word in AMBIGUOUS
    if not is_abbreviation:
        return True
    return opened != following or opened.rstrip(_CLOSERS + ".,;:").lower() in SENTENCE_STARTERS


# --------------------------------------------------------------------------------------------------------------------
# The collection
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sentence:
    """One sentence of a document: its text as written (whitespace collapsed), its tokens, where it stands."""

    text: str
    words: tuple[str, ...]
    docno: str
    position: int  # 0 for the document's first sentence

    @property
    def word_count(self) -> int:
        """Words as ROUGE's length limit counts them: separated by whitespace."""
        return len(self.text.split())


@dataclass
class Document:
    """A newswire document: ``paragraphs`` as read (dateline removed), ``sentences`` in reading order."""

    docno: str
    headline: str
    dateline: str
    paragraphs: list[str]
    sentences: list[Sentence]

    @property
    def order_key(self) -> tuple[str, str]:
        """Sorts documents by publication: the date in the DOCNO (APW19990612.0141 -> 19990612, the same for every
        wire service), then the service's serial number. DOCNOs of other forms sort as they are."""
        match = _DOCNO.match(self.docno)
        return (match.group(2), match.group(3)) if match else (self.docno, "")


@dataclass(frozen=True)
class Reference:
    """A human reference summary: ``name`` is its NIST file name, ``summarizer`` the last field of it."""

    name: str
    summarizer: str
    text: str


@dataclass
class Topic:
    """A DUC topic: ``id`` like D0701A (cluster D0701, assessor A), the query (``title``, ``narrative``), its
    documents in the order topics.sgml lists them, and its references (none for topics without them)."""

    id: str
    title: str
    narrative: str
    documents: list[Document]
    references: list[Reference] = field(default_factory=list)

    @property
    def cluster(self) -> str:
        """D0701 (DUC 2005's d301i gives D301: its references are named in capitals)."""
        return self.id[:-1].upper()

    @property
    def assessor(self) -> str:
        return self.id[-1].upper()

    def sentences(self) -> list[Sentence]:
        return [sentence for document in self.documents for sentence in document.sentences]

    def query(self) -> list[list[str]]:
        """The topic's question as tokenized sentences: its title, then the sentences of its narrative."""
        texts = [self.title, *split_sentences(self.narrative)]
        sentences = [words for words in map(tokenize, texts) if words]
        if not sentences:
            raise DataError(f"topic {self.id} has an empty <title> and <narr>: there is no question to read; use the "
                            "topics file of the DUC distribution")
        return sentences


_DOCNO = re.compile(r"^([A-Z_]+?)(\d{8})\.(\d+)$")
_TOPIC_ID = re.compile(r"^[Dd]\d{3,4}[A-Za-z]$")
_REFERENCE_NAME = re.compile(r"^(D\d{3,4})\.M\.(\d+)\.([A-Z])\.([A-Za-z0-9]+)$")
_ENTITIES = {"AMP": "&", "amp": "&", "LT": "<", "lt": "<", "GT": ">", "gt": ">", "HT": "\t"}
_ENTITY = re.compile(r"&([A-Za-z0-9]+);")
#: Paragraph starts where a wire service sent no <P>: an indented line, or a line after a blank one (the Financial
#: Times of DUC 2005).
_PARAGRAPH_START = re.compile(r"\n(?=[ \t])|\n[ \t]*\n")
_LOWER, _UPPER = re.compile(r"[a-z]"), re.compile(r"[A-Z]")


def _element(text: str, tag: str, path: Path, required: bool = True) -> str | None:
    match = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL | re.IGNORECASE)
    if match is None:
        if required:
            raise DataError(f"{path} is not a readable NIST SGML file: it has no <{tag}> element. Replace it with "
                            "the original from the DUC distribution.")
        return None
    return match.group(1)


def _decode_entities(text: str) -> str:
    """SGML entities: &AMP; and friends as characters, typesetting codes (&QL;, &UR;, &Cx1f;) as spaces."""
    return _ENTITY.sub(lambda match: _ENTITIES.get(match.group(1), " "), text)


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # a few newswire archives are Latin-1
        return raw.decode("latin-1")


def _paragraphs(block: str) -> list[str]:
    """The paragraphs of a <TEXT> block (or of untagged body text): <P> elements, else indented lines."""
    block = re.sub(r"<ANNOTATION>.*?</ANNOTATION>", " ", block, flags=re.DOTALL | re.IGNORECASE)
    tagged = re.findall(r"<P>(.*?)</P>", block, re.DOTALL | re.IGNORECASE)
    pieces = tagged if tagged else _PARAGRAPH_START.split(block.replace("&HT;", "\t"))
    return [" ".join(_decode_entities(piece).split()) for piece in pieces]


def _is_prose(paragraph: str) -> bool:
    """Running text rather than a byline, a code line or a heading in capitals (which newswire has plenty of)."""
    lower = len(_LOWER.findall(paragraph))
    return len(paragraph.split()) >= 3 and lower >= len(_UPPER.findall(paragraph))


def read_document(path: Path, docno: str) -> Document:
    """One SGML document, split into sentences. The story is the <TEXT> element; a few syndicated features carry
    it in untagged <BODY> text before an almost empty <TEXT>, which is then read too."""
    sgml = _read_text(path)
    found = (_element(sgml, "DOCNO", path) or "").strip()
    if found != docno:
        raise DataError(f"{path} holds document {found!r}, but topics.sgml lists {docno!r} under this name")
    text = _element(sgml, "TEXT", path)
    headline = _element(sgml, "HEADLINE", path, required=False) or ""
    headline = " ".join(_decode_entities(re.sub(r"<[^>]+>", " ", headline)).split())  # LA Times: <P> inside
    paragraphs = _paragraphs(text)
    body = _element(sgml, "BODY", path, required=False)
    if body is not None:
        prelude = re.sub(r"<(HEADLINE|SLUG|CATEGORY)>.*?</\1>", " ", body.split("<TEXT>")[0], flags=re.DOTALL)
        if len(prelude.split()) > len(text.split()):
            paragraphs = _paragraphs(prelude) + paragraphs
    paragraphs = [paragraph for paragraph in paragraphs if _is_prose(paragraph)]
    dateline = ""
    for index, paragraph in enumerate(paragraphs):
        found, paragraphs[index] = strip_dateline(paragraph)
        dateline = dateline or found
    sentences = []
    for paragraph in paragraphs:
        for text_of_sentence in split_sentences(paragraph):
            words = tokenize(text_of_sentence)
            if words:
                sentences.append(Sentence(text_of_sentence, tuple(words), docno, len(sentences)))
    if not sentences:
        raise DataError(f"{path} has no sentences in its <TEXT>: the document is empty or damaged")
    return Document(docno, headline, dateline, paragraphs, sentences)


def _topic_entries(path: Path) -> list[tuple[str, str, str, list[str] | None]]:
    """(id, title, narrative, DOCNOs) of every <topic> in a topics file; DOCNOs None where it lists no <docs>
    (DUC 2005 and 2006)."""
    sgml = _read_text(path)
    blocks = re.findall(r"<topic>(.*?)</topic>", sgml, re.DOTALL | re.IGNORECASE)
    if not blocks:
        raise DataError(f"{path} has no <topic> elements: it is not a DUC topics file")
    entries = []
    for block in blocks:
        topic_id = (_element(block, "num", path) or "").strip()
        if not _TOPIC_ID.match(topic_id):
            raise DataError(f"{path}: topic number {topic_id!r} is not of the form D0701A (or DUC 2005's d301i)")
        title = " ".join((_element(block, "title", path) or "").split())
        narrative = " ".join((_element(block, "narr", path) or "").split())
        docs = _element(block, "docs", path, required=False)
        entries.append((topic_id, title, narrative, None if docs is None else docs.split()))
    return entries


def read_references(directory: Path, topics: dict[str, Topic], topics_file: str = "topics.sgml") -> None:
    """Attach every reference in ``directory`` (NIST names) to its topic; a name no topic has is an error."""
    by_cluster = {topic.cluster: topic for topic in topics.values()}
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):
            continue
        match = _REFERENCE_NAME.match(path.name)
        if match is None:
            raise DataError(f"{path} is not named like a NIST reference summary (<cluster>.M.<words>.<assessor>."
                            f"<summarizer>, e.g. D0701.M.250.A.B): rename it to NIST's name or move it out of "
                            f"{directory}")
        topic = by_cluster.get(match.group(1))
        if topic is None:
            raise DataError(f"{path} is a reference for topic {match.group(1)}, which {topics_file} does not have")
        if match.group(3) != topic.assessor:
            raise DataError(f"{path} names assessor {match.group(3)}, but topic {topic.id}'s assessor is "
                            f"{topic.assessor}: the file belongs to another year's topic or was renamed; use the "
                            f"original from the DUC distribution")
        text = _read_text(path).strip()
        if not text:
            raise DataError(f"{path} is empty: replace it with the original reference summary")
        topic.references.append(Reference(path.name, match.group(4), text))


def read_nist_layout(root: Path, topics_file: str = "topics.sgml") -> list[Topic]:
    """Every topic of a DUC folder in NIST's layout, with documents and references, in the topics file's order.

    A topic whose entry lists its <docs> (DUC 2007) has those documents, in that order; one without (DUC 2005,
    2006) has the files of its folder ``docs/<topic id>/``, in the order of their names."""
    topics = {}
    for topic_id, title, narrative, docnos in _topic_entries(root / topics_file):
        folder = root / "docs" / topic_id
        if docnos is None:
            if not folder.is_dir():
                raise DataError(f"topic {topic_id} has no folder {folder}: copy the complete docs/ folder of the "
                                "DUC distribution")
            docnos = sorted(path.name for path in folder.iterdir() if not path.name.startswith("."))
        missing = [docno for docno in docnos if not (folder / docno).is_file()]
        if missing:
            raise DataError(f"topic {topic_id}: {len(missing)} of its {len(docnos)} documents are missing, first "
                            f"{folder / missing[0]}. Copy the complete docs/ folder of the DUC distribution.")
        documents = [read_document(folder / docno, docno) for docno in docnos]
        topics[topic_id] = Topic(topic_id, title, narrative, documents)
    references = root / "refs"
    if references.is_dir():
        read_references(references, topics, topics_file)
    return list(topics.values())


def layout_checksums(root: Path, topics: list[Topic], topics_file: str = "topics.sgml") -> dict[str, str]:
    """MD5 of the topics file, and one MD5 over the (name, MD5) of every document and every reference."""
    documents = hashlib.md5()
    for topic in topics:
        for document in topic.documents:
            documents.update(f"{topic.id}/{document.docno} {file_md5(root / 'docs' / topic.id / document.docno)}\n"
                             .encode())
    references = hashlib.md5()
    for topic in topics:
        for reference in topic.references:
            references.update(f"{reference.name} {file_md5(root / 'refs' / reference.name)}\n".encode())
    return {topics_file: file_md5(root / topics_file), "docs/": documents.hexdigest(),
            "refs/": references.hexdigest()}


_DUC_AGREEMENT = ("NIST's Document Understanding Conference, past data (https://duc.nist.gov/data.html): sign NIST's "
                  "DUC agreement (and, for the documents, the LDC's licence of the {corpus}); NIST then sends the "
                  "topics, the documents by topic and the human reference summaries (its ROUGE models)")


class DucDataset(FileDataset):
    """A DUC main task in NIST's layout (``<folder>/``): the topics file, ``docs/<topic>/``, ``refs/``.

    As a corpus: every sentence of every document, PTB-style tokens; sentence ``i`` (in topic, document and reading
    order) goes to the test split when ``i % holdout_every == 0``, to the validation split when it equals
    ``holdout_every // 2``, else to training. The held-out sentences are still summarized: holding them out only
    keeps the trainer's validation (and its best checkpoint) off sentences it trains on.

    Subclasses say the year's facts: the topics file (name and MD5), how many topics, the least and most documents
    a topic has, and how many references a referenced topic has.
    """

    topic_count: int
    documents_per_topic: tuple[int, int]
    references_per_topic: tuple[int, int]

    def __init__(self, data_dir: str | None = None, holdout_every: int = 40, verify: bool | None = None):
        if holdout_every < 2:
            raise DataError(f"{self.registry_name}: holdout_every must be at least 2 (one sentence in that many is "
                            f"held out); got {holdout_every}")
        super().__init__(data_dir, verify, holdout_every=holdout_every)
        self.holdout_every = holdout_every

    @property
    def topics_file(self) -> str:
        return self.files[0].name

    def topics(self) -> list[Topic]:
        """The topics with their documents, sentences and references, after checking the topics file and the
        layout."""
        self.fetch()
        topics = read_nist_layout(self.directory(), self.topics_file)
        self._check_layout(topics)
        return topics

    def _check_layout(self, topics: list[Topic]) -> None:
        where = self.directory()
        if len(topics) != self.topic_count:
            self.departs(f"{where / self.topics_file} has {len(topics)} topics, expected {self.topic_count}",
                         f"Use the topics file of the DUC distribution ({self.source})")
        fewest, most = self.documents_per_topic
        for topic in topics:
            if not fewest <= len(topic.documents) <= most:
                expected = f"{fewest}" if fewest == most else f"{fewest} to {most}"
                self.departs(f"topic {topic.id} has {len(topic.documents)} documents ({where / 'docs' / topic.id}), "
                             f"expected {expected} in {self.registry_name}",
                             "Copy the topic's complete folder from the DUC distribution (and only its documents)")
            fewest_references, most_references = self.references_per_topic
            if topic.references and not fewest_references <= len(topic.references) <= most_references:
                names = ", ".join(reference.name for reference in topic.references)
                self.departs(f"topic {topic.id} has {len(topic.references)} references in {where / 'refs'} "
                             f"({names}), expected {fewest_references}"
                             + (f" to {most_references}" if most_references != fewest_references else ""),
                             "A reference file is missing or belongs elsewhere: copy the topic's references from "
                             "the DUC distribution")

    def load(self) -> Corpus:
        topics = self.topics()
        splits: dict[str, list[list[str]]] = {"train": [], "valid": [], "test": []}
        for index, sentence in enumerate(s for topic in topics for s in topic.sentences()):
            slot = index % self.holdout_every
            split = "test" if slot == 0 else "valid" if slot == self.holdout_every // 2 else "train"
            splits[split].append(list(sentence.words))
        referenced = [topic for topic in topics if topic.references]
        metadata = {"topics": len(topics), "documents": sum(len(topic.documents) for topic in topics),
                    "referenced_topics": len(referenced),
                    "references": sum(len(topic.references) for topic in referenced)}
        return self.make_corpus(splits, layout_checksums(self.directory(), topics, self.topics_file), metadata,
                                extras={"topics": topics})


@DATASETS.register("duc2005")
class Duc2005(DucDataset):
    """DUC 2005 main task (``duc2005/``): 50 topics (d301i ...) of 25 to 50 Financial Times and LA Times documents,
    no <docs> lists, 4 or more references a topic. NIST publishes no checksum of its topics file here."""

    folder = "duc2005"
    source = _DUC_AGREEMENT.format(corpus="TREC disks (Financial Times, LA Times)")
    files = (DataFile("duc2005_topics.sgml", None),)
    topic_count = 50
    documents_per_topic = (25, 50)
    references_per_topic = (4, 10)


@DATASETS.register("duc2006")
class Duc2006(DucDataset):
    """DUC 2006 main task (``duc2006/``): 50 topics (D0601A ...) of 25 AQUAINT documents each, no <docs> lists,
    4 references a topic."""

    folder = "duc2006"
    source = _DUC_AGREEMENT.format(corpus="AQUAINT corpus")
    files = (DataFile("duc2006_topics.sgml", "5960fedc573f4d18655ff6572026b653"),)
    topic_count = 50
    documents_per_topic = (25, 25)
    references_per_topic = (4, 4)


@DATASETS.register("duc2007")
class Duc2007(DucDataset):
    """DUC 2007 main task (``duc2007/``): 45 topics x 25 AQUAINT documents listed in <docs>, 4 references a
    referenced topic (the shared copy has them for 23 topics)."""

    folder = "duc2007"
    source = _DUC_AGREEMENT.format(corpus="AQUAINT corpus")
    files = (DataFile("topics.sgml", "e6b48b5de4e4864931d6fe5fcbe844f0"),)
    topic_count = 45
    documents_per_topic = (25, 25)
    references_per_topic = (4, 4)
