"""Benchmark suites: TOML files naming models (presets plus bindings), datasets, seeds and the table to print.

A suite file (``benchmarks/suites/<name>.toml``, installed as ``seqvae_zoo.suites``)::

    title = "..."
    datasets = ["synthetic"]
    seeds = [0, 1]
    epochs = 5
    bindings = ["HIDDEN = 128"]            # for every model
    [evaluation]
    split = "test"
    iw_samples = 100
    [[models]]
    name = "VRAE-SA w aux"
    configs = ["vrae_sa_aux"]
    bindings = []                          # this model only
    evaluation = { ranker = "query" }      # this model's summarization ranker, over [evaluation]'s
    starts_first = true                    # with several workers, its training begins at once on a worker of its
                                           # own while the others go through the rest in order (a row that alone
                                           # takes longer than the rest; with one worker the order above holds)
    [[models]]
    name = "VRAE-SA w aux, best validation epoch"
    configs = ["vrae_sa_aux"]
    evaluation = { checkpoint = "best" }   # score the best validation epoch, not the last (trains once with
                                           # every row that trains alike)
    [[columns]]                            # without any, DEFAULT_COLUMNS of the evaluation's kind
    header = "IW-NLL"
    metric = "iw.nll"                      # dotted path into a record's "metrics"
    [[references]]                         # published rows, printed above ours
    model = "VRAE-SA w aux"
    source = "Chien & Wang 2019, Table 1"
    values = { "paper.nll" = 99.19 }
    [[references]]                         # another protocol: a table of its own, below ours
    model = "VAE"
    source = "Someone et al. 2020, Table 2"
    protocol = "IW-NLL, K = 100, end-of-sentence not counted"
    apart = true
    values = { "NLL" = 101.0 }             # named as the paper names them

A summarization suite sets ``[evaluation] kind = "summarization"`` and may list untrained ``baselines``
(``["lda", "lead", "random"]``), scored once per dataset (see :mod:`seqvae_zoo.bench.evaluations`).

Relative paths in a suite file (``data_dir``, a model's ``.gin`` configs, a dataset's file options such as
``[dataset_options.text] train = "corpus.txt"``) are read from the suite file's folder, whatever the working
directory; one that is not there is read as written, from the working directory.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from seqvae_zoo.errors import UserError
from seqvae_zoo.registry import DATASETS, load_components


class SuiteError(UserError):
    """A suite file is missing or malformed."""


#: What a model may change of the suite's [evaluation]: settings that keep the suite's metric protocol.
MODEL_EVALUATION_KEYS = ("ranker", "checkpoint")
#: Which of a run's checkpoints is scored (``[evaluation] checkpoint``): the last epoch's (the default) or the one
#: with the best validation -ELBO, as early stopping would keep.
CHECKPOINTS = ("last", "best")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    configs: tuple[str, ...]
    bindings: tuple[str, ...] = ()
    evaluation: tuple[tuple[str, Any], ...] = ()
    starts_first: bool = False  # how workers schedule it, not what it computes: no part of its key


#: What a suite's [[models]] entry may hold.
MODEL_KEYS = ("name", "configs", "bindings", "evaluation", "starts_first")


@dataclass(frozen=True)
class Column:
    header: str
    metric: str
    digits: int = 2


#: The table of a suite that lists no [[columns]], by its evaluation kind: the honest bounds and what the latent
#: carries for a language-model suite (a model without a metric shows a dash), ROUGE recall and F for summaries.
DEFAULT_COLUMNS = {
    "language_model": (Column("IW-NLL (EOS counted)", "iw.nll"), Column("ELBO-NLL (EOS counted)", "elbo.nll"),
                       Column("KL z_enc", "kl.z_enc"), Column("KL z_t", "kl.z_t"),
                       Column("MI (aggregate posterior)", "latent.mi"), Column("AU (Var mu > 0.01)", "latent.au", 0),
                       Column("PPL (IW, per token, EOS counted)", "iw.ppl"),
                       Column("train s", "training.wall_seconds", 0)),
    "summarization": (Column("R-1 Recall", "rouge1.recall", 3), Column("R-1 F", "rouge1.f", 3),
                      Column("R-2 Recall", "rouge2.recall", 4), Column("R-SU4 Recall", "rougeSU4.recall", 4)),
}


@dataclass
class Suite:
    name: str
    title: str
    models: list[ModelSpec]
    datasets: list[str]
    seeds: list[int]
    epochs: int | None
    max_steps: int | None
    bindings: list[str]
    dataset_options: dict[str, dict[str, Any]]
    evaluation: dict[str, Any]
    columns: list[Column]
    references: list[dict[str, Any]] = field(default_factory=list)
    baselines: list[str] = field(default_factory=list)
    data_dir: str | None = None

    def training_bindings(self, model: ModelSpec) -> list[str]:
        """The gin bindings a run of ``model`` trains with: the suite's, the model's, then the suite's epochs."""
        bindings = [*self.bindings, *model.bindings]
        if self.epochs is not None:
            bindings.append(f"training.TrainingSettings.epochs = {self.epochs}")
        return bindings

    def evaluation_for(self, model: ModelSpec) -> dict[str, Any]:
        """The suite's [evaluation] with the model's own settings over it."""
        return {**self.evaluation, **dict(model.evaluation)}

    def scored_checkpoint(self, model: ModelSpec) -> str:
        return self.evaluation_for(model).get("checkpoint", CHECKPOINTS[0])

    def runs(self) -> list[tuple[ModelSpec, str, int]]:
        """Every (model, dataset, seed) of the suite, in the order they run."""
        return [(model, dataset, seed) for dataset in self.datasets for model in self.models for seed in self.seeds]


