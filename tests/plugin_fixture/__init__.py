"""Test helpers for components registered during a test: a throwaway plugin distribution, and an undo of every
registration so that later tests see the registries (and gin's) as they were.

Importable from the test modules because pytest puts ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Iterator

import gin
import gin.config
import pytest

from seqvae_zoo import registry
from seqvae_zoo.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DECODER = REPO / "examples" / "gru_decoder" / "gru_decoder.py"
EXAMPLE_GIN = REPO / "examples" / "gru_decoder" / "vrae_gru.gin"


@contextlib.contextmanager
def isolated_registrations(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Everything registered inside the block is forgotten after it: registry entries, gin configurables, the
    registry's record of loaded plugins, and the modules that made the registrations (so that importing them again
    registers again)."""
    # Import all of the package first (built-in components, every command and what it imports), so that nothing of
    # it is first imported, and registered, inside the block.
    registry.load_components()
    build_parser()
    for kind_registry in registry.REGISTRIES.values():
        monkeypatch.setattr(kind_registry, "_entries", dict(kind_registry._entries))
    monkeypatch.setattr(registry, "_plugins_loaded", set(registry._plugins_loaded))
    gin_before = _gin_selectors()
    try:
        yield
    finally:
        for selector in _gin_selectors() - gin_before:
            configurable = gin.config._REGISTRY.pop(selector)
            gin.config._INVERSE_REGISTRY.pop(configurable.wrapped, None)
            sys.modules.pop(configurable.wrapped.__module__, None)
        gin.clear_config()


def _gin_selectors() -> set[str]:
    return {selector for selector, _ in gin.config._REGISTRY.items()}


def install_plugin(site: Path, distribution: str, entry_points: dict[str, str],
                   modules: dict[str, str]) -> None:
    """Write an installed-looking distribution into ``site``: its modules, and a dist-info whose entry_points.txt
    names ``entry_points`` (name -> "module" or "module:callable") in the group ``seqvae_zoo.plugins``."""
    site.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)
    dist_info = site / f"{distribution}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    lines = [f"[{registry.PLUGIN_GROUP}]"] + [f"{name} = {value}" for name, value in entry_points.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
