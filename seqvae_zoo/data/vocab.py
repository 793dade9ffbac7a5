"""Vocabularies: word lists and sentencepiece models behind one encode/decode interface.

Every vocabulary uses the same special ids (pad 0, bos 1, eos 2, unk 3), so models and batching never ask which kind
they were given. ``to_dict`` is JSON-safe and is saved inside checkpoints; :func:`vocabulary_from_dict` restores
either kind.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from typing import Iterable, Sequence

import sentencepiece as spm

from seqvae_zoo.data.base import Corpus, DataError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)  # in id order
VOCABULARY_KINDS = ("word", "bpe", "unigram")
#: Pieces a sentencepiece model gets when no size is asked for (a soft limit for small corpora).
DEFAULT_PIECES = 8000


class VocabularyBase:
    """What every vocabulary offers: the special ids, ``size``, ``encode``, ``decode`` and ``to_dict``."""

    kind: str
    pad_id, bos_id, eos_id, unk_id = range(len(SPECIALS))
    size: int

    def __len__(self) -> int:
        return self.size

    def encode(self, words: Sequence[str]) -> list[int]:
        """Ids of a tokenized sentence followed by end-of-sentence; unknown words map to unk."""
        return self._ids(words) + [self.eos_id]

    def encode_all(self, sentences: Iterable[Sequence[str]]) -> list[list[int]]:
        return [self.encode(words) for words in sentences]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words of an id sequence (a list or a 1-D tensor): stops at end-of-sentence, drops pad and bos."""
        content = []
        for raw in ids.tolist() if hasattr(ids, "tolist") else ids:
            index = int(raw)
            if index == self.eos_id:
                break
            if index not in (self.pad_id, self.bos_id):
                content.append(index)
        return self._words(content)

    def to_dict(self) -> dict:
        raise NotImplementedError

    def _ids(self, words: Sequence[str]) -> list[int]:
        raise NotImplementedError

    def _words(self, ids: list[int]) -> list[str]:
        raise NotImplementedError


class Vocabulary(VocabularyBase):
    """A word vocabulary: the specials, then words by falling frequency (ties alphabetical).

    The unk token is ``<unk>``, the one PTB's files already use, so PTB's own unknowns merge with it (PTB's 9,999
    types give 10,002 entries).
    """

    kind = "word"

    def __init__(self, tokens: Sequence[str]):
        if tuple(tokens[:len(SPECIALS)]) != SPECIALS:
            raise DataError(f"a word vocabulary must start with {', '.join(SPECIALS)}; got {list(tokens[:4])}")
        if len(set(tokens)) != len(tokens):
            repeated = sorted(word for word, count in Counter(tokens).items() if count > 1)
            raise DataError(f"a word vocabulary lists {', '.join(repeated[:5])} more than once")
        self.tokens = list(tokens)
        self.size = len(self.tokens)
        self._index = {token: index for index, token in enumerate(self.tokens)}

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], max_size: int | None = None,
              min_count: int = 1) -> "Vocabulary":
        """The words of ``sentences`` seen at least ``min_count`` times, the most frequent first, capped so that the
        vocabulary (specials included) has at most ``max_size`` entries."""
        if max_size is not None and max_size <= len(SPECIALS):
            raise DataError(f"max_size must exceed the {len(SPECIALS)} special tokens; got {max_size}")
        counts = Counter(word for words in sentences for word in words)
        for special in SPECIALS:
            counts.pop(special, None)
        words = sorted((word for word, count in counts.items() if count >= min_count),
                       key=lambda word: (-counts[word], word))
        if max_size is not None:
            words = words[:max_size - len(SPECIALS)]
        return cls(list(SPECIALS) + words)

    def _ids(self, words: Sequence[str]) -> list[int]:
        return [self._index.get(word, self.unk_id) for word in words]

    def _words(self, ids: list[int]) -> list[str]:
        return [self.tokens[index] for index in ids]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, state: dict) -> "Vocabulary":
        _check_kind(state, (cls.kind,))
        tokens = state.get("tokens")
        if not (isinstance(tokens, list) and all(isinstance(token, str) for token in tokens)):
            raise DataError("the saved word vocabulary has no list of token strings under 'tokens'")
        return cls(tokens)


