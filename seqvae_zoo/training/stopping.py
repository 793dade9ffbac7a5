"""Stopping long work early and cleanly: a wall-clock limit and the signals a batch scheduler sends before it.

A cluster job has a time limit; SLURM sends SIGTERM (or, with ``--signal``, SIGUSR1) before it kills the job. A
:class:`StopRequest` is consulted between units of work (a training step, an evaluation batch): once the limit is
near or a signal has come, the work saves what it has and raises :class:`StopRequested`, and running the same
command again continues from there.
"""

from __future__ import annotations

import re
import signal
import time
from contextlib import contextmanager
from typing import Iterator

from seqvae_zoo.errors import UserError

#: The exit status of a command that stopped at a checkpoint before its work was done (sysexits' EX_TEMPFAIL, "try
#: again later"): a job script requeues on it.
EXIT_STOPPED_EARLY = 75
#: Seconds kept free before a limit for the last checkpoint, the tables and the process's exit.
STOP_MARGIN_S = 60.0
#: The signals that ask for a clean stop: what ``kill`` and SLURM send before a job's time limit.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m(?:in)?)?(?:(?P<s>\d+)s)?$")
_CLOCK = re.compile(r"^(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+)$")


class StopRequested(Exception):
    """Work stopped before it was done, at a point it can continue from; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def parse_duration(text: str) -> float:
    """Seconds in ``1h``, ``90m``, ``2h40m``, ``45s``, ``1h5m30s`` or the clock form ``2:40:00`` (``40:00``)."""
    cleaned = text.strip().lower().replace(" ", "")
    match = _DURATION.match(cleaned) or _CLOCK.match(cleaned)
    if cleaned and match and any(match.groupdict().values()):
        parts = {k: int(v or 0) for k, v in match.groupdict().items()}
        seconds = 3600 * parts["h"] + 60 * parts["m"] + parts["s"]
        if seconds > 0:
            return float(seconds)
    raise UserError(f"the time limit {text!r} does not parse: write a positive duration such as 90m, 1h, 2h40m, "
                    "45s or 2:40:00")


class StopRequest:
    """Whether work should stop now: a deadline (seconds since the epoch, as ``time.time()`` reads it, so worker
    processes can share it) less a margin, or a stop signal received. ``shared_flag`` (a multiprocessing Event)
    carries a signal from the main process to its workers."""

    def __init__(self, deadline: float | None = None, margin_s: float = STOP_MARGIN_S, shared_flag=None):
        self.deadline = deadline
        self.margin_s = margin_s
        self.shared_flag = shared_flag
        self.signal_name: str | None = None

    @classmethod
    def after(cls, seconds: float | None, **kwargs) -> StopRequest:
        return cls(None if seconds is None else time.time() + seconds, **kwargs)

    def seconds_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    def reason(self, next_unit_s: float = 0.0) -> str | None:
        """Why to stop before a unit of work expected to take ``next_unit_s`` seconds, or None to go on."""
        if self.signal_name is None and self.shared_flag is not None and self.shared_flag.is_set():
            self.signal_name = "a stop signal"
        if self.signal_name is not None:
            return f"{self.signal_name} was received"
        left = self.seconds_left()
        if left is not None and left - next_unit_s < self.margin_s:
            return "the time limit is near"
        return None

    def check(self, next_unit_s: float = 0.0) -> None:
        """Raise :class:`StopRequested` if the work should stop before the next unit."""
        reason = self.reason(next_unit_s)
        if reason is not None:
            raise StopRequested(reason)

    def on_signal(self, number: int, frame=None) -> None:
        self.signal_name = signal.Signals(number).name
        if self.shared_flag is not None:
            self.shared_flag.set()

    @contextmanager
    def handling_signals(self) -> Iterator[StopRequest]:
        """Within the block, SIGTERM and SIGUSR1 ask for a clean stop instead of ending the process; the previous
        handlers come back afterwards."""
        previous = {number: signal.signal(number, self.on_signal) for number in STOP_SIGNALS}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
