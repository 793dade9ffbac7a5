"""Load a registered dataset by name: ``load_dataset("ptb")``, ``load_dataset("text", train="my.txt")``."""

from __future__ import annotations

import inspect
from typing import Any

from seqvae_zoo.data.base import Corpus, DataError
from seqvae_zoo.data.files import resolve_data_dir
from seqvae_zoo.registry import DATASETS

__all__ = ["dataset_options", "load_dataset", "resolve_data_dir"]


def dataset_options(name: str) -> dict[str, Any]:
    """The keyword options a registered dataset accepts, with their defaults (``data_dir`` included)."""
    parameters = inspect.signature(DATASETS.get(name).__init__).parameters
    return {option: parameter.default for option, parameter in parameters.items()
            if option != "self" and parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD}


def load_dataset(name: str, data_dir: str | None = None, **options: Any) -> Corpus:
    """Load dataset ``name`` from ``data_dir`` (else ``$SEQVAE_DATA``, else the user cache directory).

    Options not given keep their gin bindings or defaults; an unknown name or option is a clear error.
    """
    accepted = dataset_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        listing = ", ".join(f"{option}={default!r}" for option, default in accepted.items() if option != "data_dir")
        raise DataError(f"dataset {name!r} has no option {', '.join(unknown)}; its options are: {listing or '(none)'}")
    return DATASETS.get(name)(data_dir=data_dir, **options).load()
