"""The built wheel: installed outside the source tree, it has every subpackage, the presets and the suites, and its
`seqvae` command works.

The wheel is built from a copy of the working tree (setuptools' in-place build/ folder could otherwise carry stale
files into it) and installed with ``pip install --target``; Python then runs from a folder outside the repository
with only that target on PYTHONPATH, so the installed copy is what gets imported.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from test_presets_cli import PRESETS

REPO = Path(__file__).resolve().parents[1]
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", ".ci-venv", "build", "dist", "runs", "bench-results",
                                     "*.egg-info", "__pycache__", ".pytest_cache")

INSTALLED_CHECK = """
import json, sys
import torch
import seqvae_zoo, seqvae_zoo.suites
from importlib import resources
from seqvae_zoo import build_model, parse_config, preset_names

parse_config(["vrae_sa_aux"], ["EMBEDDING = 8", "HIDDEN = 8", "LATENT = 4"])
model = build_model(vocab_size=12, pad_id=0, bos_id=1, unk_id=3, eos_id=2)
terms = model(torch.tensor([[5, 6, 2], [7, 2, 0]]), torch.tensor([3, 2]))
print(json.dumps({
    "file": seqvae_zoo.__file__,
    "version": seqvae_zoo.__version__,
    "presets": preset_names(),
    "suites": sorted(p.name for p in resources.files("seqvae_zoo.suites").iterdir() if not p.name.startswith("_")),
    "loss": model.objective(terms, {}).item(),
}))
"""


def test_the_declared_python_and_torch_are_what_ci_installs_and_the_tests_run():
    """pyproject's torch range holds the torch .ci/run pins and the one these tests run on, and the README and the
    quickstart state that range; its Python floor admits the interpreter running them."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = next(d for d in project["dependencies"] if Requirement(d).name == "torch")
    torch_range = Requirement(declared).specifier
    pinned = re.search(r"torch==([\d.]+)", (REPO / ".ci" / "run").read_text()).group(1)
    assert torch_range.contains(pinned) and torch_range.contains(torch.__version__.split("+")[0])
    for doc in ("README.md", "docs/quickstart.md"):
        assert f"`{declared}`" in (REPO / doc).read_text(), doc
    assert SpecifierSet(project["requires-python"]).contains(platform.python_version())


def source_packages() -> set[str]:
    """Every folder with an __init__.py under seqvae_zoo/, as a dotted name."""
    return {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "seqvae_zoo").rglob("__init__.py")
            if "__pycache__" not in init.parts}


def mapped_package_data() -> dict[str, list[Path]]:
    """The files pyproject maps into the package from outside it (presets, suites), by their path in the wheel."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    files = {}
    for package, folder in setuptools["package-dir"].items():
        for pattern in setuptools["package-data"][package]:
            for path in (REPO / folder).glob(pattern):
                files[f"{package.replace('.', '/')}/{path.name}"] = path
    return files


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("packaging")
    shutil.copytree(REPO, root / "source", ignore=NOT_SOURCES)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "wheel"),
                          str(root / "source")], check=True, capture_output=True)
    (wheel,) = (root / "wheel").glob("seqvae_zoo-*.whl")
    subprocess.run(pip + ["install", "--no-deps", "--target", str(root / "site"), str(wheel)], check=True,
                   capture_output=True)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return {"wheel": wheel, "site": root / "site", "cwd": elsewhere}


def run_installed(installed: dict[str, Path], *command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(installed["site"])}
    return subprocess.run(command, cwd=installed["cwd"], env=env, capture_output=True, text=True, timeout=120)


def test_the_wheel_holds_every_subpackage_of_the_source_tree(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    missing = sorted(p for p in source_packages() if f"{p.replace('.', '/')}/__init__.py" not in names)
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_the_wheel_holds_the_presets_and_suites(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    expected = mapped_package_data()
    assert {f"seqvae_zoo/configs/{preset}.gin" for preset in PRESETS} <= set(expected)
    assert not sorted(set(expected) - names)


def test_the_installed_copy_finds_its_presets_and_suites_and_builds_a_model(installed):
    result = run_installed(installed, sys.executable, "-c", INSTALLED_CHECK)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert Path(report["file"]).is_relative_to(installed["site"]), "imported the source tree, not the wheel"
    assert report["version"] == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert report["presets"] == PRESETS
    suites = {path.split("/")[-1] for path in mapped_package_data() if path.startswith("seqvae_zoo/suites/")}
    assert set(report["suites"]) == suites
    assert report["loss"] > 0


def test_the_installed_seqvae_command_lists_and_describes(installed):
    script = installed["site"] / "bin" / "seqvae"
    listing = run_installed(installed, str(script), "list")
    assert listing.returncode == 0, listing.stderr
    assert "decoders:" in listing.stdout and "  attentive" in listing.stdout
    described = run_installed(installed, str(script), "describe", "vrae_sa_aux")
    assert described.returncode == 0, described.stderr
    assert "SeqVAE.decoder = @decoders.attentive" in described.stdout
    assert "# total" in described.stdout
    typo = run_installed(installed, str(script), "describe", "vrae_sa_auxx")
    assert typo.returncode == 2 and typo.stderr.startswith("error: unknown preset 'vrae_sa_auxx'")
