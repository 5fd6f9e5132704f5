"""``mttune review`` never writes: not the database, not beside it, not even a lock file.

When the tests run as root (for whom permissions do not apply), the read-only checks run
the CLI without the capabilities that bypass file permissions (``CAP_DAC_OVERRIDE`` and
friends), and check first that such a process is really refused writes, so that "works on
a read-only file" is tested for real.
"""

from __future__ import annotations

import ctypes
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.conftest import REPO
from tests.review.conftest import fingerprint, mixed_study, noisy_study
from tuner.cli import main
from tuner.review import build_review, list_studies
from tuner.studies import open_storage

_PR_CAPBSET_DROP = 24
_FILE_CAPS = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def _wal_study(db: Path, name: str = "wal") -> None:
    """A study as ``mttune run`` leaves it: SQLite in WAL mode, written through mttune."""
    storage = open_storage(str(db))
    noisy_study(storage, name, n=25, sigma=0.05, seed=1)
    storage.remove_session()
    storage.engine.dispose()
    assert not Path(f"{db}-wal").exists()  # the writer is gone


def _journal_study(db: Path, name: str = "plain") -> None:
    """A study as plain Optuna leaves it: SQLite in rollback-journal mode."""
    noisy_study(f"sqlite:///{db}", name, n=25, sigma=0.05, seed=2)


def _drop_file_capabilities() -> None:
    """In the child, before exec: root without the capabilities that ignore permissions."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _FILE_CAPS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _run(argv: list[str], unprivileged: bool) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
            check=False,
            preexec_fn=_drop_file_capabilities if unprivileged and os.geteuid() == 0 else None,
        )
    except subprocess.SubprocessError as e:  # prctl refused: root without CAP_SETPCAP
        pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE for the check: {e}")


_TWO_REVIEWS = """
import contextlib, io, json, sys
from tuner.cli import main
db, name = sys.argv[1:3]
outs = []
for argv in (["review", db, "--json"], ["review", db, "--study", name, "--json"]):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    if code:
        sys.exit(code)
    outs.append(json.loads(buf.getvalue()))
