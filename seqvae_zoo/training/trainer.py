"""The training loop: Adam with the paper's step decay, gradient clipping, KL schedules, exact resume.

A run lives in one folder: ``checkpoint.pt`` (latest, atomic), ``best.pt`` (best validation -ELBO), ``config.gin``
(the operative gin config), ``metrics.csv`` (one row per epoch), ``progress.json`` (where the run stands, written
with every checkpoint, for ``seqvae bench --status``), ``tensorboard/`` (event files) and ``learning_curves.png``.
Resuming reads ``checkpoint.pt`` and continues with the very next batch, with the RNG states, optimizer, scheduler,
schedule step, training procedure's state and the epoch's metrics so far of the moment it was written, so a resumed
run ends with the same parameters and epoch rows as an uninterrupted one.

Several processes (started by torchrun, see :mod:`seqvae_zoo.training.distributed`) train one model: each scores its
share of every batch, DistributedDataParallel averages the gradients, the epoch's metrics are summed over all
processes, and only rank 0 logs and writes the run folder. A checkpoint holds the position in the sequence of
batches, not in any process's shares, so it resumes on any number of processes; on the same number the resumed run
is exact, each process continuing its own random stream.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import gin
import torch
from torch import nn
from tqdm.auto import tqdm

from seqvae_zoo.atomic import write_json_atomically
from seqvae_zoo.data.batching import DistributedBucketBatchSampler, share_of
from seqvae_zoo.errors import UserError, check_number
from seqvae_zoo.evaluation.latent import mutual_information
from seqvae_zoo.kernels.precision import PrecisionError, autocast, check_precision
from seqvae_zoo.latents.base import concatenate
from seqvae_zoo.model import LossTerms, SeqVAE
from seqvae_zoo.schedules.annealing import Linear
from seqvae_zoo.schedules.base import WeightSchedule
from seqvae_zoo.training.checkpoint import load_optimizer_state, read_checkpoint, save_checkpoint
from seqvae_zoo.training.distributed import DistributedContext, rank_seed
from seqvae_zoo.training.logs import LOG_EVERY, RunLog
from seqvae_zoo.training.procedures.base import Procedure, ProcedureError, held_fixed
from seqvae_zoo.training.procedures.standard import Standard
from seqvae_zoo.training.stopping import StopRequest, StopRequested


def processes_label(counts: Sequence[int]) -> int | str:
    """An epoch row's ``processes``: the number of processes its steps ran on, or where a run was resumed on
    another number within the epoch, each in order ("2, then 1"): the epoch's arithmetic is not one process's,
    or not the same number's throughout, so a rerun on one number matches it only to rounding."""
    return counts[0] if len(counts) == 1 else ", then ".join(map(str, counts))


def processes_of(row: dict[str, Any]) -> list[int]:
    """The numbers of processes an epoch row's steps ran on (:func:`processes_label` read back); none for a row
    written before the column, which did not record them."""
    label = row.get("processes")
    if label is None:
        return []
    return [label] if isinstance(label, int) else [int(count) for count in label.split(", then ")]


