"""The ``mttune`` command as a Unix tool: fast help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

HEAVY = ("torch", "scipy", "optuna", "ray", "sklearn", "sqlalchemy")


def _mttune(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuner.cli", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        **kwargs,
    )


def _imported(stderr: str) -> set[str]:
    """Top-level packages in ``python -X importtime``'s report."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--help"],
        ["meta-train", "--help"],
        ["prior", "show", "--help"],
        ["space", "infer", "--help"],
        ["review", "--help"],
        ["verify", "--help"],
        ["run", "train.py"],  # no --space
        ["meta-train", "--from", "x.db"],  # no -o
        ["review"],  # no storage
        ["verify", "s.db", "train.py"],  # no --study
        ["run", "train.py", "--space", "s.yaml", "--sampler", "nope"],
        ["meta-train", "--from", "x.db", "-o", "p", "--seed", "-1"],
    ],
)
def test_help_and_usage_errors_are_answered_before_any_heavy_import(argv):
    """Parse first, import after: no torch, SciPy, Optuna or Ray before the line is valid."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tuner.cli", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    expected = 0 if "--help" in argv else 2
    assert out.returncode == expected, out.stderr[-2000:]
    assert "usage: mttune" in out.stdout + out.stderr
    heavy = sorted(_imported(out.stderr) & set(HEAVY))
    assert not heavy, f"mttune {' '.join(argv)} imported {heavy} before parsing"

