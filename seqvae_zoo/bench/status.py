"""``seqvae bench --status DIR``: where a campaign stands, read from its files alone, changing none of them.

Each run of a suite is done (its record, with headline numbers), being evaluated (the importance-weighted pass's
saved batches, one of them held by a live worker), in training (the run folder's ``progress.json``, or its
``started.json`` newer than the running bench's lock before the first checkpoint), queued (begun, or trained and
awaiting its IW pass, while the running bench has not taken it up: ``taken.json`` older than its lock, no batch
held), or pending; a record without its IW-NLL whose training is gone (its folder lost) is a run in training or
pending again. Time left is projected from the rates the runs have measured so far.
"""

from __future__ import annotations

import fcntl
import json
import re
import statistics
from pathlib import Path
from typing import Any

from seqvae_zoo.bench.leaderboard import format_number, metric_value
from seqvae_zoo.bench.records import (STARTED_FILE, TAKEN_FILE, from_a_lost_training, is_complete, iw_progress_path,
                                      planned_steps, read_record)
from seqvae_zoo.errors import UserError
from seqvae_zoo.evaluation.saved_pass import claim_file, claimed_by_a_live_process, saved_pass_rate

HEADLINE_COLUMNS = 4
#: The fewest steps, or seconds, of a run's latest checkpoint interval whose rate stands for its time left: a slow
#: model (tens of seconds a step) gives a steady rate in fewer steps than a fast one.
RECENT_STEPS = 100
RECENT_SECONDS = 300.0


def campaign_status(results_dir: str | Path) -> str:
    """The status of every suite under ``results_dir`` (a ``--out`` folder or one suite's folder)."""
    results_dir = Path(results_dir)
    if (results_dir / "suite.json").is_file():
        roots = [results_dir]
    else:
        roots = sorted(p.parent for p in results_dir.glob("*/suite.json"))
    if not roots:
        raise UserError(f"no suite results in {str(results_dir)!r}: give the --out folder of `seqvae bench` (or one "
                        "suite's folder inside it)")
    return "\n\n".join(_suite_status(root) for root in roots)


def _suite_status(root: Path) -> str:
    description = json.loads((root / "suite.json").read_text())
    runs = description.get("runs")
    if runs is None:  # written before suite.json listed the runs: what the folders show
        runs = [{"model": r["model"], "dataset": r["dataset"]["name"], "seed": r.get("seed"), "key": r["run_key"],
                 "folder": r.get("training_folder", r["run_key"]), "record": p.name}
                for p in sorted((root / "records").glob("*.json")) if not (r := read_record(p)).get("baseline")]
        recorded = {run["folder"] for run in runs}
        runs += [{"model": None, "dataset": None, "seed": None, "key": d.name, "record": None}
                 for d in sorted((root / "runs").glob("*")) if d.is_dir() and d.name not in recorded]
    holder, since = _lock(root)
    states = _shared_trainings_once(root, runs, [_run_state(root, description, run, since) for run in runs])
    trained = [s["trained_s"] for s in states if s.get("trained_s")]
    projected = next((s["projected_s"] for s in states if s.get("projected_s")), None)
    per_pending = statistics.fmean(trained) if trained else projected  # a pending run's training; its evaluation below
    pending = sum((s["kind"] == "pending" and not s.get("scoring_only")) or s.get("unmeasured", False)
                  for s in states)
    basis = None if not pending or per_pending is None else (
        f"pending runs at the trained runs' mean training of {_duration(per_pending)}" if trained else
        f"pending runs at the running one's projected {_duration(per_pending)}")
    evaluations = [s["evaluation_s"] for s in states if s["kind"] == "done" and s.get("evaluation_s")]
    left = sum(s.get("left_s") or 0.0 for s in states)
    trainings_left = left + pending * (per_pending or 0.0)
    # evaluations with no rate of their own: a row scored from another's training, a trained row whose IW pass has
    # not begun (a bench trains every run before the first IW pass), and a run in training or still to train, each
    # evaluated after its training at the rate of its kind (a latent model's IW pass can cost more than its training)
    for state in states:
        state["evaluated_after"] = state.get("trains", False) or (state["kind"] == "pending"
                                                                  and not state.get("scoring_only"))
    estimate = _evaluation_estimates(states)
    evaluations_unknown = 0
    for flag, what in (("scoring_only", "sharing a training"), ("iw_unmeasured", "awaiting their IW pass"),
                       ("evaluated_after", "to be evaluated after training")):
        counts: dict[str, int] = {}
        for state in filter(lambda s: s.get(flag), states):
            seconds, at = estimate(state.get("exact", False))
            left += seconds or 0.0
            evaluations_unknown += seconds is None
            described = what if seconds is None else f"{what} at {at} of {_duration(seconds)}"
            counts[described] = counts.get(described, 0) + 1
        basis = ", ".join(filter(None, [basis, *(f"{count} {described}" for described, count in counts.items())]))
    done = sum(s["kind"] == "done" for s in states)
    counted = (f"{done} of {len(states)} runs done" if "runs" in description else
               f"{done} runs done (pending runs unknown: this suite.json predates run lists; the next `seqvae bench` "
               "of the suite writes them)")
    running = f"a bench is running ({holder})" if holder is not None else "no bench running"
    lines = [f"{description['name']}: {description.get('title', '')}", f"{counted}; {running}"]
    width = max((len(s["kind"]) for s in states), default=0)
    lines += [f"  {s['kind']:<{width}}  {s['label']}: {s['detail']}" for s in states]
    if pending and per_pending is None:
        lines.append("time left: unknown until a run has measured its rate")
    elif evaluations_unknown or (pending and not evaluations):
        alone = f"the trainings alone: about {_duration(trainings_left)}; " if trainings_left else ""
        lines.append(f"time left: unknown until an IW pass has measured its rate ({alone}{basis})")
    elif pending or left:
        total = left + pending * (per_pending or 0.0)
        workers = min(_workers(holder), len(states) - done)  # no wider than the runs still to finish
        longest = max((s.get("left_s") or 0.0 for s in states if s.get("trains")), default=0.0)
        lines.append(f"time left: about {_duration(total)}" + (f" ({basis})" if basis else "")
                     + _shared_by_workers(total, longest, workers))
    return "\n".join(lines)


