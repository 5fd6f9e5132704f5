"""Journal storages (``--storage x.log``): a cut-off write never makes a study unreadable.

A runner that stops in the middle of a journal line (a full disk, a file-size limit, a kill)
leaves a torn last line. The next write heals it (a cut-off operation is removed, a whole
one gets its newline) instead of appending onto it; a line that an older writer did append
onto is skipped while reading, keeping the operation written after it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tests.conftest import REPO, SCRIPTS
from tests.reliability._limits import limit_file_size
from tuner.runners import count_trials
from tuner.studies import TrialAttr

SPACE = REPO / "tests" / "spaces" / "s1.yaml"


@pytest.fixture
def folder(tmp_path) -> Path:
    (tmp_path / "f.py").write_text("def train(params, report):\n    return params['x'] ** 2\n")
    return tmp_path


def _mttune(folder: Path, *args: str, preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuner", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        preexec_fn=preexec,
        timeout=300,
    )


def _run(folder: Path, n_trials: int, preexec=None) -> subprocess.CompletedProcess:
    return _mttune(
        folder, "run", "f.py", "--space", str(SPACE), "--storage", "jd.log",
        "--n-trials", str(n_trials), "--sampler", "random", "--progress", "none",
        preexec=preexec,
    )  # fmt: skip


def _optuna_trials(journal: Path) -> list[optuna.trial.FrozenTrial]:
    """The trials as Optuna itself reads the journal (no mttune in between)."""
    storage = JournalStorage(JournalFileBackend(str(journal)))
    return optuna.load_study(study_name="s1", storage=storage).trials


def _states(trials) -> list[TrialState]:
    return [t.state for t in trials]


def test_a_torn_last_line_is_healed_by_the_next_run(folder):
    assert _run(folder, 3).returncode == 0
    journal = folder / "jd.log"
    os.truncate(journal, journal.stat().st_size - 7)  # the last operation cut off
    proc = _run(folder, 6)
    assert proc.returncode == 0, proc.stderr
    assert "cut off" in proc.stderr and "Traceback" not in proc.stderr
    for line in journal.read_bytes().splitlines():
        json.loads(line)  # no broken line left in the file
    trials = _optuna_trials(journal)  # Optuna's own reader reads it
    assert _states(trials).count(TrialState.COMPLETE) == 6
    assert TrialState.RUNNING not in _states(trials)
    assert _mttune(folder, "review", "jd.log", "--study", "s1").returncode == 0


def test_a_full_disk_mid_run_is_a_clear_error_and_the_journal_resumes(folder):
    proc = _run(folder, 16, preexec=limit_file_size(12 * 1024))
    assert proc.returncode == 1
    assert "disk" in proc.stderr.lower() and "Traceback" not in proc.stderr, proc.stderr
    kept = _states(_optuna_trials(folder / "jd.log")).count(TrialState.COMPLETE)
    assert kept >= 2
    proc = _run(folder, 16)  # space again: the same command resumes
    assert proc.returncode == 0, proc.stderr
    trials = _optuna_trials(folder / "jd.log")
    assert _states(trials).count(TrialState.COMPLETE) == 16
    assert TrialState.RUNNING not in _states(trials)


def test_a_line_appended_onto_a_torn_one_keeps_the_study_readable(folder):
    """What Optuna (and mttune before this) left: the next write glued to a torn line."""
    assert _run(folder, 4).returncode == 0
    journal = folder / "jd.log"
    lines = journal.read_bytes().splitlines(keepends=True)
    k = len(lines) // 2
    lines[k] = lines[k][: len(lines[k]) // 2]  # torn, then the next line appended onto it
    journal.write_bytes(b"".join(lines))
    with pytest.raises(ValueError):
        _optuna_trials(journal)  # unreadable for Optuna
    review = _mttune(folder, "review", "jd.log", "--study", "s1")
    assert review.returncode == 0, review.stderr
    assert "line" in review.stderr and "cut off" in review.stderr
    proc = _run(folder, 6)
    assert proc.returncode == 0, proc.stderr


SLEEPY = (SCRIPTS / "pid_sleeper.py").read_text()


def _can_unshare_uts() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare_uts(), reason="needs root and unshare --uts")
def test_trials_of_a_runner_killed_on_another_host_are_recovered(folder):
    """Another host: a runner in its own UTS namespace (its own host name), killed -9."""
    (folder / "sleepy.py").write_text(SLEEPY)
    pid_file = folder / "script.pid"
    run = f"{sys.executable} -m tuner run sleepy.py --space {SPACE} --storage jd.log"
    other = subprocess.Popen(
        ["unshare", "--uts", "sh", "-c", f"hostname other-host && exec {run} --heartbeat 1"],
        cwd=folder,
        env={**os.environ, "PID_FILE": str(pid_file)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text()):
        assert other.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    other.kill()  # the runner dies on its host; its script with it
    other.wait()
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    (running,) = _optuna_trials(folder / "jd.log")
    assert running.state == TrialState.RUNNING
    time.sleep(8)  # its heartbeat's grace period (2 * 1 + 5 s) passes
    proc = _mttune(
        folder, "run", "f.py", "--space", str(SPACE), "--storage", "jd.log",
        "--n-trials", "2", "--heartbeat", "1", "--progress", "none",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    trials = _optuna_trials(folder / "jd.log")
    assert TrialState.RUNNING not in _states(trials)
    assert trials[0].state == TrialState.FAIL and count_trials(trials).interrupted == 1
    assert any(TrialAttr.RETRY_OF.get(t.user_attrs) == 0 for t in trials)  # re-run
    assert _states(trials).count(TrialState.COMPLETE) == 2
