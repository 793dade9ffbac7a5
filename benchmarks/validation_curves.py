"""Validation curves per epoch from a results folder's records, one PNG per suite and dataset.

Every record keeps its run's epoch rows (``training.history``, the rows of the run's ``metrics.csv``), so the curves
are drawn from the committed records alone, without the run folders and their checkpoints:

    python benchmarks/validation_curves.py benchmarks/results            # writes <suite>/validation-<dataset>.png

Left: the reconstruction NLL per sentence (the ELBO's first term); right: the -ELBO per sentence. Solid lines are the
validation split, dashed lines of the same colour the training epoch's running mean, so the gap between the two shows
how far a model overfits. Several seeds of a model are drawn as one line of their mean; a row scored from another
row's training (at its best validation epoch), or whose training drew the same values as an earlier row's, is not
drawn again. A panel whose values span more than a factor of WIDE_RANGE (a run that ran away beside runs that did
not) has a logarithmic axis, so that the others are not flattened into one line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from seqvae_zoo.bench.leaderboard import load_results  # noqa: E402
from seqvae_zoo.errors import UserError  # noqa: E402

#: (validation key, training key, title) of each panel.
PANELS = (("valid_nll", "train_nll", "NLL per sentence"), ("valid_neg_elbo", "train_neg_elbo", "-ELBO per sentence"))
WIDE_RANGE = 3.0
#: The panels end here, as a fraction of the figure's width; the legend of every line starts here (the saved image
#: is cut to what was drawn).
PANELS_WIDTH = 0.75


#: Markers of the validation lines, one per round of the palette: a colour that comes round again (more than 20
#: models) comes with another marker.
MARKERS = ("o", "s", "^", "D", "v")


def line_styles(count: int) -> list[tuple[tuple[float, ...], str]]:
    """A (colour, marker) per model, no two alike: matplotlib's ten colours while they suffice; beyond ten, the 20
    of tab20, its dark shades first so that a model and its neighbour in the suite's order differ in hue, not only in
    shade (the default cycle would give the eleventh model the first one's colour)."""
    if count <= 10:
        palette = list(plt.get_cmap("tab10").colors)
    else:
        shades = plt.get_cmap("tab20").colors
        palette = list(shades[0::2] + shades[1::2])
    return [(palette[i % len(palette)], MARKERS[i // len(palette) % len(MARKERS)]) for i in range(count)]


def y_scale(values: list[float]) -> str:
    """"log" for positive values spanning more than WIDE_RANGE, else "linear"."""
    low, high = min(values), max(values)
    return "log" if low > 0 and high / low > WIDE_RANGE else "linear"


def mean_curve(histories: list[list[dict]], key: str) -> tuple[list[int], list[float]]:
    """Epochs every history reached, and the mean of ``key`` over the histories at each."""
    epochs = min(len(history) for history in histories)
    return (list(range(1, epochs + 1)),
            [statistics.fmean(float(history[e][key]) for history in histories) for e in range(epochs)])


def drawn_values(histories: list[list[dict]]) -> list[list[tuple]]:
    """What a curve draws of its histories: the panels' values per epoch (not the timings, which differ between two
    trainings that are otherwise the same)."""
    keys = [key for panel in PANELS for key in panel[:2]]
    return [[tuple(row[key] for key in keys) for row in history] for history in histories]


def curves_of(models: list[str], trained: list[dict], dataset: str) -> list[tuple[str, list[list[dict]]]]:
    """Each model's label and epoch histories on ``dataset``, in the suite's order. A row scored from trainings an
    earlier row already shows (a best-epoch row beside its last-epoch twin: the same ``training_folder``) is left
    out: its curve is its twin's. A row whose trainings of its own drew exactly an earlier row's values (two
    trainings the same to the bit) is not drawn on top of it, where it would hide: the earlier line's label names
    both."""
    curves: list[list] = []
    shown: set = set()
    for model in models:
        runs = [r for r in trained if r["model"] == model and r["dataset"]["name"] == dataset]
        trainings = {r.get("training_folder") or r.get("run_key") or id(r) for r in runs}
        if runs and not trainings <= shown:
            histories = [r["training"]["history"] for r in runs]
            same = [curve for curve in curves if drawn_values(curve[1]) == drawn_values(histories)]
            if same:
                same[0][0] += f" = {model}"
            else:
                curves.append([model, histories])
        shown |= trainings
    return [(label, histories) for label, histories in curves]


def draw(results_dir: Path) -> list[Path]:
    written = []
    for description, records in load_results(results_dir):
        trained = [r for r in records if r.get("training", {}).get("history")]
        for dataset in dict.fromkeys(r["dataset"]["name"] for r in trained):
            figure, axes = plt.subplots(1, len(PANELS), figsize=(13, 4))
            drawn: list[list[float]] = [[] for _ in PANELS]
            curves = curves_of(description["models"], trained, dataset)
            for (model, histories), (color, marker) in zip(curves, line_styles(len(curves))):
                for axis, values, (valid_key, train_key, _) in zip(axes, drawn, PANELS):
                    valid, train = mean_curve(histories, valid_key), mean_curve(histories, train_key)
                    axis.plot(*valid, marker=marker, markersize=3, color=color, label=f"{model} (valid)")
                    axis.plot(*train, linestyle="--", color=color, label=f"{model} (train)")
                    values += valid[1] + train[1]
            for axis, values, (_, _, title) in zip(axes, drawn, PANELS):
                if values:
                    axis.set_yscale(y_scale(values))
                axis.set_title(title)
                axis.set_xlabel("epoch")
                axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            handles, labels = axes[0].get_legend_handles_labels()  # the panels share their lines' labels
            figure.set_figheight(max(4.0, 0.15 * len(labels) + 0.8))
            figure.legend(handles, labels, loc="center left", bbox_to_anchor=(PANELS_WIDTH, 0.5), fontsize=7)
            figure.suptitle(f"{description['title']}: {dataset}", fontsize=9)
            figure.tight_layout(rect=(0, 0, PANELS_WIDTH, 1))
            path = results_dir / description["name"] / f"validation-{dataset}.png"
            figure.savefig(path, dpi=110, bbox_inches="tight")
            plt.close(figure)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a results folder written by `seqvae bench --out`")
    args = parser.parse_args(argv)
    try:
        for path in draw(args.results):
            print(path)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
