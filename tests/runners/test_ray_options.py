"""Options of ``mttune run --backend ray`` that are refused before any Ray starts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO, SCRIPTS
from tuner.cli import main
from tuner.runners import RayBackendError, RayOptions

SPACES = REPO / "tests" / "spaces"
UNREACHABLE = ["--backend", "ray", "--address", "127.0.0.1:9", "--progress", "none"]
QUAD = [str(SCRIPTS / "quad.py"), "--space", str(SPACES / "quad.yaml"), "--n-trials", "1"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--backend", "ray", "--workers", "0"], "--workers must be >= 1, got 0."),
        (["--backend", "ray", "--cpus-per-trial", "0"], "--cpus-per-trial must be > 0, got 0.0"),
        (["--backend", "ray", "--gpus-per-trial", "-1"], "--gpus-per-trial must be >= 0"),
        (["--backend", "ray", "--address", "nowhere"], "--address must be HOST:PORT"),
        (["--backend", "ray", "--address", "ray://head:10001"], "Ray Client address"),
        (["--backend", "ray", "--n-jobs", "4"], "Use --workers 4"),
        (["--backend", "ray", "--pruner", "median"], "--scheduler asha"),
        (["--workers", "2"], "Add --backend ray, or drop --workers"),
        (["--scheduler", "none"], "an option of the Ray backend"),
    ],
)
def test_bad_or_mixed_options_are_refused_before_anything_runs(
    tmp_path, monkeypatch, capsys, extra, needle
):
    monkeypatch.chdir(tmp_path)
    assert main(["run", *QUAD, *extra, "--progress", "none"]) == 1
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "studies").exists()


def test_ray_options_state_the_rule_and_the_value():
    with pytest.raises(RayBackendError, match=r"--scheduler must be one of asha, none, got 'x'"):
        RayOptions(scheduler="x")
    with pytest.raises(RayBackendError, match="characters long"):
        RayOptions(temp_dir="/tmp/" + "d" * 60)
    assert RayOptions(address="10.0.0.5:6379").address == "10.0.0.5:6379"
    assert RayOptions(address="auto", workers=3, cpus_per_trial=0.5).workers == 3


def test_unreachable_address_is_a_clear_error(tmp_path):
    # Port 9 (discard) has no Ray head listening: refused at once, before Ray or the study.
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", "run", *QUAD, *UNREACHABLE],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "cannot reach a Ray cluster at --address 127.0.0.1:9" in proc.stderr
    assert "ray start --head" in proc.stderr
    assert not (tmp_path / "studies").exists()
