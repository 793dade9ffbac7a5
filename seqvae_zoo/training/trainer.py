"""The training loop: Adam with the paper's step decay, gradient clipping, KL schedules, exact resume.

A run lives in one folder: ``checkpoint.pt`` (latest, atomic), ``best.pt`` (best validation -ELBO), ``config.gin``
(the operative gin config), ``metrics.csv`` (one row per epoch), ``tensorboard/`` (event files) and
``learning_curves.png``. Resuming reads ``checkpoint.pt`` and continues with the very next batch, with the RNG
states, optimizer, scheduler and schedule step of the moment it was written, so a resumed run ends with the same
parameters as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gin
import torch
from torch import nn

from seqvae_zoo.errors import UserError
from seqvae_zoo.model import SeqVAE
from seqvae_zoo.schedules.annealing import Linear
from seqvae_zoo.schedules.base import WeightSchedule
from seqvae_zoo.training.checkpoint import read_checkpoint, save_checkpoint
from seqvae_zoo.training.logs import RunLog


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@gin.configurable(module="training")
@dataclass
class TrainingSettings:
    """Every number of the optimization, gin-configurable (``training.TrainingSettings.lr = 5e-4``).

    Defaults are the paper's: Adam, lr 1e-3 halved every 2 epochs after epoch 10, 20 epochs, batch 32, gradient
    norm clipped at 5. ``checkpoint_every`` is in steps (0: only at the end of each epoch).
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    lr_decay_after: int = 10
    lr_decay_every: int = 2
    lr_decay_factor: float = 0.5
    clip_norm: float = 5.0
    checkpoint_every: int = 500
    eval_batch_size: int = 64
    kl_schedule: WeightSchedule = field(default_factory=Linear)

    def lr_factor(self, epoch: int) -> float:
        """Multiplier of ``lr`` in (0-based) ``epoch``: 1 for the first ``lr_decay_after`` epochs, then decayed by
        ``lr_decay_factor`` every ``lr_decay_every`` epochs."""
        if epoch < self.lr_decay_after:
            return 1.0
        return self.lr_decay_factor ** ((epoch - self.lr_decay_after) // self.lr_decay_every + 1)


@dataclass
class EpochTotals:
    """Sums over sentences, for per-sentence and per-token averages."""

    sentences: int = 0
    tokens: int = 0
    words: int = 0
    nll: float = 0.0
    kl: dict[str, float] = field(default_factory=dict)
    aux: dict[str, float] = field(default_factory=dict)

    def add(self, terms) -> None:
        self.sentences += int(terms.nll.numel())
        self.tokens += int(terms.tokens.sum())
        self.words += int(terms.words.sum())
        self.nll += float(terms.nll.sum())
        for name, value in terms.kl.items():
            self.kl[name] = self.kl.get(name, 0.0) + float(value.sum())
        for name, value in terms.aux.items():
            self.aux[name] = self.aux.get(name, 0.0) + float(value.sum())

    def summary(self, prefix: str) -> dict[str, float]:
        """Per-sentence means, and per-token perplexity of the -ELBO."""
        n = max(self.sentences, 1)
        row = {f"{prefix}nll": self.nll / n}
        row.update({f"{prefix}kl_{name}": value / n for name, value in self.kl.items()})
        row.update({f"{prefix}aux_{name}": value / n for name, value in self.aux.items()})
        neg_elbo = self.nll + sum(self.kl.values())
        row[f"{prefix}neg_elbo"] = neg_elbo / n
        row[f"{prefix}ppl"] = math.exp(min(neg_elbo / max(self.tokens, 1), 700.0))
        return row


class Trainer:
    """Trains ``model`` on ``train_loader`` (whose batch sampler has ``set_epoch`` and a resumable state)."""

    def __init__(self, model: SeqVAE, train_loader, valid_loader, out_dir: str | Path,
                 settings: TrainingSettings | None = None, extra_state: dict[str, Any] | None = None,
                 device: torch.device | str = "cpu", progress: bool = True,
                 on_epoch_end: Callable[[int, dict[str, float]], None] | None = None):
        self.model = model.to(device)
        self.device = torch.device(device)
        self.settings = settings or TrainingSettings()
        self.train_loader, self.valid_loader = train_loader, valid_loader
        self.sampler = train_loader.batch_sampler
        self.out_dir = Path(out_dir)
        self.extra_state = extra_state or {}
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.settings.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.settings.lr_factor)
        self.step = 0
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.best_valid = math.inf
        self.log = RunLog(self.out_dir, enabled=progress)
        self.on_epoch_end = on_epoch_end

    # -- state ----------------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "sampler": self.sampler.state_dict(),
            "history": self.history,
            "best_valid": self.best_valid,
            "rng": {"torch": torch.get_rng_state()},
        }
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        state.update(self.extra_state)
        return state

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint of this run (same config and data)."""
        state = read_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.sampler.load_state_dict(state["sampler"])
        self.history, self.best_valid = state["history"], state["best_valid"]
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])

    def save(self, name: str = "checkpoint.pt") -> None:
        save_checkpoint(self.out_dir / name, self.state())

    # -- loop -----------------------------------------------------------------------------------------------------
    def train(self, max_steps: int | None = None) -> list[dict[str, float]]:
        """Train until the configured epochs are done or ``max_steps`` steps in all; return the epoch history."""
        settings = self.settings
        steps_per_epoch = len(self.sampler)
        try:
            while self.epoch < settings.epochs:
                if max_steps is not None and self.step >= max_steps:
                    break
                self.sampler.set_epoch(self.epoch)
                totals = EpochTotals()
                started = time.perf_counter()
                bar = self.log.progress(self.epoch, settings.epochs, steps_per_epoch, self.sampler.state_dict())
                for tokens, lengths in self.train_loader:
                    weights = settings.kl_schedule.weights(self.step, self.step / steps_per_epoch)
                    terms = self._train_step(tokens.to(self.device), lengths.to(self.device), weights)
                    totals.add(terms)
                    self.step += 1
                    elapsed = time.perf_counter() - started
                    self.log.step(bar, self.step, terms, weights, totals.tokens / max(elapsed, 1e-9),
                                  self.optimizer.param_groups[0]["lr"])
                    if settings.checkpoint_every and self.step % settings.checkpoint_every == 0:
                        self.save()
                    if max_steps is not None and self.step >= max_steps:
                        break
                bar.close()
                sampler_state = self.sampler.state_dict()
                if sampler_state["epoch"] == self.epoch and sampler_state["position"] < steps_per_epoch:
                    self.save()  # stopped by max_steps inside the epoch: --resume continues with the next batch
                    break
                self._end_epoch(totals, time.perf_counter() - started, weights)
        finally:
            self.log.close()
        return self.history

    def _train_step(self, tokens: torch.Tensor, lengths: torch.Tensor, weights: dict[str, float]):
        self.model.train()
        terms = self.model(tokens, lengths)
        loss = self.model.objective(terms, weights)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the training loss became {float(loss)} at step {self.step + 1} (epoch {self.epoch + 1}); the "
                f"last good checkpoint {str(self.out_dir / 'checkpoint.pt')!r} is kept. Lower the learning rate "
                "(--gin 'training.TrainingSettings.lr = 5e-4') or check the data, then --resume")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.clip_norm)
        self.optimizer.step()
        return _detached(terms)

    def _end_epoch(self, totals: EpochTotals, seconds: float, weights: dict[str, float]) -> None:
        row = {"epoch": self.epoch + 1, "step": self.step, "lr": self.optimizer.param_groups[0]["lr"],
               "seconds": seconds, "tokens_per_s": totals.tokens / max(seconds, 1e-9)}
        row.update(totals.summary("train_"))
        row.update({f"weight_{name}": value for name, value in weights.items()})
        row.update(self.validate().summary("valid_"))
        self.epoch += 1
        self.scheduler.step()
        self.history.append(row)
        self.log.epoch(row, self.history)
        if row["valid_neg_elbo"] < self.best_valid:
            self.best_valid = row["valid_neg_elbo"]
            self.save("best.pt")
        self.save()
        if self.on_epoch_end is not None:
            self.on_epoch_end(self.epoch, row)

    @torch.no_grad()
    def validate(self) -> EpochTotals:
        """One-sample -ELBO terms on the validation split (the RNG state is restored so training is unaffected)."""
        self.model.eval()
        totals = EpochTotals()
        rng = torch.get_rng_state()
        for tokens, lengths in self.valid_loader:
            totals.add(self.model(tokens.to(self.device), lengths.to(self.device)))
        torch.set_rng_state(rng)
        return totals


def _detached(terms):
    terms.nll = terms.nll.detach()
    terms.kl = {k: v.detach() for k, v in terms.kl.items()}
    terms.aux = {k: v.detach() for k, v in terms.aux.items()}
    return terms