def make_optimizer(parameters, lr: float) -> torch.optim.Adam:
    """Adam as one fused kernel over all the parameters where torch has one for their device (CPU and CUDA): the
    same update as the default implementation, which runs separate elementwise operations parameter by parameter,
    at a fraction of the time on a CPU (benchmarks/README.md)."""
    parameters = list(parameters)
    if all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in parameters):
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    return torch.optim.Adam(parameters, lr=lr)


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite at ``step`` (1-based) of ``epoch`` (1-based); the last good checkpoint is
    kept."""

    def __init__(self, message: str, step: int, epoch: int, loss: float):
        super().__init__(message)
        self.step, self.epoch, self.loss = step, epoch, loss


class SettingsError(UserError, ValueError):
    """A number of the optimization (``training.TrainingSettings``) that training cannot run with."""


@gin.configurable(module="training")
@dataclass
class TrainingSettings:
    """Every number of the optimization, gin-configurable (``training.TrainingSettings.lr = 5e-4``).

    Defaults are the paper's: Adam, lr 1e-3 halved every 2 epochs after epoch 10, 20 epochs, batch 32, gradient
    norm clipped at 5. ``checkpoint_every`` is in steps (0: only at the end of each epoch). ``batch_size`` is the
    batch of a step over all processes: N processes score batch_size / N sentences each. ``procedure`` is the
    training step (``@procedures.aggressive()``; ``seqvae list`` names them all). ``precision`` is that of the
    training steps' products: ``"fp32"``, or ``"bf16"`` (bfloat16 products, float32 master weights, optimizer state,
    loss, KL terms, cross-entropy and clipping; docs/precision.md); validation is float32 either way.
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
    procedure: Procedure = field(default_factory=Standard)
    precision: str = "fp32"

    def __post_init__(self):
        """Refuse a number the optimization cannot run with, naming its binding: torch would fail later with a
        traceback (a negative lr, a decay every 0 epochs at epoch lr_decay_after) or run in silence with a model
        that cannot learn (gradients clipped to norm 0)."""
        rules = [("epochs", True, lambda v: v >= 0, ">= 0 (0: build the model, train nothing)"),
                 ("batch_size", True, lambda v: v >= 1, ">= 1"),
                 ("eval_batch_size", True, lambda v: v >= 1, ">= 1"),
                 ("lr", False, lambda v: 0 <= v < math.inf, ">= 0"),
                 ("lr_decay_after", True, lambda v: v >= 0, ">= 0 (the epochs before the first decay)"),
                 ("lr_decay_every", True, lambda v: v >= 1, ">= 1 (epochs between decays)"),
                 ("lr_decay_factor", False, lambda v: 0 < v < math.inf, "> 0 (0.5 halves the rate)"),
                 ("clip_norm", False, lambda v: v > 0, "> 0"),
                 ("checkpoint_every", True, lambda v: v >= 0, ">= 0 (steps; 0: at each epoch's end)")]
        for name, integer, valid, wanted in rules:
            check_number(f"training.TrainingSettings.{name}", getattr(self, name), integer, valid, wanted,
                         SettingsError)

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

    def add(self, terms: LossTerms) -> None:
        self.sentences += int(terms.nll.numel())
        self.tokens += int(terms.tokens.sum())
        self.words += int(terms.words.sum())
        self.nll += float(terms.nll.sum())
        for name, value in terms.kl.items():
            self.kl[name] = self.kl.get(name, 0.0) + float(value.sum())
        for name, value in terms.aux.items():
            self.aux[name] = self.aux.get(name, 0.0) + float(value.sum())

    @classmethod
    def combined(cls, parts: list[EpochTotals]) -> EpochTotals:
        """The totals of several processes' sentences together."""
        total = cls()
        for part in parts:
            total.sentences += part.sentences
            total.tokens += part.tokens
            total.words += part.words
            total.nll += part.nll
            for mine, theirs in ((total.kl, part.kl), (total.aux, part.aux)):
                for name, value in theirs.items():
                    mine[name] = mine.get(name, 0.0) + value
        return total

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


class TrainBatch(NamedTuple):
    """A batch of the training stream on the trainer's device: this process's share of it, of which the first
    ``rows`` sentences count, and the factor on its mean loss (see ``Share.loss_scale``)."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    rows: int
    loss_scale: float


#: A training loss: (model, tokens, lengths, weights) -> (loss, the batch's terms).
LossFunction = Callable[[SeqVAE, torch.Tensor, torch.Tensor, dict[str, float]], tuple[torch.Tensor, LossTerms]]


def model_objective(model: SeqVAE, tokens: torch.Tensor, lengths: torch.Tensor,
                    weights: dict[str, float]) -> tuple[torch.Tensor, LossTerms]:
    """The model's own objective: the loss of a standard step."""
    terms = model(tokens, lengths)
    return model.objective(terms, weights), terms


