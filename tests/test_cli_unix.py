"""The ``mttune`` command as a Unix tool: fast help, quiet closed pipes, untruncated pipes."""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
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


def test_version_has_a_short_flag():
    for flag in ("-V", "--version"):
        out = _mttune(flag)
        assert out.returncode == 0 and out.stdout.startswith("mttune 0."), out


def _closed_pipe_run(*argv: str) -> subprocess.CompletedProcess:
    """Run mttune with a stdout whose reader is gone before the first byte (``| head -0``)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "tuner.cli", *argv],
            cwd=REPO,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write)


@pytest.fixture
def long_named_study(tmp_path) -> tuple[str, str]:
    name = "plain-optuna-study-with-a-rather-long-name-" + "x" * 60
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name=name, storage=url)
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.2) ** 2, n_trials=12)
    return url, name


@pytest.mark.parametrize(
    "argv",
    [
        ["review", "{url}"],
        ["review", "{url}", "--json"],
        ["review", "{url}", "--study", "{name}"],
        ["review", "{url}", "--study", "{name}", "--json"],
        ["space", "infer", "{url}"],
    ],
)
def test_a_closed_pipe_ends_quietly(long_named_study, argv):
    url, name = long_named_study
    out = _closed_pipe_run(*(a.format(url=url, name=name) for a in argv))
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
    assert out.returncode == 141, out.stderr  # 128 + SIGPIPE, as `yes | head` ends


def test_output_to_a_pipe_is_not_cut_to_80_columns(long_named_study):
    url, name = long_named_study
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    listing = _mttune("review", url, env=env)
    assert listing.returncode == 0, listing.stderr
    assert name in listing.stdout, listing.stdout
    report = _mttune("review", url, "--study", name, env=env)
    assert report.returncode == 0, report.stderr
    assert name in report.stdout and "…" not in report.stdout, report.stdout