def _shared_by_workers(total_s: float, longest_training_s: float, workers: int) -> str:
    """What ``workers`` make of one process's ``total_s``: a share each, but no less than the longest training
    left, which runs on one worker whatever the others do (IW passes, which workers share, do not bound it)."""
    if workers <= 1:
        return ""
    if longest_training_s > total_s / workers:
        return f"; {workers} workers: about {_duration(longest_training_s)}, the longest training left alone"
    return f"; {workers} workers share it: about {_duration(total_s / workers)}"


def _workers(holder: str | None) -> int:
    """The worker processes of the running bench, as its lock line says (one when none runs or it names none)."""
    match = re.search(r", (\d+) workers$", holder or "")
    return int(match.group(1)) if match else 1


def _evaluation_estimates(states: list[dict[str, Any]]):
    """What an evaluation still to come will take, as (seconds, basis) or (None, None), by its kind: a language
    model's exact pass costs one pass over the split, a latent model's IW pass K of them, so neither stands in for
    the other. A latent model's comes from the finished latent evaluations, else from the IW passes in progress
    (their seconds so far and their tokens left at their slowest rate per token); a row whose kind is not known yet
    counts as latent."""
    def mean(values: list[float]) -> float | None:
        return statistics.fmean(values) if values else None

    finished = {exact: mean([s["evaluation_s"] for s in states if s["kind"] == "done" and s.get("evaluation_s")
                             and s.get("exact", False) == exact]) for exact in (False, True)}
    projections = [s["iw_projected_s"] for s in states if s.get("iw_projected_s") and not s.get("exact", False)]

    def estimate(exact: bool) -> tuple[float | None, str | None]:
        kind = "language models'" if exact else "latent models'"
        if finished[exact] is not None:
            return finished[exact], f"the finished {kind} mean evaluation"
        if not exact and projections:
            return mean(projections), ("the IW pass in progress's projected whole pass" if len(projections) == 1
                                       else "the IW passes in progress's mean projected whole pass")
        return None, None
    return estimate


