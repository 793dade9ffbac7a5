"""The ``seqvae`` command shortens OpenMP's busy wait before torch loads its runtime, and leaves a user's choice alone
(seqvae_zoo/training/openmp.py says why)."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys

import pytest

from seqvae_zoo.training.openmp import SHORT_SPIN, short_openmp_waits


def openmp_settings_reported(**environment: str) -> dict[str, str]:
    """The settings the OpenMP runtime reports at load (OMP_DISPLAY_ENV) in a fresh ``seqvae presets`` process."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(OMP_DISPLAY_ENV="VERBOSE", **environment)
    done = subprocess.run([sys.executable, "-m", "seqvae_zoo.cli", "presets"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return dict(re.findall(r"^\s+(OMP_WAIT_POLICY|GOMP_SPINCOUNT) = '([^']*)'", done.stderr, re.MULTILINE))


@pytest.fixture(scope="module")
def libgomp():
    if "GOMP_SPINCOUNT" not in openmp_settings_reported(GOMP_SPINCOUNT="12345"):
        pytest.skip("torch's OpenMP runtime here is not GNU OpenMP (it reports no GOMP_SPINCOUNT)")


def test_the_command_runs_torch_with_the_short_spin(libgomp):
    assert openmp_settings_reported()["GOMP_SPINCOUNT"] == SHORT_SPIN


@pytest.mark.parametrize("variable, value, reported", [("GOMP_SPINCOUNT", "5000", "5000"),
                                                      ("OMP_WAIT_POLICY", "ACTIVE", "ACTIVE")])
def test_a_users_own_waiting_is_kept(libgomp, variable, value, reported):
    assert openmp_settings_reported(**{variable: value})[variable] == reported


def test_importing_the_package_does_not_load_torch():
    """Else any module the command imports first would load torch before the setting, and it would do nothing."""
    done = subprocess.run([sys.executable, "-c", "import sys, seqvae_zoo, seqvae_zoo.cli, seqvae_zoo.errors; "
                           "print('torch' in sys.modules, seqvae_zoo.SeqVAE.__name__)"],
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "SeqVAE"], done.stderr


def test_nothing_is_set_once_torch_is_loaded():
    """Its runtime has read its settings then: a main() called from a Python session that loaded torch."""
    importlib.import_module("torch")
    environ: dict[str, str] = {}
    assert not short_openmp_waits(environ) and environ == {}
