"""Named registries of interchangeable components.

A component is a class registered under a short name in the registry of its kind. Registering also makes the class
gin-configurable as ``<kind>.<name>`` (for example ``decoders.attentive``), so a gin file selects it with
``@decoders.attentive`` and sets its arguments with ``decoders.attentive.hidden_size = 256``.

Built-in components live one module per file in the package folder of their kind; every module of that folder is
imported on first use, so adding a file is all a new variant needs. Third-party packages add components through the
entry-point group ``seqvae_zoo.plugins``: each entry point names a module (or callable) that registers its classes
when imported; entry points are loaded on first use too.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Callable, Iterator, TypeVar

import gin

from seqvae_zoo.errors import UserError

PLUGIN_GROUP = "seqvae_zoo.plugins"

T = TypeVar("T", bound=type)


class RegistryError(UserError):
    """A registration was refused or a lookup failed; the message says what to do."""


class UnknownComponentError(RegistryError, KeyError):
    """A name that no component of that kind is registered under."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry:
    """Components of one kind, by name.

    ``base`` is the dotted path of the class every component must derive from (a path, so that the registry module
    needs no import of the components it holds); ``package`` is the folder of built-in components.
    """

    def __init__(self, kind: str, base: str, package: str, description: str):
        self.kind = kind
        self.description = description
        self._base_path = base
        self._package = package
        self._entries: dict[str, type] = {}

    # -- registration -------------------------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: register under ``name`` and make the class gin-configurable as ``kind.name``."""

        def decorate(cls: T) -> T:
            base = self.base_class()
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise RegistryError(
                    f"cannot register {cls!r} as {self.kind} {name!r}: {self.kind} must subclass "
                    f"{base.__module__}.{base.__qualname__}"
                )
            if not name.isidentifier():
                raise RegistryError(
                    f"cannot register {cls.__module__}.{cls.__qualname__} as {self.kind} {name!r}: gin selects it as "
                    f"{self.kind}.<name>, so the name must be a Python identifier (for example "
                    f"{''.join(c if c.isalnum() else '_' for c in name)!r})"
                )
            if name in self._entries:
                other = self._entries[name]
                raise RegistryError(
                    f"{self.kind} {name!r} is already registered by {other.__module__}.{other.__qualname__}; "
                    f"choose another name for {cls.__module__}.{cls.__qualname__}"
                )
            configurable = gin.configurable(name, module=self.kind)(cls)
            configurable.registry_name = name
            self._entries[name] = configurable
            return configurable

        return decorate

    def base_class(self) -> type:
        module, _, attr = self._base_path.rpartition(".")
        return getattr(importlib.import_module(module), attr)

    # -- lookup -------------------------------------------------------------------------------------------------
    def get(self, name: str) -> type:
        load_components()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self._unknown_message(name)) from None

    def names(self) -> list[str]:
        load_components()
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, type]]:
        for name in self.names():
            yield name, self._entries[name]

    def __contains__(self, name: object) -> bool:
        load_components()
        return name in self._entries

    def _unknown_message(self, name: str) -> str:
        known = sorted(self._entries)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        kind = self.kind[:-1] if self.kind.endswith('s') else self.kind
        return f"unknown {kind} {name!r}.{hint} Registered {self.kind}: {', '.join(known) or '(none)'}."


ENCODERS = Registry("encoders", "seqvae_zoo.encoders.base.Encoder", "seqvae_zoo.encoders",
                    "read a sentence; give per-step states and q(z_enc|x)")
DECODERS = Registry("decoders", "seqvae_zoo.decoders.base.Decoder", "seqvae_zoo.decoders",
                    "predict each next token: recurrent (deterministic, stochastic, attentive) or Transformer")
CELLS = Registry("cells", "seqvae_zoo.cells.base.RecurrentCell", "seqvae_zoo.cells",
                 "recurrence cells of the stochastic and attentive decoders: one step from gate pre-activations")
LATENTS = Registry("latents", "seqvae_zoo.latents.base.LatentFamily", "seqvae_zoo.latents",
                   "the kind of distribution z_enc has: sample, log-density, KL, mean")
PRIORS = Registry("priors", "seqvae_zoo.priors.base.Prior", "seqvae_zoo.priors",
                  "the prior p(z_enc) over the sentence latent, of the encoder's latent family; may hold parameters "
                  "and call the encoder")
AUX_LOSSES = Registry("aux_losses", "seqvae_zoo.aux_losses.base.AuxiliaryLoss", "seqvae_zoo.aux_losses",
                      "extra terms of the objective, with a weight")
KL_SCHEDULES = Registry("kl_schedules", "seqvae_zoo.schedules.base.WeightSchedule", "seqvae_zoo.schedules",
                        "weights of KL and auxiliary terms over training")
REGULARIZERS = Registry("regularizers", "seqvae_zoo.regularizers.base.Regularizer", "seqvae_zoo.regularizers",
                        "changes to inputs or loss terms during training (free bits, word dropout)")
PROCEDURES = Registry("procedures", "seqvae_zoo.training.procedures.base.Procedure", "seqvae_zoo.training.procedures",
                      "how a training step learns from the batches (standard, aggressive, pretrain-reset, SVI)")
DATASETS = Registry("datasets", "seqvae_zoo.data.base.Dataset", "seqvae_zoo.data",
                    "corpora with checksums and splits")

REGISTRIES: dict[str, Registry] = {r.kind: r for r in
                                   (ENCODERS, LATENTS, DECODERS, CELLS, PRIORS, AUX_LOSSES, KL_SCHEDULES, REGULARIZERS,
                                    PROCEDURES, DATASETS)}

_loaded = False


def add_registry(registry: Registry) -> Registry:
    """Add a registry of a new kind (the summarization package adds sentence representations and rankers).

    Where the built-in components are loaded already, the new registry's folder is imported at once, so its
    components are there whenever the registry was added. Its modules may then run while the module adding the
    registry is still executing: they must find the registry bound to its name before this call.
    """
    if registry.kind in REGISTRIES:
        raise RegistryError(f"a registry of kind {registry.kind!r} already exists")
    REGISTRIES[registry.kind] = registry
    if _loaded:
        _import_folder(registry._package)
    return registry


#: Packages of this one that add registries of their own kinds (with :func:`add_registry`) when imported.
REGISTRY_PACKAGES = ("seqvae_zoo.summarization",)


def load_components() -> None:
    """Import every built-in component module, then every plugin entry point (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package in REGISTRY_PACKAGES:
        importlib.import_module(package)
    for registry in list(REGISTRIES.values()):
        _import_folder(registry._package)
    load_plugins()


def _import_folder(package_name: str) -> None:
    package = importlib.import_module(package_name)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")


_plugins_loaded: set[str] = set()


def load_plugins() -> None:
    """Load the entry points of group ``seqvae_zoo.plugins`` that are not loaded yet."""
    for entry in entry_points(group=PLUGIN_GROUP):
        key = f"{entry.name}={entry.value}"
        if key in _plugins_loaded:
            continue
        _plugins_loaded.add(key)
        try:
            loaded = entry.load()
        except Exception as error:  # a broken plugin must not hide which one it was
            raise RegistryError(f"plugin {entry.name!r} ({entry.value}) failed to load: {error}") from error
        if callable(loaded) and not isinstance(loaded, type):
            loaded()
