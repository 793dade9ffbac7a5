"""One training run from presets and a dataset name to a run folder: what ``seqvae train`` and the bench call."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import gin
import torch

from seqvae_zoo.errors import UserError
from seqvae_zoo.model import SeqVAE
from seqvae_zoo.presets import build_model, config_hash, parse_config, parse_config_text
from seqvae_zoo.training.checkpoint import read_checkpoint
from seqvae_zoo.training.trainer import Trainer, TrainingSettings

CHECKPOINT = "checkpoint.pt"


@gin.configurable(module="training")
@dataclass
class VocabularySettings:
    """How the vocabulary is built from the training split: ``kind`` "word", "bpe" or "unigram"; ``max_size``
    caps it (None: every word of the training split)."""

    kind: str = "word"
    max_size: int | None = None


@dataclass
class TrainedRun:
    out_dir: Path
    model: SeqVAE
    vocab: Any
    corpus: Any
    config_text: str
    history: list[dict[str, float]]
    seconds: float


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def train_run(configs: Sequence[str], dataset: str, out_dir: str | Path, data_dir: str | None = None,
              bindings: Sequence[str] = (), epochs: int | None = None, max_steps: int | None = None, seed: int = 0,
              resume: bool = False, device: str | None = None, progress: bool = True,
              dataset_options: dict[str, Any] | None = None) -> TrainedRun:
    """Train (or resume) one run into ``out_dir``.

    A folder that already holds a run is never overwritten: pass ``resume`` to continue it. On resume the run's
    saved config is used; only ``epochs`` may change (to extend a finished run).
    """
    from seqvae_zoo.data.batching import make_loader
    from seqvae_zoo.data.loading import load_dataset
    from seqvae_zoo.data.vocab import build_vocabulary, vocabulary_from_dict

    out_dir = Path(out_dir)
    checkpoint = out_dir / CHECKPOINT
    epoch_binding = [f"training.TrainingSettings.epochs = {epochs}"] if epochs is not None else []
    if resume:
        if not checkpoint.is_file():
            raise UserError(f"nothing to resume: {str(checkpoint)!r} does not exist (train without --resume)")
        if configs or bindings:
            raise UserError("--resume continues a run with its saved config: give no preset or --gin bindings "
                            "(only --epochs may change)")
        saved = read_checkpoint(checkpoint)
        text = "\n".join([saved["config_text"], *epoch_binding])
        parse_config_text(text)
        dataset, seed = saved["dataset"], saved["seed"]
        dataset_options = saved.get("dataset_options", {})
    else:
        if checkpoint.exists():
            raise UserError(f"{str(out_dir)!r} already holds a run: pass --resume to continue it, or choose "
                            "another --out")
        if not configs:
            raise UserError("give at least one preset or gin file (see `seqvae presets`)")
        text = parse_config(configs, [*bindings, *epoch_binding])
    corpus = load_dataset(dataset, data_dir=data_dir, **(dataset_options or {}))
    vocabulary_settings = VocabularySettings()
    vocab = (vocabulary_from_dict(saved["vocab"]) if resume
             else build_vocabulary(corpus, kind=vocabulary_settings.kind, max_size=vocabulary_settings.max_size))
    torch.manual_seed(seed)
    random.seed(seed)
    model = build_model(vocab_size=vocab.size, pad_id=vocab.pad_id, bos_id=vocab.bos_id, unk_id=vocab.unk_id)
    settings = TrainingSettings()
    for split in ("train", "valid"):
        if not corpus.splits.get(split):
            raise UserError(f"dataset {dataset!r} has no {split!r} sentences to train on")
    train_loader = make_loader([vocab.encode(s) for s in corpus.splits["train"]], settings.batch_size,
                               vocab.pad_id, shuffle=True, seed=seed)
    valid_loader = make_loader([vocab.encode(s) for s in corpus.splits["valid"]], settings.eval_batch_size,
                               vocab.pad_id, shuffle=False, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra_state = {"vocab": vocab.to_dict(), "config_text": text, "config_hash": config_hash(text),
                   "dataset": dataset, "dataset_options": dataset_options or {},
                   "dataset_fingerprint": corpus.fingerprint, "seed": seed}
    trainer = Trainer(model, train_loader, valid_loader, out_dir, settings, extra_state=extra_state,
                      device=device or default_device(), progress=progress)
    if resume:
        trainer.resume(checkpoint)
    (out_dir / "config.gin").write_text(text)
    (out_dir / "operative_config.gin").write_text(gin.operative_config_str())
    started = time.perf_counter()
    history = trainer.train(max_steps=max_steps)
    return TrainedRun(out_dir, trainer.model, vocab, corpus, text, history, time.perf_counter() - started)
