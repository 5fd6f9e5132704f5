"""A study database written by an older Optuna (3.0.6, schema v3.0.0.d), shipped in tests/data."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.conftest import REPO
from tuner.studies import load_study, open_storage

OLD = REPO / "tests" / "data" / "optuna-3.0-study.db"


def _copy(tmp_path):
    db = tmp_path / "old.db"
    shutil.copy2(OLD, db)
    return db, db.read_bytes(), db.stat().st_mtime_ns


def test_read_only_open_reads_an_older_schema_without_touching_it(tmp_path):
    db, data, mtime = _copy(tmp_path)
    study = load_study(open_storage(str(db), read_only=True), "legacy")
    trials = study.get_trials()
    assert len(trials) == 15 and trials[0].user_attrs["note"] == "made by optuna 3.0.6"
    assert db.read_bytes() == data and db.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.db"]


def test_review_of_an_older_schema(tmp_path):
    db, data, mtime = _copy(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", "review", str(db), "--study", "legacy", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"study": "legacy"' in proc.stdout
    assert db.read_bytes() == data and db.stat().st_mtime_ns == mtime


def test_running_on_an_older_schema_says_how_to_upgrade(tmp_path):
    db, data, _ = _copy(tmp_path)
    space = tmp_path / "s.yaml"
    space.write_text("name: legacy\nparams: {x: {type: float, low: -1, high: 1}}\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tuner",
            "run",
            str(REPO / "tests/scripts/quad.py"),
            "--space",
            str(space),
            "--storage",
            str(db),
            "--n-trials",
            "1",
            "--progress",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "optuna storage upgrade" in proc.stderr and "Traceback" not in proc.stderr
    assert db.read_bytes() == data
