"""seqvae_zoo: a pluggable model zoo for sequence VAEs on PyTorch.

Build a preset::

    from seqvae_zoo import parse_config, build_model
    parse_config(["vrae_sa_aux"])
    model = build_model(vocab_size=10002, pad_id=0, bos_id=1, unk_id=3, eos_id=2)
"""

from importlib.metadata import PackageNotFoundError, version

from seqvae_zoo.model import LossTerms, SeqVAE
from seqvae_zoo.presets import ConfigError, build_model, parse_config, preset_names
from seqvae_zoo.registry import (AUX_LOSSES, DATASETS, DECODERS, ENCODERS, KL_SCHEDULES, PRIORS, REGISTRIES,
                                 REGULARIZERS, RegistryError, UnknownComponentError)

try:
    __version__ = version("seqvae-zoo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = ["AUX_LOSSES", "DATASETS", "DECODERS", "ENCODERS", "KL_SCHEDULES", "PRIORS", "REGISTRIES", "REGULARIZERS",
           "ConfigError", "LossTerms", "RegistryError", "SeqVAE", "UnknownComponentError", "build_model",
           "parse_config", "preset_names", "__version__"]