print(json.dumps(outs))
"""


@pytest.mark.parametrize("make", [_wal_study, _journal_study], ids=["wal", "rollback"])
def test_review_leaves_every_byte_and_mtime_alone(tmp_path, make, capsys):
    folder = tmp_path / "studies"
    folder.mkdir()
    db = folder / "s.db"
    make(db)
    name = "wal" if make is _wal_study else "plain"
    before = fingerprint(folder)
    assert main(["review", str(db)]) == 0
    assert main(["review", str(db), "--study", name]) == 0
    assert main(["review", str(db), "--study", name, "--json"]) == 0
    assert main(["review", str(db), "--study", name, "--html", str(tmp_path / "r.html")]) == 0
    assert main(["review", f"sqlite:///{db}", "--study", name, "--json"]) == 0
    out = capsys.readouterr().out
    assert "recommended" in out
    assert fingerprint(folder) == before  # no -wal, -shm or journal file either


@pytest.mark.parametrize("make", [_wal_study, _journal_study], ids=["wal", "rollback"])
def test_review_works_on_a_read_only_file_in_a_read_only_folder(tmp_path, make):
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "s.db"
    make(db)
    name = "wal" if make is _wal_study else "plain"
    db.chmod(0o444)
    folder.chmod(0o555)
    try:
        before = fingerprint(folder)
        # Make sure the check is real: this process may not write there.
        probe = _run([sys.executable, "-c", f"open({str(folder / 'x')!r}, 'w')"], True)
        assert probe.returncode != 0 and "PermissionError" in probe.stderr
        probe = _run([sys.executable, "-c", f"open({str(db)!r}, 'r+b')"], True)
        assert probe.returncode != 0 and "PermissionError" in probe.stderr
        # Both commands in one process (each Python start imports torch: seconds).
        both = _run([sys.executable, "-c", _TWO_REVIEWS, str(db), name], True)
        assert both.returncode == 0, both.stderr
        listed, report = json.loads(both.stdout)
        assert [s["study"] for s in listed["studies"]] == [name]
        assert report["trials"]["complete"] == 25 and report["recommended"] is not None
        assert fingerprint(folder) == before
        assert stat.S_IMODE(db.stat().st_mode) == 0o444
    finally:
        folder.chmod(0o755)


def test_review_sees_the_trials_of_a_run_still_writing(tmp_path):
    """A live writer holds the WAL open: review reads every committed trial, writes nothing."""
    db = tmp_path / "live.db"
    storage = open_storage(str(db))
    study = noisy_study(storage, "live", n=10, sigma=0.05, seed=4)
    assert Path(f"{db}-wal").exists()  # the writer's connection is still open
    assert build_review(str(db), "live").report["trials"]["complete"] == 10
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2 + t.suggest_float("y", -1, 1), 5)
    assert build_review(str(db), "live").report["trials"]["complete"] == 15
    assert list_studies(str(db))[0].n_complete == 15


def test_review_reads_a_journal_file_without_changing_it(tmp_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    folder = tmp_path / "j"
    folder.mkdir()
    log = folder / "study.log"
    mixed_study(JournalStorage(JournalFileBackend(str(log))), "journal")
    before = fingerprint(folder)
    review = build_review(str(log), "journal")
    assert review.report["trials"]["total"] == 31
    assert fingerprint(folder) == before


def test_the_private_copy_of_a_journal_goes_when_the_process_ends(tmp_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    log = tmp_path / "study.log"
    mixed_study(JournalStorage(JournalFileBackend(str(log))), "journal")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    code = (
        "from tuner.review import build_review; import sys; "
        "print(build_review(sys.argv[1], 'journal').report['trials']['total'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(log)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(scratch)},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "31"
    assert list(scratch.iterdir()) == []


def test_a_file_that_is_not_a_journal_is_named_in_the_error(tmp_path):
    from tuner.studies import StorageError

    junk = tmp_path / "train.log"
    junk.write_text("epoch 1: loss 0.52\n")
    with pytest.raises(StorageError) as e:
        open_storage(str(junk), read_only=True)
    assert str(junk) in str(e.value) and "not an Optuna journal" in str(e.value)


def test_review_matches_optuna_on_every_trial(tmp_path):
    """The fast sqlite3 reader and Optuna's API read the same study identically."""
    from tuner.review._load import _api_study, _reading, _sql_study

    db = tmp_path / "m.db"
    mixed_study(f"sqlite:///{db}", "mixed")
    with _reading(db) as con:
        fast = _sql_study(con, str(db), "mixed")
    slow = _api_study(str(db), "mixed")
    assert list(fast.numbers) == list(slow.numbers)
    assert list(fast.states) == list(slow.states)
    assert fast.values.tolist() == pytest.approx(slow.values.tolist(), nan_ok=True)
    assert [fast.params[i] for i in range(len(fast))] == [slow.params[i] for i in range(len(slow))]
    assert [fast.trial_distributions[i] for i in range(len(fast))] == [
        slow.trial_distributions[i] for i in range(len(slow))
    ]
    assert fast.attrs == slow.attrs
    assert fast.distributions == slow.distributions
    trials = optuna.load_study(study_name="mixed", storage=f"sqlite:///{db}").trials
    assert [fast.params[i] for i in range(len(fast))] == [t.params for t in trials]


def test_review_reads_while_another_connection_holds_the_write_lock(tmp_path):
    """A rollback-journal database mid-transaction: review reads the committed state."""
    db = tmp_path / "h.db"
    _journal_study(db)
    con = sqlite3.connect(db)
    con.execute("BEGIN IMMEDIATE")  # a writer holds the reserved lock
    con.execute("DELETE FROM trial_values")  # uncommitted: review must not see it
    try:
        assert build_review(str(db), "plain").report["trials"]["complete"] == 25
    finally:
        con.rollback()
        con.close()
