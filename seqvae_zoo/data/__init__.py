"""Corpora (registered datasets with checksums), vocabularies and tokenizers, and length-bucketed batching."""
