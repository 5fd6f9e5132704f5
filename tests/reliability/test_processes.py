"""The runner's processes: stopped by a signal, its scripts go with it and the study is kept.

SIGHUP (a terminal or ssh session that closes) stops ``mttune run`` as SIGTERM and Ctrl-C
do; ``mttune verify`` stops the same way. Either way the running script is killed (never
orphaned) and a trial is never left RUNNING.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import REPO, SCRIPTS
from tuner.studies import TrialAttr

SPACE = (REPO / "tests" / "spaces" / "s1.yaml").read_text()

SLEEPY = (SCRIPTS / "pid_sleeper.py").read_text()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _start(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tuner", *args],
        cwd=tmp_path,
        env={**os.environ, "PID_FILE": str(tmp_path / "script.pid")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop_once_the_script_runs(proc: subprocess.Popen, pid_file: Path, sig: int) -> int:
    """Send ``sig`` to ``proc`` once its script started; the script's PID."""
    deadline = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the script never started"
        time.sleep(0.1)
    pid = int(pid_file.read_text())
    proc.send_signal(sig)
    return pid


def _assert_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the script outlived its runner"


@pytest.fixture
def study_files(tmp_path):
    (tmp_path / "space1.yaml").write_text(SPACE)
    (tmp_path / "sleepy.py").write_text(SLEEPY)
    (tmp_path / "f.py").write_text("def train(params, report):\n    return params['x'] ** 2\n")
    return tmp_path


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_a_hangup_stops_run_as_sigterm_does(study_files, sig):
    tmp_path = study_files
    proc = _start(
        tmp_path, "run", "sleepy.py", "--space", "space1.yaml", "--storage", "s.db",
        "--n-trials", "3", "--progress", "none",
    )  # fmt: skip
    pid = _stop_once_the_script_runs(proc, tmp_path / "script.pid", sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    _assert_gone(pid)
    (trial,) = optuna.load_study(study_name="s1", storage=f"sqlite:///{tmp_path}/s.db").trials
    assert trial.state == TrialState.FAIL and TrialAttr.INTERRUPTED.get(trial.user_attrs)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_verify_stops_on_a_signal_and_kills_its_script(study_files, sig):
    tmp_path = study_files
    made = subprocess.run(
        [sys.executable, "-m", "tuner", "run", "f.py", "--space", "space1.yaml", "--storage",
         "s.db", "--n-trials", "3", "--progress", "none"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    proc = _start(tmp_path, "verify", "s.db", "--study", "s1", "sleepy.py", "--top-k", "1")
    pid = _stop_once_the_script_runs(proc, tmp_path / "script.pid", sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    _assert_gone(pid)
    trials = optuna.load_study(study_name="s1", storage=f"sqlite:///{tmp_path}/s.db").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3  # the stopped run: not kept