def _shared_trainings_once(root: Path, runs: list[dict[str, Any]], states: list[dict[str, Any]]
                           ) -> list[dict[str, Any]]:
    """Rows that share a training folder (scored differently) show its training once, on the first of them; the
    others, until their own evaluation begins, are pending with only their evaluation left (unless the first is
    done and its folder is gone, or holds a training begun again: then the training is theirs to do, or doing)."""
    first_of_folder: dict[str, dict[str, Any]] = {}
    for run, state in zip(runs, states):
        folder = run.get("folder", run["key"])
        twin = first_of_folder.setdefault(folder, state)
        trained = twin["kind"] != "done" or _training_finished(root / "runs" / folder)
        if twin is not state and (state.get("trains") or state["kind"] == "pending") and trained:
            state.update(kind="pending", scoring_only=True, trains=False, left_s=None, projected_s=None,
                         unmeasured=False,
                         detail=f"scored from the training of {twin['label']}: only its evaluation is left")
    return states


def _training_finished(run_dir: Path) -> bool:
    """Whether the run folder holds a whole training (not one begun again after its folder was lost)."""
    progress_path = run_dir / "progress.json"
    if not progress_path.is_file():
        return False
    progress = json.loads(progress_path.read_text())
    return progress["step"] >= planned_steps(progress)


def _run_state(root: Path, description: dict[str, Any], run: dict[str, Any], bench_since: float | None
               ) -> dict[str, Any]:
    label = (f"{run['model']} on {run['dataset']}, seed {run['seed']}" if run["model"] is not None else
             f"run {run['key']}")
    record_path = root / "records" / run["record"] if run.get("record") else None
    record = read_record(record_path) if record_path is not None and record_path.is_file() else None
    run_dir = root / "runs" / run.get("folder", run["key"])  # suite.json before shared trainings: its own key
    if record is not None and record.get("diverged"):
        diverged = record["diverged"]
        return {"kind": "done", "label": label, "detail": f"diverged at step {diverged['step']} (epoch "
                f"{diverged['epoch']}): {diverged['reason']}"}
    if record is not None and is_complete(record):
        return {"kind": "done", "label": label, "detail": _headline(description, record),
                "trained_s": record.get("training", {}).get("wall_seconds"),
                "evaluation_s": record.get("evaluation_seconds"), "exact": _exact(record)}
    if record is not None and not from_a_lost_training(record, run_dir):
        state = {"kind": "evaluating", "label": label, "trained_s": record.get("training", {}).get("wall_seconds"),
                 "exact": _exact(record),
                 **_evaluation_detail(iw_progress_path(root, run["record"], run_dir, run.get("checkpoint", "last")),
                                      description, record)}
        if bench_since is not None and not state.pop("workers_on_it"):
            state.update(kind="queued", detail=f"its IW pass waits for a worker; {state['detail']}")
        return state
    state = _training_state(run_dir, label, bench_since)
    if record is not None:  # a record whose training is gone: trained again, then all its columns computed again
        state.update(exact=_exact(record), detail=f"{state['detail']}; the training its record "
                     f"({_headline(description, record)}) came from is gone: trained again, every column is computed "
                     "again")
    return state


def _training_state(run_dir: Path, label: str, bench_since: float | None) -> dict[str, Any]:
    """A run without a record of its own training: in training (how far, at what rate) or pending."""
    progress_path = run_dir / "progress.json"
    if progress_path.is_file():
        state = {"kind": "training", "label": label, "trains": True,
                 **_training_detail(json.loads(progress_path.read_text()))}
        taken = run_dir / TAKEN_FILE
        if bench_since is not None and not (taken.is_file() and taken.stat().st_mtime >= bench_since):
            state.update(kind="queued", detail=f"begun, waits for a worker: {state['detail']}")
        return state
    if (run_dir / "metrics.csv").is_file():
        epochs = len((run_dir / "metrics.csv").read_text().strip().splitlines()) - 1
        return {"kind": "training", "label": label, "trains": True,
                "detail": f"{epochs} epochs done (no progress.json: rate unknown)"}
    started = run_dir / STARTED_FILE
    if started.is_file():  # begun, no checkpoint yet: in training if the running bench began it, else to begin again
        at = json.loads(started.read_text())["started_at"]
        if bench_since is not None and started.stat().st_mtime >= bench_since:
            return {"kind": "training", "label": label, "unmeasured": True, "trains": True,
                    "detail": f"started at {at}, before its first checkpoint"}
        return {"kind": "pending", "label": label,
                "detail": f"started at {at}, stopped before its first checkpoint: it starts again from the beginning"}
    return {"kind": "pending", "label": label, "detail": "not started"}


