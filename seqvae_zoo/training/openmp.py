"""How long torch's CPU threads busy-wait for each other, set before torch loads.

PyTorch's Linux wheels run their threads on GNU OpenMP (libgomp), whose threads spin for 300,000 iterations at every
barrier before they sleep. On cores that other processes also use (a second training, a test run, a shared server),
a spinning thread holds a core that the thread it waits for needs, and many of the small parallel operations of a
step wait out a scheduler time slice. `vrae_sa_aux` on two threads beside two one-thread trainings on two cores
trained at 121-124 tokens/s with that spin, 1,126-1,160 with a 10,000-iteration one and 1,661-2,328 on one thread;
on idle cores the two spins trained at the same rate (benchmarks/README.md, "OpenMP's busy wait"). libgomp reads its
settings once, when torch loads it, so the ``seqvae`` command sets ``GOMP_SPINCOUNT`` before it imports anything that
loads torch, unless the user set it or ``OMP_WAIT_POLICY``; a library user sets it in the environment. On cores
shared for long, one thread (``OMP_NUM_THREADS=1``) or ``GOMP_SPINCOUNT=100`` is faster still; on idle ones the
shorter spin cost up to 17%.
"""

from __future__ import annotations

import os
import sys
from typing import MutableMapping

#: iterations a thread spins at a barrier before it sleeps: as fast as libgomp's 300,000 on idle cores
SHORT_SPIN = "10000"


def short_openmp_waits(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Set ``GOMP_SPINCOUNT`` to :data:`SHORT_SPIN` unless the user chose how OpenMP waits (``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT``) or torch is loaded already (then its runtime has read its settings); True if it set it."""
    if "torch" in sys.modules or {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(environ):
        return False
    environ["GOMP_SPINCOUNT"] = SHORT_SPIN
    return True
