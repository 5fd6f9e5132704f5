"""Journal storages (``--storage x.log``): a cut-off write never makes a study unreadable.

A runner that stops in the middle of a journal line (a full disk, a file-size limit, a kill)
leaves a torn last line. The next write heals it (a cut-off operation is removed, a whole
one gets its newline) instead of appending onto it; a line that an older writer did append
onto is skipped while reading, keeping the operation written after it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tests.conftest import REPO

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


def _limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_a_full_disk_mid_run_is_a_clear_error_and_the_journal_resumes(folder):
    proc = _run(folder, 16, preexec=_limit_file_size(12 * 1024))
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
