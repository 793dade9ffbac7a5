"""Training over several processes and machines with torch.distributed.

``seqvae train`` started by ``torchrun`` finds RANK, WORLD_SIZE and LOCAL_RANK in its environment, joins the process
group (gloo on CPU, nccl on CUDA, or the backend named by ``--backend`` / ``$SEQVAE_DIST_BACKEND``) and trains its
model wrapped in DistributedDataParallel. :class:`DistributedContext` is that process's place in the group and the
few collectives the trainer needs; for a single process it is the same object with every collective a no-op, so the
trainer has one code path.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from seqvae_zoo.errors import UserError

BACKEND_VARIABLE = "SEQVAE_DIST_BACKEND"
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
RENDEZVOUS_VARIABLES = ("MASTER_ADDR", "MASTER_PORT")


class DistributedError(UserError):
    """The multi-process launch cannot work as set up: its environment, backend or devices."""


@dataclass(frozen=True)
class Launch:
    """What torchrun tells a process: its rank among all processes, their number, and its rank on this machine."""

    rank: int
    world_size: int
    local_rank: int


def launch_from_environment(environ: Mapping[str, str] = os.environ) -> Launch | None:
    """The torchrun launch this process belongs to; None when it runs alone (no WORLD_SIZE, or WORLD_SIZE 1)."""
    if "WORLD_SIZE" not in environ:
        return None
    values = {}
    for name in LAUNCH_VARIABLES:
        text = environ.get(name)
        try:
            values[name] = int(text)
        except (TypeError, ValueError):
            raise DistributedError(
                f"WORLD_SIZE is set, so this is a multi-process launch, but {name} is {text!r}, not an integer: "
                "start multi-process training with `torchrun --nproc_per_node N -m seqvae_zoo.cli train ...` (it "
                f"sets {', '.join(LAUNCH_VARIABLES)}), or unset WORLD_SIZE to train in one process") from None
    launch = Launch(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if launch.world_size < 1 or not 0 <= launch.rank < launch.world_size or launch.local_rank < 0:
        raise DistributedError(f"RANK {launch.rank} / LOCAL_RANK {launch.local_rank} of WORLD_SIZE "
                               f"{launch.world_size} is not a valid rank: the ranks of N processes are 0..N-1")
    if launch.world_size == 1:
        return None
    missing = [name for name in RENDEZVOUS_VARIABLES if not environ.get(name)]
    if missing:
        raise DistributedError(f"{', '.join(missing)} not set: the processes cannot find each other. Start them "
                               "with torchrun, which sets the rendezvous address")
    return launch


def choose_device(requested: str, launch: Launch | None) -> torch.device:
    """The device a process trains on: ``requested``, where under torchrun a plain "cuda" means the GPU numbered by
    LOCAL_RANK, one GPU per process."""
    device = torch.device(requested)
    if device.type != "cuda" or launch is None or device.index is not None:
        return device
    count = torch.cuda.device_count()
    if launch.local_rank >= count:
        raise DistributedError(f"process {launch.rank} has LOCAL_RANK {launch.local_rank} but this machine has "
                               f"{count} GPU(s): start at most {count} processes per machine "
                               "(torchrun --nproc_per_node), or train on the CPU with --device cpu")
    return torch.device("cuda", launch.local_rank)


def choose_backend(device: torch.device, requested: str | None = None,
                   environ: Mapping[str, str] = os.environ) -> str:
    """``requested``, else ``$SEQVAE_DIST_BACKEND``, else nccl for CUDA devices and gloo for the CPU."""
    backend = (requested or environ.get(BACKEND_VARIABLE) or ("nccl" if device.type == "cuda" else "gloo")).lower()
    known = [name for name in ("gloo", "nccl", "mpi", "ucc") if dist.is_backend_available(name)]
    if backend not in known:
        raise DistributedError(f"backend {backend!r} is not available in this PyTorch build; available: "
                               f"{', '.join(known)} (choose with --backend or ${BACKEND_VARIABLE})")
    if backend == "nccl" and device.type != "cuda":
        raise DistributedError(f"the nccl backend needs CUDA devices, but this run trains on {device}: use "
                               "--backend gloo, or --device cuda")
    return backend


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """A seed for the random stream of process ``rank`` (dropout, latent noise), distinct for every rank and step,
    so no two processes draw the same noise for different sentences."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, dtype=np.uint64)[0] >> 1)


class DistributedContext:
    """One process's place among the processes training one model, and the collectives the trainer uses.

    Build it with :meth:`single` (one process, no group) or :meth:`join` (torchrun's environment).
    """

    def __init__(self, rank: int, world_size: int, device: torch.device, backend: str | None,
                 owns_group: bool = False):
        self.rank, self.world_size, self.device, self.backend = rank, world_size, device, backend
        self.owns_group = owns_group

    @classmethod
    def single(cls, device: torch.device | str = "cpu") -> DistributedContext:
        return cls(0, 1, torch.device(device), None)

    @classmethod
    def join(cls, device: str, backend: str | None = None) -> DistributedContext:
        """The context of this process: a single one when it was not started by torchrun, else its place in the
        process group (joined here unless the caller already did)."""
        launch = launch_from_environment()
        chosen = choose_device(device, launch)
        if launch is None:
            return cls.single(chosen)
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        if dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), chosen, dist.get_backend())
        name = choose_backend(chosen, backend)
        # DistributedDataParallel imports torch.distributed.nn on first use, whose functions take the default group
        # as a default argument: imported after the group exists, they would hold it past destroy_process_group,
        # and its gloo threads would outlive the run into the interpreter's exit.
        importlib.import_module("torch.distributed.nn")
        dist.init_process_group(name, init_method="env://", rank=launch.rank, world_size=launch.world_size,
                                device_id=chosen if name == "nccl" else None)
        return cls(launch.rank, launch.world_size, chosen, name, owns_group=True)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, shows progress and writes the run folder."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model as the training step calls it: DistributedDataParallel over the group, or the model itself.

        ``static_graph``: a training step uses the same parameters every time, so DDP learns in the first step
        which of them (if any) never get a gradient and needs no search for unused parameters in later steps; a
        variant with parameters that only generation uses trains as well as one without.
        """
        if not self.distributed:
            return model
        device_ids = [self.device] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, static_graph=True)

    def all_gather(self, value: Any) -> list[Any]:
        """``value`` of every process, in rank order (picklable values)."""
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value``, in every process (picklable values)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds in every process (each process learns the same answer)."""
        if not self.distributed:
            return flag
        value = torch.tensor([0.0 if flag else 1.0], device=self.device)
        dist.all_reduce(value)
        return bool(value.item() == 0.0)

    def close(self, finished: bool = True) -> None:
        """Leave the process group if this context joined it. After a run that ``finished``, every process first
        waits for the others: one that tears its connections down while another still finishes can make that one
        abort at exit. After an error the others may never arrive, so the process leaves at once."""
        if self.owns_group and dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()
            self.owns_group = False
