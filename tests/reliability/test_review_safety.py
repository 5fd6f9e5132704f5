"""What review and the reports print and touch: labels, passwords, the study's own files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SCRIPTS
from tests.review.conftest import fingerprint, noisy_study
from tuner.cli import main
from tuner.studies import open_storage

QUAD = [str(SCRIPTS / "quad.py"), "--space", str(REPO / "tests" / "spaces" / "quad.yaml")]


def test_a_journal_study_is_labelled_by_its_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["run", *QUAD, "--storage", "j.log", "--n-trials", "2", "--progress", "none"]
    assert main(argv) == 0
    assert "review it: mttune review j.log --study quad" in capsys.readouterr().out
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["storage"] == "j.log"
    assert "JournalFileBackend" not in json.dumps(summary)


def _wal_study(db: Path) -> None:
    storage = open_storage(str(db))
    noisy_study(storage, "s", n=12, sigma=0.05, seed=1)
    storage.remove_session()
    storage.engine.dispose()


def test_review_html_onto_the_study_database_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "ah.db"
    _wal_study(db)
    before = fingerprint(tmp_path)
    for target in ("ah.db", "./sub/../ah.db", str(db)):
        (tmp_path / "sub").mkdir(exist_ok=True)
        assert main(["review", "ah.db", "--study", "s", "--html", target]) == 1
        err = capsys.readouterr().err
        assert "study's own" in err or "database" in err
        (tmp_path / "sub").rmdir()
        assert fingerprint(tmp_path) == before


def test_review_html_over_another_database_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _wal_study(tmp_path / "ah.db")
    _wal_study(tmp_path / "other.db")
    before = fingerprint(tmp_path)
    assert main(["review", "ah.db", "--study", "s", "--html", "other.db"]) == 1
    assert "SQLite database" in capsys.readouterr().err
    assert fingerprint(tmp_path) == before


_KILLED_WRITER = """
import os, signal, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("PRAGMA wal_autocheckpoint=0")
con.execute(
    "INSERT INTO study_user_attributes (study_id, key, value_json) VALUES (1, 'k', '1')"
)
con.commit()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_review_of_a_wal_left_by_a_killed_runner_changes_no_file(tmp_path, capsys):
    db = tmp_path / "k.db"
    _wal_study(db)
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(db)], check=False)
    assert killed.returncode == -signal.SIGKILL
    assert Path(f"{db}-wal").stat().st_size > 0 and Path(f"{db}-shm").exists()
    before = fingerprint(tmp_path)
    assert main(["review", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["studies"][0]["study"] == "s"
    assert main(["review", str(db), "--study", "s", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trials"]["complete"] == 12
    assert fingerprint(tmp_path) == before


_URL = "postgresql://u:secretpw@127.0.0.1:9/db"


@pytest.mark.parametrize(
    "argv",
    [
        ["run", *QUAD, "--storage", _URL, "--progress", "none"],
        ["review", _URL],
        ["review", _URL, "--study", "s"],
        ["verify", _URL, "--study", "s", *QUAD[:1]],
        ["meta-train", "--from", _URL, "-o", "p.safetensors"],
    ],
    ids=["run", "review-list", "review", "verify", "meta-train"],
)
def test_a_storage_password_is_never_printed(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert "secretpw" not in out + err
    assert "u:***@127.0.0.1" in err
    assert list(tmp_path.iterdir()) == []


_TAMPER = {
    "categorical index out of range": (
        "UPDATE trial_params SET param_value = 99 WHERE param_name = 'opt' AND trial_id = 3"
    ),
    "malformed distribution_json": (
        "UPDATE trial_params SET distribution_json = '{not json' "
        "WHERE trial_id = 4 AND param_name = 'x'"
    ),
    "text value": "UPDATE trial_values SET value = 'abc' WHERE trial_id = 5",
}


@pytest.mark.parametrize("kind", sorted(_TAMPER))
def test_review_of_tampered_study_rows(kind, tmp_path, capsys):
    import optuna

    db = tmp_path / "t.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{db}")
    study.optimize(
        lambda t: (
            t.suggest_float("x", -1, 1) ** 2 + (t.suggest_categorical("opt", ["a", "b"]) == "a")
        ),
        n_trials=12,
    )
    del study
    import sqlite3

    with sqlite3.connect(db) as con:
        assert con.execute(_TAMPER[kind]).rowcount == 1
    code = main(["review", str(db), "--study", "s", "--json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if code == 0:
        report = json.loads(out)
        assert report["trials"]["total"] == 12
    else:
        assert code == 1 and "t.db" in err and "edited or is damaged" in err


def test_review_after_a_verify_whose_every_run_failed_says_so(tmp_path, capsys):
    db = tmp_path / "v.db"
    _wal_study(db)
    failing = tmp_path / "fail.sh"
    failing.write_text("#!/bin/sh\necho 'boom' >&2\nexit 1\n")
    failing.chmod(0o755)
    verify = ["verify", str(db), "--study", "s", str(failing), "--top-k", "1", "--repeats", "2"]
    assert main([*verify, "--perturb", "0"]) == 3  # no run completed
    capsys.readouterr()
    assert main(["review", str(db), "--study", "s", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert any("every run failed" in note for note in report["notes"]), report["notes"]