def suites_dir() -> Path:
    return Path(str(resources.files("seqvae_zoo.suites")))


def suite_names() -> list[str]:
    return sorted(p.stem for p in suites_dir().glob("*.toml"))


def load_suite(name_or_path: str) -> Suite:
    """A shipped suite by name (``quick``) or a suite file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = suites_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            close = difflib.get_close_matches(name_or_path, suite_names(), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise SuiteError(f"unknown suite {name_or_path!r}.{hint} Suites: {', '.join(suite_names())}; or give "
                             "the path of a .toml suite file")
    if not path.is_file():
        raise SuiteError(f"suite file {str(path)!r} does not exist")
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8-sig"))  # a byte-order mark some editors write is no key
    except UnicodeDecodeError as error:
        raise SuiteError(f"suite file {str(path)!r} is not UTF-8 text ({error.reason} at byte {error.start}): save "
                         "it as UTF-8") from None
    except tomllib.TOMLDecodeError as error:
        raise SuiteError(f"suite file {str(path)!r} is not valid TOML: {error}") from None
    return _with_paths_from(path.parent.resolve(), _parse(path.stem, raw, str(path)))


def _with_paths_from(folder: Path, suite: Suite) -> Suite:
    """The suite with the relative paths it names (its data_dir, .gin configs, the path options of its datasets,
    such as the text dataset's files) taken from the suite file's ``folder`` where they are found there, so that a
    suite runs from any working directory; a path not found there is kept as written (the working directory's)."""

    def located(value: Any) -> Any:
        if not isinstance(value, str) or Path(value).expanduser().is_absolute():
            return value
        beside = folder / value
        return str(beside) if beside.exists() else value

    def config(name: str) -> str:
        return located(name) if name.endswith(".gin") else name  # otherwise a preset's name

    options = {dataset: {key: located(value) if key in _path_options(dataset) else value
                         for key, value in chosen.items()}
               for dataset, chosen in suite.dataset_options.items()}
    models = [replace(model, configs=tuple(map(config, model.configs))) for model in suite.models]
    return replace(suite, models=models, dataset_options=options,
                   data_dir=located(suite.data_dir) if suite.data_dir else suite.data_dir)


def _path_options(dataset: str) -> tuple[str, ...]:
    """The options of a registered dataset that name files (none for a name the registry does not know: the bench
    refuses it when it loads the data)."""
    load_components()
    return getattr(DATASETS.get(dataset), "path_options", ()) if dataset in DATASETS else ()


def _parse(name: str, raw: dict[str, Any], where: str) -> Suite:
    known = {"title", "models", "datasets", "seeds", "epochs", "max_steps", "bindings", "dataset_options",
             "evaluation", "columns", "references", "baselines", "data_dir"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SuiteError(f"{where}: unknown key(s) {', '.join(unknown)}; a suite has {', '.join(sorted(known))}")
    try:
        models = [ModelSpec(m["name"], tuple(m["configs"]), tuple(m.get("bindings", ())),
                            tuple(sorted(dict(m.get("evaluation", {})).items())), m.get("starts_first", False))
                  for m in raw["models"]]
        columns = ([Column(c["header"], c["metric"], int(c.get("digits", 2))) for c in raw["columns"]]
                   if "columns" in raw else
                   list(DEFAULT_COLUMNS.get(dict(raw.get("evaluation", {})).get("kind"),
                                            DEFAULT_COLUMNS["language_model"])))
        datasets = list(raw["datasets"])
    except (KeyError, TypeError, AttributeError) as error:
        raise SuiteError(f"{where}: every suite needs models (each with name and configs) and datasets; columns, "
                         f"if given, each have a header and a metric; missing or malformed: {error}") from None
    for entry, model in zip(raw["models"], models):
        unknown = sorted(set(entry) - set(MODEL_KEYS))
        if unknown:
            raise SuiteError(f"{where}: model {model.name!r} has unknown key(s) {', '.join(unknown)}; a model has "
                             f"{', '.join(MODEL_KEYS)}")
        if not isinstance(model.starts_first, bool):
            raise SuiteError(f"{where}: model {model.name!r} sets starts_first = {model.starts_first!r}; write true "
                             "or false")
        changed = sorted(set(dict(model.evaluation)) - set(MODEL_EVALUATION_KEYS))
        if changed:
            raise SuiteError(f"{where}: model {model.name!r} sets evaluation {', '.join(changed)}; a model may set "
                             f"only {', '.join(MODEL_EVALUATION_KEYS)} (the rest is the suite's, so that its rows "
                             "share one protocol)")
    for scope, evaluation in [("[evaluation]", raw.get("evaluation", {})),
                              *((f"model {m.name!r}", dict(m.evaluation)) for m in models)]:
        if evaluation.get("checkpoint", CHECKPOINTS[0]) not in CHECKPOINTS:
            raise SuiteError(f"{where}: {scope} sets checkpoint = {evaluation['checkpoint']!r}; use \"last\" (the "
                             "last epoch's weights, the default) or \"best\" (the best validation epoch's)")
    for reference in raw.get("references", []):
        missing = [key for key in ("model", "source", "values", *(("protocol",) if reference.get("apart") else ()))
                   if key not in reference]
        if missing:
            raise SuiteError(f"{where}: reference {reference.get('model', '(unnamed)')!r} lacks {', '.join(missing)}; "
                             "a reference names its model, source (paper and table) and values, and one shown apart "
                             "(apart = true: measured under another protocol) says which protocol")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise SuiteError(f"{where}: model names must be unique, got {names}")
    return Suite(name=name, title=raw.get("title", name), models=models, datasets=datasets,
                 seeds=[int(s) for s in raw.get("seeds", [0])], epochs=raw.get("epochs"),
                 max_steps=raw.get("max_steps"), bindings=list(raw.get("bindings", [])),
                 dataset_options=dict(raw.get("dataset_options", {})), evaluation=dict(raw.get("evaluation", {})),
                 columns=columns, references=list(raw.get("references", [])),
                 baselines=list(raw.get("baselines", [])), data_dir=raw.get("data_dir"))
