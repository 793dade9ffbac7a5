"""One training run from presets and a dataset name to a run folder: what ``seqvae train`` and the bench call.

Started by torchrun, every process calls :func:`train_run` with the same arguments: each loads the data and config,
rank 0 builds the vocabulary and hands it to the others, and they train together (see
:mod:`seqvae_zoo.training.distributed`). The run folder must be one every process sees (a shared filesystem when the
processes are on several machines): all of them read a checkpoint to resume, rank 0 alone writes.
"""

from __future__ import annotations

import difflib
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import gin
import torch

from seqvae_zoo.data.files import DATA_ENV, resolve_data_dir
from seqvae_zoo.errors import UserError
from seqvae_zoo.model import SeqVAE
from seqvae_zoo.presets import build_model, config_hash, parse_config, parse_config_text
from seqvae_zoo.training.checkpoint import read_checkpoint
from seqvae_zoo.training.distributed import DistributedContext, DistributedError, rank_seed
from seqvae_zoo.training.procedures.base import Procedure
from seqvae_zoo.training.procedures.standard import Standard
from seqvae_zoo.training.stopping import StopRequest
from seqvae_zoo.training.trainer import Trainer, TrainingSettings

CHECKPOINT = "checkpoint.pt"


@gin.configurable(module="training")
@dataclass
class VocabularySettings:
    """How the vocabulary is built from the training split: ``kind`` "word", "bpe" or "unigram"; ``max_size``
    caps it (None: every word of the training split)."""

    kind: str = "word"
    max_size: int | None = None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class TrainedRun:
    out_dir: Path
    model: SeqVAE
    vocab: Any
    corpus: Any
    config_text: str
    history: list[dict[str, float]]
    seconds: float
    rank: int = 0  # this process's rank when several trained the model (rank 0 reports)
    precision: str = "fp32"  # the training steps' (training.TrainingSettings.precision)
    procedure: Procedure = field(default_factory=Standard)  # the training step's; evaluation reads the model by it


def train_run(configs: Sequence[str], dataset: str, out_dir: str | Path, data_dir: str | None = None,
              bindings: Sequence[str] = (), epochs: int | None = None, max_steps: int | None = None, seed: int = 0,
              resume: bool = False, device: str | None = None, progress: bool = True,
              dataset_options: dict[str, Any] | None = None, backend: str | None = None,
              stop: StopRequest | None = None) -> TrainedRun:
    """Train (or resume) one run into ``out_dir``.

    A folder that already holds a run is never overwritten: pass ``resume`` to continue it. On resume the run's
    saved config is used; only ``epochs`` may change (to extend a finished run). Under torchrun the processes train
    together over the process group, with ``backend`` (default: nccl on CUDA, gloo on the CPU). A ``stop`` request
    that asks ends training at a checkpoint with :class:`StopRequested`; resuming continues exactly.
    """
    distributed = DistributedContext.join(device or default_device(), backend)
    try:
        result = _train(distributed, configs, dataset, Path(out_dir), data_dir, bindings, epochs, max_steps, seed,
                        resume, progress, dataset_options, stop)
    except BaseException:
        distributed.close(finished=False)
        raise
    distributed.close()
    return result