def _exact(record: dict[str, Any]) -> bool:
    """Whether the run's likelihood is exact (a model without latents): its evaluation is one pass, not K."""
    return not record.get("metrics", {}).get("kl")


def _headline(description: dict[str, Any], record: dict[str, Any]) -> str:
    values = []
    for column in description["columns"]:
        value = metric_value(record, column["metric"])
        if value is not None:
            values.append(f"{column['header']} {format_number(value, column.get('digits', 2))}")
    return ", ".join(values[:HEADLINE_COLUMNS]) or "no metrics"


def _seconds_per_step(progress: dict[str, Any]) -> tuple[float | None, str]:
    """The run's rate over its latest checkpoint interval where that is long enough to stand for the load it runs
    under now (an average over a run stopped and resumed beside other work mixes days of other loads), else over all
    its steps. With the rate, the words that say which it is."""
    recent = progress.get("recent") or {}  # progress.json before the interval was written: the average
    steps, seconds = recent.get("steps", 0), recent.get("seconds", 0.0)
    if progress["step"] > steps > 0 and seconds > 0 and (steps >= RECENT_STEPS or seconds >= RECENT_SECONDS):
        return recent["seconds"] / recent["steps"], f" at the rate of its last {recent['steps']:,} steps"
    return (progress["train_seconds"] / progress["step"] if progress["step"] else None), ""


def _training_detail(progress: dict[str, Any]) -> dict[str, Any]:
    total_steps = planned_steps(progress)
    per_step, basis = _seconds_per_step(progress)
    left = (total_steps - progress["step"]) * per_step if per_step else None
    valid = progress.get("last_valid_nll")
    timing = "time left unknown" if left is None else f"about {_duration(left)} left{basis}"
    detail = (f"epoch {min(progress['epoch'] + 1, progress['epochs'])} of {progress['epochs']}, step "
              f"{progress['step']:,} of {total_steps:,}, last validation NLL "
              f"{'–' if valid is None else f'{valid:.2f}'}, training {timing} (at the last checkpoint, "
              f"{progress['updated_at']})")
    return {"detail": detail, "left_s": left, "projected_s": per_step * total_steps if per_step else None}


def _evaluation_detail(path: Path, description: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    saved = json.loads(path.read_text()) if path.is_file() else {}
    values, batches = saved.get("values", []), saved.get("batches")
    work = saved.get("batch_tokens") or [1] * (batches or 0)  # a pass saved before tokens were: by batches
    finished = [index for index, batch in enumerate(values) if batch is not None]
    work_done = sum(work[index] for index in finished)
    rate = saved_pass_rate(saved, work_done)
    # the processes on the pass share what is left (at least the one that began it, when it runs)
    claimed = sum(claimed_by_a_live_process(claim_file(path, index)) for index in range(batches or 0))
    sharing = max(1, claimed)
    alone = rate * (sum(work) - work_done) if rate and batches else None  # one process's time
    left = alone / sharing if alone is not None else None
    projected = saved["seconds"] + alone if alone is not None else None  # a whole pass, for the passes to come
    where = f"{len(finished)} of {batches} batches done" if batches else "not started"
    if "batch_tokens" in saved:
        where += f" ({work_done / sum(work):.0%} of the tokens)"
    if sharing > 1:
        where += f", {sharing} workers on it"
    timing = f", about {_duration(left)} left" if left is not None else ""
    return {"detail": f"{_headline(description, record)}; IW-NLL {where}{timing}", "left_s": left,
            "iw_projected_s": projected, "iw_unmeasured": left is None, "workers_on_it": claimed}


def _lock(root: Path) -> tuple[str | None, float | None]:
    """The bench writing the folder now (its lock is held) as it describes itself, and when it took the lock (the
    file's modification time: the holder writes it then); (None, None) when no bench holds it."""
    path = root / "bench.lock"
    if not path.is_file():
        return None, None
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip(), path.stat().st_mtime
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None, None


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
