"""What a run writes as it goes: a progress bar, TensorBoard events, a CSV of epochs and learning-curve plots."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from seqvae_zoo.atomic import write_text_atomically

LOG_EVERY = 10  # steps between TensorBoard scalars and progress-bar updates


class RunLog:
    """Progress bar (when ``enabled``), TensorBoard event files, ``metrics.csv`` and ``learning_curves.png``.

    The TensorBoard event file is opened at the first value logged, so a run that stops before it trains (a
    checkpoint refused on resume, say) leaves its folder as it found it."""

    def __init__(self, out_dir: Path, enabled: bool = True):
        self.out_dir = out_dir
        self.enabled = enabled
        self._writer = None

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out_dir / "tensorboard"))
        return self._writer

    def progress(self, epoch: int, epochs: int, steps_per_epoch: int, sampler_state: dict[str, int]):
        return tqdm(total=steps_per_epoch, initial=sampler_state.get("position", 0), disable=not self.enabled,
                    desc=f"epoch {epoch + 1}/{epochs}", unit="batch", dynamic_ncols=True, leave=False)

    def step(self, bar, step: int, terms, weights: dict[str, float], tokens_per_s: float, lr: float) -> None:
        bar.update(1)
        if step % LOG_EVERY:
            return
        values = {"nll": float(terms.nll.mean())}
        values.update({f"kl_{k}": float(v.mean()) for k, v in terms.kl.items()})
        values.update({f"aux_{k}": float(v.mean()) for k, v in terms.aux.items()})
        for name, value in values.items():
            self.writer.add_scalar(f"train/{name}", value, step)
        for name, value in weights.items():
            self.writer.add_scalar(f"weight/{name}", value, step)
        self.writer.add_scalar("train/tokens_per_s", tokens_per_s, step)
        self.writer.add_scalar("train/lr", lr, step)
        bar.set_postfix({**{k: f"{v:.2f}" for k, v in values.items()}, "tok/s": f"{tokens_per_s:,.0f}"},
                        refresh=False)

    def epoch(self, row: dict[str, float], history: list[dict[str, Any]]) -> None:
        for name, value in row.items():
            if name not in ("epoch", "step") and isinstance(value, (int, float)):  # not "2, then 1" processes
                self.writer.add_scalar(f"epoch/{name}", value, int(row["epoch"]))
        self.writer.flush()
        _write_csv_atomically(self.out_dir / "metrics.csv", history)
        plot_learning_curves(history, self.out_dir / "learning_curves.png")
        if self.enabled:
            shown = {k: v for k, v in row.items() if k.startswith("valid_") or k in ("epoch", "tokens_per_s")}
            tqdm.write("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _write_csv_atomically(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomically(path, buffer.getvalue())


def plot_learning_curves(history: list[dict[str, Any]], path: Path) -> None:
    """NLL, KL terms and KL weights per epoch, train and validation, like the paper's curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    panels = [("NLL per sentence", ("train_nll", "valid_nll")),
              ("KL per sentence", tuple(k for k in history[-1] if "_kl_" in k)),
              ("weights", tuple(k for k in history[-1] if k.startswith("weight_")))]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for axis, (title, keys) in zip(axes, panels):
        for key in keys:
            axis.plot(epochs, [row.get(key, float("nan")) for row in history], marker="o", label=key)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        if keys:
            axis.legend(fontsize=7)
    figure.tight_layout()
    temporary = path.with_name(f".tmp-{path.name}")
    figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)
    os.replace(temporary, path)
