"""seqvae_zoo: a pluggable model zoo for sequence VAEs on PyTorch.

Build a preset::

    from seqvae_zoo import parse_config, build_model
    parse_config(["vrae_sa_aux"])
    model = build_model(vocab_size=10002, pad_id=0, bos_id=1, unk_id=3, eos_id=2)

The names below are imported on first use, so that importing the package does not load torch: the ``seqvae``
command sets OpenMP's waiting before torch's runtime reads it (:mod:`seqvae_zoo.training.openmp`).
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("seqvae-zoo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

_EXPORTS = {
    "seqvae_zoo.model": ["LossTerms", "SeqVAE"],
    "seqvae_zoo.presets": ["ConfigError", "build_model", "parse_config", "preset_names"],
    "seqvae_zoo.registry": ["AUX_LOSSES", "DATASETS", "DECODERS", "ENCODERS", "KL_SCHEDULES", "PRIORS", "REGISTRIES",
                            "REGULARIZERS", "RegistryError", "UnknownComponentError"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF) + ["__version__"]


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'seqvae_zoo' has no attribute {name!r}")
    value = getattr(import_module(_MODULE_OF[name]), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
