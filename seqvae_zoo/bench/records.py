"""Reading a results folder safely: every record checked before the bench writes anything next to it.

A record that does not parse, or one of another suite, would otherwise surface as a traceback halfway through a
campaign (or be silently overwritten); each is one clear error naming the file and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seqvae_zoo.errors import UserError
from seqvae_zoo.training.run import CHECKPOINT

#: What a training folder holds from the moment its training begins: the commit and the time it began.
STARTED_FILE = "started.json"
#: What a training folder holds once a bench takes its run up (to train, resume or evaluate it): when, and which
#: process. ``--status`` tells the runs a running bench is working on from those waiting for a worker by it.
TAKEN_FILE = "taken.json"

#: What every record holds, whatever the evaluation kind.
REQUIRED_KEYS = ("model", "dataset", "metrics", "protocol_version", "suite")


class RecordError(UserError):
    """A results folder holds a corrupt record or another suite's records."""


def read_record(path: str | Path) -> dict[str, Any]:
    """One record, checked: a JSON object with the keys every record has."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RecordError(f"the record {str(path)!r} is corrupt ({error}): restore it, or delete it to redo that "
                          "run") from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(record, dict) or key not in record]
    if missing:
        raise RecordError(f"the record {str(path)!r} is corrupt (no {', '.join(missing)}): restore it, or delete "
                          "it to redo that run")
    return record


#: The folder of a suite's saved IW passes, one per record, named as the record is.
IW_PROGRESS = "iw-progress"


def iw_progress_path(root: Path, record_name: str, run_dir: Path, checkpoint: str) -> Path:
    """Where the saved importance-sampling pass of a run is: ``<suite>/iw-progress/<record name>``, beside the records
    and not in the training folder, so that it is kept (and committed) with them and outlives a training folder
    lost with its machine. A pass an earlier version saved in the training folder (``iw-progress.json``, or
    ``iw-progress-best.json`` for a row scored at its best epoch) is read from there."""
    path = root / IW_PROGRESS / record_name
    legacy = run_dir / ("iw-progress.json" if checkpoint == "last" else f"iw-progress-{checkpoint}.json")
    return legacy if not path.is_file() and legacy.is_file() else path


def from_a_lost_training(record: dict[str, Any], run_dir: Path) -> bool:
    """Whether the columns of ``record`` came from a training its folder no longer holds: the folder has no
    checkpoint (it was lost with the machine that held it, say) or its training began after the record was written.
    Such a record's IW pass needs a new training, and the cheap columns are then computed again from that training,
    so that no record mixes two trainings."""
    if not (run_dir / CHECKPOINT).is_file():
        return True
    started, written = run_dir / STARTED_FILE, record.get("provenance", {}).get("finished_at")
    if not started.is_file() or written is None:  # folders and records from before either was kept: one training
        return False
    return json.loads(started.read_text())["started_at"] > written  # both "%Y-%m-%dT%H:%M:%SZ", UTC


def planned_steps(progress: dict[str, Any], max_steps: int | None = None) -> int:
    """The steps a training will take in all, from its ``progress.json`` (files written before it recorded
    ``total_steps`` give epochs times steps per epoch, capped by the suite's ``max_steps`` when the caller knows it)."""
    total = progress.get("total_steps", progress["epochs"] * progress["steps_per_epoch"])
    return total if max_steps is None else min(total, max_steps)


def is_complete(record: dict[str, Any]) -> bool:
    """Whether a record has every column (records written before the cheap-columns-first order always do)."""
    return bool(record.get("complete", True))


def check_results_folder(out_dir: str | Path, suite_name: str) -> None:
    """Refuse a results folder the bench of ``suite_name`` must not write into: ``out_dir`` itself a suite's
    folder, or ``out_dir/suite_name`` holding another suite's description or records, or a corrupt record."""
    out_dir = Path(out_dir)
    if (out_dir / "suite.json").is_file() or (out_dir / "records").is_dir():
        raise RecordError(f"{str(out_dir)!r} is itself the folder of one suite's results: give --out its parent "
                          f"folder (the bench writes {suite_name!r} into <out>/{suite_name})")
    root = out_dir / suite_name
    description = root / "suite.json"
    if description.is_file():
        try:
            name = json.loads(description.read_text()).get("name")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
            raise RecordError(f"{str(description)!r} is corrupt ({error}): delete it (the bench rewrites it from "
                              "the suite file)") from None
        if name != suite_name:
            raise RecordError(f"{str(root)!r} holds the results of suite {name!r}, not {suite_name!r}: give "
                              "another --out folder")
    for path in sorted((root / "records").glob("*.json")):
        record = read_record(path)
        if record["suite"] != suite_name:
            raise RecordError(f"{str(path)!r} is a record of suite {record['suite']!r}, not {suite_name!r}: move it "
                              "to that suite's folder or give another --out folder")
