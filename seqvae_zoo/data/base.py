"""The dataset interface (placeholder base class until the corpora land)."""


class Dataset:
    """A registered corpus."""
