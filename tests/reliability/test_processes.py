"""The runner's processes: stopped by a signal, its scripts go with it and the study is kept.

SIGHUP (a terminal or ssh session that closes) stops ``mttune run`` as SIGTERM and Ctrl-C
do; ``mttune verify`` stops the same way. Either way the running script is killed (never
orphaned) and a trial is never left RUNNING.
"""

from __future__ import annotations

import os
import shutil
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


def _can_unshare_pid() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = ["unshare", "--pid", "--fork", "--mount-proc", "true"]
    return subprocess.run(probe, capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare_pid(), reason="needs root and unshare --pid")
def test_a_live_runner_in_another_pid_namespace_is_not_taken_for_dead(study_files):
    """A container with the same host name: its runner's PID means nothing here."""
    tmp_path = study_files
    bump = "for i in $(seq 300); do true & done; wait; "  # a PID that this namespace lacks
    run = (
        f"{sys.executable} -m tuner run sleepy.py --space space1.yaml --storage s.db "
        "--n-trials 1 --heartbeat 1 --progress none"
    )
    contained = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", bump + run],
        cwd=tmp_path,
        env={**os.environ, "PID_FILE": str(tmp_path / "script.pid"), "SLEEP_S": "30"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid_file = tmp_path / "script.pid"
    deadline = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text()):
        assert contained.poll() is None and time.monotonic() < deadline, contained.stderr
        time.sleep(0.1)
    storage = f"sqlite:///{tmp_path}/s.db"
    (trial,) = optuna.load_study(study_name="s1", storage=storage).trials
    if _alive(TrialAttr.RUNNER.get(trial.user_attrs)["pid"]):
        pytest.skip("the contained runner's PID exists here too")
    here = subprocess.run(
        [sys.executable, "-m", "tuner", "run", "f.py", "--space", "space1.yaml", "--storage",
         "s.db", "--n-trials", "3", "--heartbeat", "1", "--progress", "none"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert here.returncode == 0, here.stderr
    assert contained.wait(timeout=120) == 0, contained.stderr.read()
    trials = optuna.load_study(study_name="s1", storage=storage).trials
    assert trials[0].state == TrialState.COMPLETE  # not failed as dead, so not run twice
    assert not any(TrialAttr.RETRY_OF.has(t.user_attrs) for t in trials)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4


def test_a_runner_is_dead_only_when_its_process_is_known_gone():
    from tuner.runners._liveness import runner_attr, runner_state

    me = runner_attr()
    assert runner_state(me) == "alive"
    parent = {**me, "pid": os.getppid(), "start": 0}
    assert runner_state(parent) == "dead"  # that PID is another process now (start differs)
    assert runner_state({**me, "pid": 2**22 + 12345}) == "dead"  # no such process
    assert runner_state({**me, "pidns": "pid:[1]"}) == "unknown"  # another container
    assert runner_state({**me, "boot": "another-machine"}) == "unknown"
    assert runner_state({"host": me["host"], "pid": 2**22 + 12345}) == "unknown"  # older tag
