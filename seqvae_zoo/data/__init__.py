"""Corpora (registered datasets with checksums), vocabularies and tokenizers, and length-bucketed batching.

- ``base``: :class:`Dataset` (base of every registered dataset), :class:`Corpus` (what loading gives), ``DataError``.
- ``files``: datasets read from files: the data directory, MD5 checks, downloads, messages for missing files.
- ``loading``: :func:`load_dataset` by registered name.
- one module per dataset: ``ptb``, ``yelp`` (``yelp13``, ``yelp13_reduced``), ``text``, ``synthetic``, ``duc2007``
  (``duc2005``, ``duc2006``, ``duc2007``).
- ``vocab``: word and sentencepiece vocabularies; ``batching``: the bucketing sampler, collation, the DataLoader.
"""

from seqvae_zoo.data.base import Corpus, DataError, Dataset
from seqvae_zoo.data.loading import dataset_options, load_dataset, resolve_data_dir

__all__ = ["Corpus", "DataError", "Dataset", "dataset_options", "load_dataset", "resolve_data_dir"]