class Trainer:
    """Trains ``model`` on ``train_loader`` (whose batch sampler has ``set_epoch`` and a resumable state).

    With a ``distributed`` context of several processes, every process builds a Trainer over its own loaders (whose
    samplers are :class:`DistributedBucketBatchSampler` s) and calls the same methods in the same order. A ``stop``
    request is consulted after every step: when it asks, the trainer writes a checkpoint and raises
    :class:`StopRequested`, and resuming continues exactly as if it had not stopped.

    What a step does is the settings' ``procedure`` (:mod:`seqvae_zoo.training.procedures`): it learns from the
    batches through :meth:`update` and :meth:`next_batch`; checkpoints, stop requests and ``max_steps`` fall between
    its steps, and its state is part of the checkpoint.
    """

    def __init__(self, model: SeqVAE, train_loader, valid_loader, out_dir: str | Path,
                 settings: TrainingSettings | None = None, extra_state: dict[str, Any] | None = None,
                 device: torch.device | str = "cpu", progress: bool = True,
                 on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
                 distributed: DistributedContext | None = None, stop: StopRequest | None = None):
        self.device = torch.device(device)
        self.distributed = distributed or DistributedContext.single(self.device)
        self.model = model.to(device)
        self.objective = self.distributed.wrap(Objective(self.model))
        self.settings = settings or TrainingSettings()
        check_precision(self.settings.precision, self.device)
        self.train_loader, self.valid_loader = train_loader, valid_loader
        self.sampler = train_loader.batch_sampler
        self.out_dir = Path(out_dir)
        self.extra_state = extra_state or {}
        self.optimizer = make_optimizer(self.model.parameters(), self.settings.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.settings.lr_factor)
        self.procedure = self.settings.procedure
        self.step = 0
        self.epoch = 0
        # the epoch under way: its totals so far (this process's), when it began, as time.perf_counter() reads it,
        # and the numbers of processes its steps ran on, in order (a run resumed on another number changes it)
        self.totals = EpochTotals()
        self.epoch_started = time.perf_counter()
        self.epoch_processes: list[int] = []
        self.history: list[dict[str, float]] = []
        self.best_valid = math.inf
        self.log = RunLog(self.out_dir, enabled=progress) if self.distributed.is_main else SilentLog()
        self.on_epoch_end = on_epoch_end
        self.stop = stop
        self._slowest_step_s = 0.0
        self._slowest_save_s = 0.0
        self._max_steps: int | None = None  # train()'s limit: progress.json says how many steps are planned
        self._since_summary: tuple[int, float] | None = None  # (step, seconds) at this launch's last summary
        self._batches = iter(())  # the epoch's batch stream, while an epoch is under way
        self._epoch_batches: tuple[int, list[list[int]]] = (-1, [])  # (epoch, its batches), for random_batch
        self._bar = tqdm(disable=True)
        self.procedure.bind(self)

    # -- state ----------------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What a checkpoint holds (every process must call it: it gathers each process's random state)."""
        rng = self.distributed.all_gather(self._rng_state())
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "sampler": self.sampler.state_dict(),
            "history": self.history,
            "best_valid": self.best_valid,
            "epoch_progress": {"totals": asdict(self._reduced(self.totals)),
                               "seconds": time.perf_counter() - self.epoch_started,
                               "processes": self.epoch_processes},
            "rank_rng": rng,  # each process's random state, in rank order
            "procedure": {"name": self.procedure.registry_name, "state": self.procedure.state_dict()},
            "precision": self.settings.precision,
        }
        state.update(self.extra_state)
        return state

    def _rng_state(self) -> dict[str, torch.Tensor]:
        state = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _restore_rng(self, saved: dict[str, Any]) -> None:
        """Continue this process's random stream where the checkpoint left it; a process the checkpoint has no
        stream for (resumed on more processes than it was written by) starts a fresh one of its own."""
        streams = saved.get("rank_rng") or [saved["rng"]]  # "rng": checkpoints of one process, before "rank_rng"
        if self.distributed.rank >= len(streams):
            torch.manual_seed(rank_seed(self.sampler.seed, self.distributed.rank, self.step))
            return
        stream = streams[self.distributed.rank]
        torch.set_rng_state(stream["torch"].cpu())
        if "cuda" in stream and self.device.type == "cuda":
            cuda = stream["cuda"]
            torch.cuda.set_rng_state(cuda[self.device.index or 0] if isinstance(cuda, list) else cuda.cpu(),
                                     self.device)

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint of this run (same config and data)."""
        state = read_checkpoint(path, map_location=self.device)
        precision = state.get("precision", "fp32")  # checkpoints before mixed precision: float32
        if precision != self.settings.precision:
            raise PrecisionError(
                f"the checkpoint {str(path)!r} was trained in precision {precision!r} and the config asks for "
                f"{self.settings.precision!r}: a resumed run continues in its own precision (--precision {precision}"
                f" or training.TrainingSettings.precision = \"{precision}\"); start a new run for the other")
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"], self.model, state["model"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.sampler.load_state_dict(state["sampler"])
        self.history, self.best_valid = state["history"], state["best_valid"]
        procedure = state.get("procedure", {"name": "standard", "state": {}})  # checkpoints before procedures
        if procedure["name"] != self.procedure.registry_name:
            raise ProcedureError(f"the checkpoint was trained by procedure {procedure['name']!r}, and the config "
                                 f"names {self.procedure.registry_name!r}: resume with the run's own config")
        self.procedure.load_state_dict(procedure["state"])
        # rank 0 carries the epoch's totals so far, the others add theirs (checkpoints before "epoch_progress": none)
        progress = state.get("epoch_progress", {"totals": {}, "seconds": 0.0})
        self.totals = EpochTotals(**progress["totals"]) if self.distributed.is_main else EpochTotals()
        self.epoch_started = time.perf_counter() - progress["seconds"]
        # checkpoints before "processes": the epoch's steps so far ran on as many processes as wrote the checkpoint
        # (at an epoch's start the loop clears the list)
        written_by = len(state.get("rank_rng") or [state.get("rng")])
        self.epoch_processes = list(progress.get("processes", [written_by]))
        self._restore_rng(state)

    def save(self, name: str = "checkpoint.pt") -> None:
        """Write a checkpoint (rank 0 writes; every process must call it); with the latest one, ``progress.json``."""
        started = time.perf_counter()
        state = self.state()
        if self.distributed.is_main:
            save_checkpoint(self.out_dir / name, state)
            if name == "checkpoint.pt":
                write_json_atomically(self.out_dir / "progress.json", self.progress_summary())
        self._slowest_save_s = max(self._slowest_save_s, time.perf_counter() - started)

    def train_seconds(self) -> float:
        """The run's training time so far, over all its launches: the finished epochs' and, while one is under way
        (between its first batch and its end, when its clock is not yet restarted), the current one's."""
        sampler = self.sampler.state_dict()
        under_way = sampler["epoch"] == self.epoch and sampler["position"] > 0
        return sum(row["seconds"] for row in self.history) + (time.perf_counter() - self.epoch_started if under_way
                                                               else 0.0)

    def progress_summary(self) -> dict[str, Any]:
        """Where the run stands, in plain JSON: read without loading the checkpoint."""
        seconds = self.train_seconds()
        total_steps = self.settings.epochs * len(self.sampler)
        if self._max_steps is not None:
            total_steps = min(total_steps, self._max_steps)
        # the steps since this launch began or last summed up: the rate under today's load, which a run stopped and
        # resumed beside other work (a bench in slices) can have far from its average
        since_step, since_seconds = self._since_summary or (self.step, seconds)
        recent = {"steps": self.step - since_step, "seconds": seconds - since_seconds}
        self._since_summary = (self.step, seconds)
        return {"step": self.step, "epoch": self.epoch, "epochs": self.settings.epochs,
                "steps_per_epoch": len(self.sampler), "total_steps": total_steps, "train_seconds": seconds,
                "recent": recent, "precision": self.settings.precision,
                "last_valid_nll": self.history[-1]["valid_nll"] if self.history else None,
                "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    # -- loop -----------------------------------------------------------------------------------------------------
    def train(self, max_steps: int | None = None) -> list[dict[str, float]]:
        """Train until the configured epochs are done or ``max_steps`` steps in all; return the epoch history."""
        settings = self.settings
        steps_per_epoch = len(self.sampler)
        self._max_steps = max_steps
        self._since_summary = (self.step, self.train_seconds())
        try:
            while self.epoch < settings.epochs:
                if max_steps is not None and self.step >= max_steps:
                    break
                self.sampler.set_epoch(self.epoch)
                if self.sampler.state_dict()["position"] == 0:
                    self.totals, self.epoch_started, self.epoch_processes = EpochTotals(), time.perf_counter(), []
                self._bar = self.log.progress(self.epoch, settings.epochs, steps_per_epoch,
                                              self.sampler.state_dict())
                self._batches = iter(self.train_loader)
                while (batch := self.next_batch()) is not None:
                    step_started, steps_before = time.perf_counter(), self.step
                    self.procedure.train_step(self, batch)
                    if settings.checkpoint_every and (self.step // settings.checkpoint_every
                                                      > steps_before // settings.checkpoint_every):
                        self.save()
                    if max_steps is not None and self.step >= max_steps:
                        break
                    self._slowest_step_s = max(self._slowest_step_s, time.perf_counter() - step_started)
                    self._stop_if_asked()
                self._bar.close()
                sampler_state = self.sampler.state_dict()
                if sampler_state["epoch"] == self.epoch and sampler_state["position"] < steps_per_epoch:
                    self.save()  # stopped by max_steps inside the epoch: --resume continues with the next batch
                    break
                self._end_epoch()
        finally:
            self.log.close()
        return self.history

    def _stop_if_asked(self) -> None:
        """With a stop request that asks (in any process), write a checkpoint at this step and stop."""
        if self.stop is None:
            return
        reason = self.stop.reason(next_unit_s=self._slowest_step_s + self._slowest_save_s)
        if self.distributed.all_true(reason is None):
            return
        self.save()
        raise StopRequested(f"{reason or 'another process was asked to stop'}: stopped at step {self.step} "
                            f"(epoch {self.epoch + 1}), checkpoint written")

    def _share(self, sampler, rows: int) -> tuple[int, float]:
        """(sentences that count, loss scale) of the batch just drawn from ``sampler``: in one process all of it, at
        scale 1; in several, this process's share, weighed by its size (see ``Share.loss_scale``)."""
        if isinstance(sampler, DistributedBucketBatchSampler):
            return sampler.share.rows, sampler.share.loss_scale
        return rows, 1.0

    def _all_processes(self, terms: LossTerms, tokens: int) -> tuple[LossTerms, int]:
        """The step's terms of every process's share, and the epoch's tokens of every process."""
        if not self.distributed.distributed:
            return terms, tokens
        parts = self.distributed.all_gather((_on_cpu(terms), tokens))
        return _concatenated([part for part, _ in parts]), sum(count for _, count in parts)

    # -- what a procedure calls -----------------------------------------------------------------------------------
    def next_batch(self) -> TrainBatch | None:
        """The next batch of the epoch's stream (this process's share of it), or None when the epoch's batches are
        spent."""
        drawn = next(self._batches, None)
        if drawn is None:
            return None
        tokens, lengths = drawn
        rows, loss_scale = self._share(self.sampler, len(lengths))
        return TrainBatch(tokens.to(self.device), lengths.to(self.device), rows, loss_scale)

    def random_batch(self, generator: torch.Generator) -> TrainBatch:
        """A batch drawn by ``generator`` uniformly, with replacement, from this epoch's batches of the training
        split (this process's share of it), bucketed and padded as the stream's are; processes drawing with the same
        generator state draw the same batch."""
        distributed = isinstance(self.sampler, DistributedBucketBatchSampler)
        sampler = self.sampler.global_sampler if distributed else self.sampler
        if self._epoch_batches[0] != self.epoch:
            self._epoch_batches = (self.epoch, sampler.batches(self.epoch))
        batches = self._epoch_batches[1]
        indices = batches[int(torch.randint(len(batches), (1,), generator=generator))]
        rows, loss_scale = len(indices), 1.0
        if distributed:
            share = share_of(indices, self.sampler.rank, self.sampler.world_size)
            indices, rows, loss_scale = share.indices, share.rows, share.loss_scale
        tokens, lengths = self.train_loader.collate_fn([self.train_loader.dataset[i] for i in indices])
        return TrainBatch(tokens.to(self.device), lengths.to(self.device), rows, loss_scale)

    def weights(self, step: int | None = None) -> dict[str, float]:
        """The weights of the objective's terms at ``step`` (the current one by default): the KL schedule's, as
        the procedure has them."""
        step = self.step if step is None else step
        return self.procedure.weights(self, step, self.settings.kl_schedule.weights(step, step / len(self.sampler)))

    def update(self, batch: TrainBatch, loss: LossFunction = model_objective,
               parameters: Sequence[nn.Parameter] | None = None) -> LossTerms:
        """One step of the optimizer on ``batch`` with ``loss`` (the model's objective by default), on
        ``parameters`` only when given (the others' gradients are dropped, so Adam leaves them and their moments as
        they are; gradient clipping reads those it steps). The step counts in the epoch's totals and the log;
        returns the per-sentence terms of the sentences that count."""
        weights = self.weights()
        terms = _first_rows(self._train_step(batch.tokens, batch.lengths, weights, batch.loss_scale, loss,
                                             parameters), batch.rows)
        self.totals.add(terms)
        self.step += 1
        if self.epoch_processes[-1:] != [self.distributed.world_size]:
            self.epoch_processes.append(self.distributed.world_size)
        tokens_so_far = self.totals.tokens
        logged = terms
        if self.step % LOG_EVERY == 0:  # what the log shows: the whole batch, all processes' tokens
            logged, tokens_so_far = self._all_processes(terms, tokens_so_far)
        elapsed = time.perf_counter() - self.epoch_started
        self.log.step(self._bar, self.step, logged, weights, tokens_so_far / max(elapsed, 1e-9),
                      self.optimizer.param_groups[0]["lr"])
        return terms

    @torch.no_grad()
    def valid_mutual_information(self) -> float:
        """I_q(x; z_enc) over the validation split's posteriors, with noise of its own. Over several processes the
        shares are put back in the order of one process's batches, so the estimate does not depend on their
        number."""
        self.model.eval()
        shares = []  # this process's posterior parameters of each validation batch
        sampler = self.valid_loader.batch_sampler
        family = None
        for tokens, lengths in self.valid_loader:
            rows, _ = self._share(sampler, len(lengths))
            posterior = self.model.encoder(tokens.to(self.device), lengths.to(self.device)).posterior
            family = type(posterior)
            shares.append(tuple(parameter[:rows].cpu() for parameter in posterior))
        by_rank = self.distributed.all_gather(shares)
        batches = []
        for parts in zip(*by_rank):  # the shares of one batch: every world_size-th sentence from the rank's position
            parameters = []
            for pieces in zip(*parts):  # one parameter tensor of the distribution, from every rank
                parameter = pieces[0].new_empty(sum(len(piece) for piece in pieces), *pieces[0].shape[1:])
                for rank, piece in enumerate(pieces):
                    parameter[rank::len(pieces)] = piece
                parameters.append(parameter)
            batches.append(family(*parameters))
        return mutual_information(concatenate(batches), generator=torch.Generator().manual_seed(0))

    def _train_step(self, tokens: torch.Tensor, lengths: torch.Tensor, weights: dict[str, float],
                    loss_scale: float, loss_function: LossFunction,
                    parameters: Sequence[nn.Parameter] | None) -> LossTerms:
        self.model.train()
        stepped = {id(p) for p in parameters} if parameters is not None else None
        others = [p for p in self.model.parameters() if stepped is not None and id(p) not in stepped]
        # the others' gradients are not computed at all, but DistributedDataParallel's static graph expects every
        # parameter's gradient at every step: there they are computed and dropped
        with held_fixed(others if not self.distributed.distributed else []):
            with autocast(self.settings.precision, self.device):  # the forward pass only: backward follows its casts
                loss, terms = self.objective(tokens, lengths, weights, loss_function)
            if not self.distributed.all_true(bool(torch.isfinite(loss))):
                raise NonFiniteLossError(
                    f"the training loss became {loss.item()} at step {self.step + 1} (epoch {self.epoch + 1}); the "
                    f"last good checkpoint {str(self.out_dir / 'checkpoint.pt')!r} is kept. Lower the learning rate "
                    "(--gin 'training.TrainingSettings.lr = 5e-4') or check the data, then --resume",
                    step=self.step + 1, epoch=self.epoch + 1, loss=loss.item())
            self.optimizer.zero_grad(set_to_none=True)
            (loss * loss_scale if loss_scale != 1.0 else loss).backward()
        for parameter in others:
            parameter.grad = None
        nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.clip_norm)
        self.optimizer.step()
        return _detached(terms)

    def _end_epoch(self) -> None:
        seconds = time.perf_counter() - self.epoch_started
        totals = self._reduced(self.totals)
        weights = self.weights(self.step - 1)
        row = {"epoch": self.epoch + 1, "step": self.step, "lr": self.optimizer.param_groups[0]["lr"],
               "seconds": seconds, "tokens_per_s": totals.tokens / max(seconds, 1e-9),
               "processes": processes_label(self.epoch_processes or [self.distributed.world_size])}
        row.update(totals.summary("train_"))
        row.update({f"weight_{name}": value for name, value in self.model.term_weights(weights).items()})
        row.update(self.validate().summary("valid_"))
        self.epoch += 1
        row.update(self.procedure.end_epoch(self))
        with warnings.catch_warnings():
            # A run resumed from a checkpoint taken after its epoch's last batch steps the schedule before this
            # process's first optimizer step; the schedule's position came from the checkpoint, so torch's warning
            # about a skipped first value does not apply.
            warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()` before"))
            self.scheduler.step()
        self.history.append(row)
        self.log.epoch(row, self.history)
        if row["valid_neg_elbo"] < self.best_valid:
            self.best_valid = row["valid_neg_elbo"]
            self.save("best.pt")
        self.save()
        if self.on_epoch_end is not None:
            self.on_epoch_end(self.epoch, row)

    def _reduced(self, totals: EpochTotals) -> EpochTotals:
        return EpochTotals.combined(self.distributed.all_gather(totals))

    @torch.no_grad()
    def validate(self) -> EpochTotals:
        """One-sample -ELBO terms on the validation split (the RNG state is restored so training is unaffected);
        over several processes each scores its shares and the totals are summed."""
        self.model.eval()
        totals = EpochTotals()
        rng = torch.get_rng_state()
        sampler = self.valid_loader.batch_sampler
        for tokens, lengths in self.valid_loader:
            rows, _ = self._share(sampler, len(lengths))
            if rows:
                totals.add(_first_rows(self.model(tokens.to(self.device), lengths.to(self.device)), rows))
        torch.set_rng_state(rng)
        return self._reduced(totals)


class Objective(nn.Module):
    """The training loss of a batch, and its terms, as the output of a module: DistributedDataParallel wraps this
    one, so it sees the loss tensor the backward pass starts from (it does not look inside a LossTerms)."""

    def __init__(self, model: SeqVAE):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, weights: dict[str, float],
                loss: LossFunction = model_objective) -> tuple[torch.Tensor, LossTerms]:
        return loss(self.model, tokens, lengths, weights)


class SilentLog:
    """The log of a process other than rank 0: rank 0 alone shows progress and writes the run's logs."""

    def progress(self, *args) -> tqdm:
        return tqdm(disable=True)

    def step(self, *args) -> None:
        pass

    def epoch(self, *args) -> None:
        pass

    def close(self) -> None:
        pass


_PER_SENTENCE = ("nll", "log_weight", "tokens", "words")


def _detached(terms: LossTerms) -> LossTerms:
    terms.nll = terms.nll.detach()
    terms.kl = {k: v.detach() for k, v in terms.kl.items()}
    terms.aux = {k: v.detach() for k, v in terms.aux.items()}
    return terms


def _first_rows(terms: LossTerms, rows: int) -> LossTerms:
    """The per-sentence terms of the first ``rows`` sentences (the others stood in for an empty share)."""
    if rows == len(terms.nll):
        return terms
    return LossTerms(**{name: getattr(terms, name)[:rows] for name in _PER_SENTENCE},
                     kl={k: v[:rows] for k, v in terms.kl.items()}, aux={k: v[:rows] for k, v in terms.aux.items()})


def _on_cpu(terms: LossTerms) -> LossTerms:
    return LossTerms(**{name: getattr(terms, name).detach().cpu() for name in _PER_SENTENCE},
                     kl={k: v.cpu() for k, v in terms.kl.items()}, aux={k: v.cpu() for k, v in terms.aux.items()})


def _concatenated(parts: list[LossTerms]) -> LossTerms:
    return LossTerms(**{name: torch.cat([getattr(p, name) for p in parts]) for name in _PER_SENTENCE},
                     kl={k: torch.cat([p.kl[k] for p in parts]) for k in parts[0].kl},
                     aux={k: torch.cat([p.aux[k] for p in parts]) for k in parts[0].aux})
