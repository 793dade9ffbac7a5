"""Checkpoints: written atomically, loaded with weights-only unpickling, checked before use.

A checkpoint holds everything needed to continue a run exactly where it stopped (model, optimizer, learning-rate
scheduler, step and epoch, sampler position, RNG states) and everything needed to use the model without the run
(vocabulary, gin config, dataset identity). Only tensors and plain containers go in, so ``weights_only`` loading
works and a checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqvae_zoo.errors import UserError

FORMAT = "seqvae_zoo.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(UserError):
    """A checkpoint file is missing, truncated, corrupt, or not a seqvae_zoo checkpoint."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file beside it, fsync, rename, fsync the folder.

    A crash at any moment leaves either the old checkpoint or the new one, never a torn file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    with open(temporary, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw state of a checkpoint, verified to be ours; every failure is one :class:`CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist: give a checkpoint file or a run folder "
                              "written by `seqvae train`")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: it is truncated, corrupt or not a "
                              f"seqvae_zoo checkpoint ({first_line}). Resume from another checkpoint or "
                              "retrain.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is a PyTorch file but not a seqvae_zoo checkpoint "
                              "(it has no seqvae_zoo format marker)")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} has format version {state['format_version']}, newer "
                              f"than this seqvae_zoo reads ({FORMAT_VERSION}): upgrade seqvae_zoo")
    return state


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any], model: torch.nn.Module,
                         saved_model: dict[str, torch.Tensor]) -> None:
    """``optimizer.load_state_dict(saved)`` for ``model``, which has loaded ``saved_model``; then every per-parameter
    state tensor is checked against its parameter's shape: torch's Adam steps with moments of another shape without
    a word.

    A checkpoint written before the decoders held the output weight as its transpose
    (:class:`seqvae_zoo.decoders.base.OutputLayer`) names that weight ``weight`` in ``saved_model``, and has its
    moments in the (out, in) layout: they are transposed, as the weight itself is when the model loads."""
    from seqvae_zoo.decoders.base import OutputLayer

    optimizer.load_state_dict(saved)
    older_layout = {id(module.weight_t) for name, module in model.named_modules()
                    if isinstance(module, OutputLayer) and f"{name}.weight" in saved_model}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            for name, value in state.items():
                if not torch.is_tensor(value) or value.dim() == 0:
                    continue
                if id(parameter) in older_layout:
                    value = state[name] = value.t().contiguous()
                if value.shape != parameter.shape:
                    raise CheckpointError(
                        f"the checkpoint's optimizer state {name!r} has shape {tuple(value.shape)} for a parameter "
                        f"of shape {tuple(parameter.shape)}: it was written for another model. Resume with the "
                        "config that wrote it, or start a new run.")


@dataclass
class LoadedRun:
    """A trained model ready to use: in eval mode, on ``map_location``."""

    model: Any
    vocab: Any
    config_text: str
    dataset: str
    metadata: dict[str, Any]
    state: dict[str, Any]
    procedure: Any  # the training step of its config (training.TrainingSettings.procedure); evaluation reads by it


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the model of a checkpoint from its own gin config and vocabulary, and load its weights.

    This replaces the global gin configuration by the checkpoint's.
    """
    from seqvae_zoo.data.vocab import vocabulary_from_dict
    from seqvae_zoo.presets import build_model, parse_config_text
    from seqvae_zoo.training.trainer import TrainingSettings

    state = read_checkpoint(path, map_location)
    parse_config_text(state["config_text"])
    vocab = vocabulary_from_dict(state["vocab"])
    model = build_model(vocab_size=vocab.size, pad_id=vocab.pad_id, bos_id=vocab.bos_id, unk_id=vocab.unk_id,
                        eos_id=vocab.eos_id)
    model.load_state_dict(state["model"])
    model.to(map_location).eval()
    return LoadedRun(model=model, vocab=vocab, config_text=state["config_text"], dataset=state.get("dataset", ""),
                     metadata=state.get("metadata", {}), state=state, procedure=TrainingSettings().procedure)