class SentencePieceVocabulary(VocabularyBase):
    """A sentencepiece model (BPE or unigram) with the package's special ids.

    ``encode`` takes a tokenized sentence, joins it with spaces and splits it into pieces; ``decode`` joins the
    pieces back and splits on spaces, so a sentence of known characters round-trips exactly (no normalization).
    """

    def __init__(self, model: bytes, kind: str):
        _check_kind({"kind": kind}, ("bpe", "unigram"))
        self.kind = kind
        self.model = model
        self._processor = spm.SentencePieceProcessor(model_proto=model)
        self.size = self._processor.get_piece_size()
        ids = (self._processor.pad_id(), self._processor.bos_id(), self._processor.eos_id(),
               self._processor.unk_id())
        if ids != (self.pad_id, self.bos_id, self.eos_id, self.unk_id):
            raise DataError(f"the sentencepiece model has special ids pad/bos/eos/unk = {ids}; "
                            f"the package needs {(self.pad_id, self.bos_id, self.eos_id, self.unk_id)}")

    @classmethod
    def train(cls, sentences: Iterable[Sequence[str]], kind: str = "unigram",
              size: int = DEFAULT_PIECES) -> "SentencePieceVocabulary":
        """Train on tokenized sentences. ``size`` counts every piece, specials included; it is a soft limit (a small
        corpus gets fewer pieces) but must leave room for every character of the corpus."""
        _check_kind({"kind": kind}, ("bpe", "unigram"))
        lines = [" ".join(words) for words in sentences if words]
        if not lines:
            raise DataError("cannot train a sentencepiece model on an empty corpus")
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines), model_writer=model, model_type=kind, vocab_size=size,
                pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece=PAD, bos_piece=BOS, eos_piece=EOS, unk_piece=UNK,
                unk_surface=f" {UNK} ", normalization_rule_name="identity", character_coverage=1.0,
                hard_vocab_limit=False, minloglevel=2, num_threads=1)
        except RuntimeError as error:  # sentencepiece reports bad settings (a size too large) this way
            raise DataError(f"sentencepiece ({kind}, {size} pieces) could not be trained on this corpus: {error}") \
                from None
        return cls(model.getvalue(), kind)

    def _ids(self, words: Sequence[str]) -> list[int]:
        return self._processor.encode(" ".join(words)) if words else []

    def _words(self, ids: list[int]) -> list[str]:
        return self._processor.decode(ids).split()

    def to_dict(self) -> dict:
        return {"kind": self.kind, "model": base64.b64encode(self.model).decode("ascii")}

    @classmethod
    def from_dict(cls, state: dict) -> "SentencePieceVocabulary":
        _check_kind(state, ("bpe", "unigram"))
        try:
            model = base64.b64decode(state["model"], validate=True)
        except (KeyError, TypeError, ValueError):
            raise DataError("the saved sentencepiece vocabulary has no readable model (base64 under 'model')") \
                from None
        return cls(model, state["kind"])


def build_vocabulary(corpus: Corpus, kind: str = "word", max_size: int | None = None) -> VocabularyBase:
    """The vocabulary of a corpus's train split: words (capped at ``max_size`` entries) or a sentencepiece model
    (``bpe`` or ``unigram``, ``max_size`` pieces, 8,000 by default)."""
    _check_kind({"kind": kind}, VOCABULARY_KINDS)
    train = corpus.splits["train"]
    if kind == "word":
        return Vocabulary.build(train, max_size=max_size)
    return SentencePieceVocabulary.train(train, kind=kind, size=max_size or DEFAULT_PIECES)


def vocabulary_from_dict(state: dict) -> VocabularyBase:
    """Restore a vocabulary saved with ``to_dict`` (of either kind)."""
    kind = _check_kind(state, VOCABULARY_KINDS)
    return Vocabulary.from_dict(state) if kind == "word" else SentencePieceVocabulary.from_dict(state)


def _check_kind(state: object, allowed: tuple[str, ...]) -> str:
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind not in allowed:
        raise DataError(f"unknown vocabulary kind {kind!r}; expected one of: {', '.join(allowed)}")
    return kind