def _train(distributed: DistributedContext, configs: Sequence[str], dataset: str, out_dir: Path,
           data_dir: str | None, bindings: Sequence[str], epochs: int | None, max_steps: int | None, seed: int,
           resume: bool, progress: bool, dataset_options: dict[str, Any] | None,
           stop: StopRequest | None) -> TrainedRun:
    from seqvae_zoo.data.batching import make_loader
    from seqvae_zoo.data.loading import load_dataset
    from seqvae_zoo.data.vocab import build_vocabulary, vocabulary_from_dict

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
        data_dir = data_dir_of_run(saved, data_dir)
    else:
        if checkpoint.exists():
            raise UserError(f"{str(out_dir)!r} already holds a run: pass --resume to continue it, or choose "
                            "another --out")
        if not configs:
            raise UserError("give at least one preset or gin file (see `seqvae presets`)")
        text = parse_config(configs, [*bindings, *epoch_binding])
    corpus = load_dataset(dataset, data_dir=data_dir, **(dataset_options or {}))
    _check_same_data(distributed, dataset, corpus.fingerprint)
    if resume and (difference := trained_on_other_files(saved, corpus)):
        raise UserError(f"{difference}. To resume it, point --data-dir (or ${DATA_ENV}) at the folder it was "
                        "trained on")
    vocabulary_settings = VocabularySettings()  # on resume too: the operative config compared below names it
    if resume:
        vocab = vocabulary_from_dict(saved["vocab"])
    else:
        vocab = (build_vocabulary(corpus, kind=vocabulary_settings.kind, max_size=vocabulary_settings.max_size)
                 if distributed.is_main else None)
        if distributed.distributed:  # built once, by rank 0: every process must encode with the same vocabulary
            vocab = vocabulary_from_dict(distributed.from_main(vocab.to_dict() if vocab is not None else None))
    torch.manual_seed(seed)
    random.seed(seed)
    model = build_model(vocab_size=vocab.size, pad_id=vocab.pad_id, bos_id=vocab.bos_id, unk_id=vocab.unk_id,
                        eos_id=vocab.eos_id)
    if distributed.rank:  # the same initial weights everywhere, then a noise stream of each process's own
        torch.manual_seed(rank_seed(seed, distributed.rank))
    settings = TrainingSettings()
    for split in ("train", "valid"):
        if not corpus.splits.get(split):
            raise UserError(f"dataset {dataset!r} has no {split!r} sentences to train on")
    shards = {"world_size": distributed.world_size, "rank": distributed.rank}
    train_loader = make_loader([vocab.encode(s) for s in corpus.splits["train"]], settings.batch_size,
                               vocab.pad_id, shuffle=True, seed=seed, **shards)
    valid_loader = make_loader([vocab.encode(s) for s in corpus.splits["valid"]], settings.eval_batch_size,
                               vocab.pad_id, shuffle=False, seed=seed, **shards)
    if distributed.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    extra_state = {"vocab": vocab.to_dict(), "config_text": text, "config_hash": config_hash(text),
                   "dataset": dataset, "dataset_options": dataset_options or {},
                   "dataset_fingerprint": corpus.fingerprint, "dataset_checksums": corpus.checksums,
                   "data_dir": str(resolve_data_dir(data_dir).resolve()), "seed": seed}
    trainer = Trainer(model, train_loader, valid_loader, out_dir, settings, extra_state=extra_state,
                      device=distributed.device, progress=progress, distributed=distributed, stop=stop)
    operative = gin.operative_config_str()
    if resume:
        trainer.resume(checkpoint)
        started_with = saved.get("operative_config") or _read_if_file(out_dir / "operative_config.gin")
        if started_with is not None and distributed.is_main:
            _warn_of_changed_defaults(out_dir, started_with, operative)
        operative = started_with or operative
    extra_state["operative_config"] = operative  # the run's start: what a later resume compares its own with
    if distributed.is_main:
        (out_dir / "config.gin").write_text(text)
        (out_dir / "operative_config.gin").write_text(operative)
    started = time.perf_counter()
    history = trainer.train(max_steps=max_steps)
    return TrainedRun(out_dir, trainer.model, vocab, corpus, text, history, time.perf_counter() - started,
                      distributed.rank, settings.precision, settings.procedure)


def _read_if_file(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def _warn_of_changed_defaults(out_dir: Path, started_with: str, now: str) -> None:
    """A resumed run reads its saved config, which names only what its presets and bindings set: a default that the
    code has changed since the run began applies to the rest of it. Say which settings differ from the run's start,
    so that a resume that cannot continue exactly does not pass for one that does. (The epochs are left out: a
    resume may extend the run.)"""
    def settings(config: str) -> list[str]:
        return [line for line in config.splitlines() if line.strip() and not line.startswith("#")
                and not line.startswith("TrainingSettings.epochs")]

    changed = [line for line in difflib.unified_diff(settings(started_with), settings(now), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    if changed:
        warnings.warn(f"resuming {str(out_dir)!r} with settings it did not start with (the code's defaults have "
                      f"changed since): {'; '.join(changed)}. The run goes on with the new ones ('+'); to keep to "
                      "its own, bind the old values ('-') in a gin file and train a new run from it", stacklevel=3)


def data_dir_of_run(state: dict[str, Any], flag: str | None) -> str | None:
    """Where a run's data is read from when it is resumed or scored: ``--data-dir`` (``flag``), else
    ``$SEQVAE_DATA``, else the folder it was trained from where that still exists (a run trained with --data-dir
    resumes without it), else the user cache (None)."""
    if flag or os.environ.get(DATA_ENV):
        return flag
    trained_from = state.get("data_dir")
    return trained_from if trained_from and Path(trained_from).is_dir() else None


def trained_on_other_files(state: dict[str, Any], corpus) -> str | None:
    """How ``corpus`` differs from the data a checkpoint's run was trained on (its ``state``), or None where it is
    the same or the checkpoint does not say: the files whose checksums differ where it saved them, else the two
    fingerprints."""
    fingerprint = state.get("dataset_fingerprint")
    if fingerprint is None or fingerprint == corpus.fingerprint:
        return None
    trained = state.get("dataset_checksums", {})
    files = [f"{name} (md5 {trained[name]} then, {md5} now)" for name, md5 in corpus.checksums.items()
             if name in trained and trained[name] != md5]
    return (f"the run was trained on other {corpus.name} data than the files read now: "
            + (", ".join(files) if files else f"fingerprint {fingerprint} then, {corpus.fingerprint} now"))


def _check_same_data(distributed: DistributedContext, dataset: str, fingerprint: str) -> None:
    """Every process must have loaded the same data (each machine reads its own copy)."""
    fingerprints = distributed.all_gather(fingerprint)
    differing = [rank for rank, theirs in enumerate(fingerprints) if theirs != fingerprints[0]]
    if differing:
        raise DistributedError(f"dataset {dataset!r} differs between the processes (ranks "
                               f"{', '.join(map(str, differing))} loaded other data than rank 0): give every "
                               "machine the same files and dataset options")
