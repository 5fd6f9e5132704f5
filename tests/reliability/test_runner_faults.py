"""Runner faults: concurrent runners, read-only and full disks, bad storages."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import REPO, SCRIPTS
from tests.reliability._limits import limit_file_size

QUAD = [str(SCRIPTS / "quad.py"), "--space", str(REPO / "tests" / "spaces" / "quad.yaml")]


def _mttune(
    *args: str, cwd: Path, env: dict | None = None, preexec=None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuner", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec,
        timeout=timeout,
    )


def _create_at_once(args: tuple) -> list[str]:
    """Open each new database when every process is ready (a creation race on purpose)."""
    barrier, dbs = args
    from tuner.studies import open_storage

    errors = []
    for db in dbs:
        barrier.wait(timeout=120)
        try:
            storage = open_storage(db)
            storage.get_all_studies()
        except Exception as e:  # reported below, with the database
            errors.append(f"{db}: {e}")
    return errors


def test_runners_creating_one_new_sqlite_study_at_once_all_succeed(tmp_path):
    """Several runners that start together on a new database race to create its schema
    (tables, Optuna's version row, alembic's stamp): every one must open it."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    n_procs, dbs = 4, [str(tmp_path / f"s{i}.db") for i in range(6)]
    with ctx.Manager() as manager:
        barrier = manager.Barrier(n_procs)
        with ctx.Pool(n_procs) as pool:
            results = pool.map(_create_at_once, [(barrier, dbs)] * n_procs)
    assert [e for errs in results for e in errs] == []
    for db in dbs:
        assert optuna.get_all_study_summaries(f"sqlite:///{db}") == []


def test_two_runners_on_one_sqlite_study(tmp_path):
    args = [
        "run",
        *QUAD,
        "--n-trials",
        "12",
        "--sampler",
        "random",
        "--pruner",
        "none",
        "--progress",
        "lines",
        "--heartbeat",
        "2",
    ]
    env = {**os.environ, "QUAD_SLEEP": "0.05"}
    procs = [
        subprocess.Popen(
            # the same --seed on purpose: the runners must still not draw the same configs
            [sys.executable, "-m", "tuner", *args, "--seed", "0"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err.lower()
    trials = optuna.load_study(
        study_name="quad", storage=f"sqlite:///{tmp_path}/studies/quad.db"
    ).trials
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert 12 <= len(complete) <= 14  # both stop at the target (a trial in flight may finish)
    assert len({t.number for t in trials}) == len(trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)


def test_read_only_database_is_a_clear_error(tmp_path):
    assert (
        _mttune("run", *QUAD, "--n-trials", "1", "--progress", "none", cwd=tmp_path).returncode
        == 0
    )
    db = tmp_path / "studies" / "quad.db"
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = db.read_bytes()
    db.chmod(0o444)
    immutable = os.geteuid() == 0  # root ignores file modes: make the file immutable instead
    if immutable and subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode:
        db.chmod(0o644)
        pytest.skip("running as root without chattr: cannot make a read-only database")
    try:
        proc = _mttune("run", *QUAD, "--n-trials", "3", "--progress", "none", cwd=tmp_path)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(db)], check=True)
        db.chmod(0o644)
    assert proc.returncode == 1, proc.stderr
    assert "read-only" in proc.stderr and "Traceback" not in proc.stderr
    assert db.read_bytes() == before


def test_full_disk_is_a_clear_error_and_loses_nothing(tmp_path):
    """A file-size limit makes SQLite hit "disk full" mid-run, as a full disk does."""
    assert (
        _mttune("run", *QUAD, "--n-trials", "2", "--progress", "none", cwd=tmp_path).returncode
        == 0
    )
    db = tmp_path / "studies" / "quad.db"
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    proc = _mttune(
        "run",
        *QUAD,
        "--n-trials",
        "400",
        "--progress",
        "none",
        preexec=limit_file_size(size + 8192),
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert "disk" in proc.stderr.lower() and "Traceback" not in proc.stderr
    trials = optuna.load_study(study_name="quad", storage=f"sqlite:///{db}").trials
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) >= 2


def test_storage_that_is_not_an_optuna_db(tmp_path):
    junk = tmp_path / "notes.db"
    junk.write_text("these are my notes")
    proc = _mttune("run", *QUAD, "--storage", str(junk), "--progress", "none", cwd=tmp_path)
    assert proc.returncode == 1
    assert "not an SQLite database" in proc.stderr
    assert junk.read_text() == "these are my notes"
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE recipes (name TEXT)")
    proc = _mttune("run", *QUAD, "--storage", str(other), "--progress", "none", cwd=tmp_path)
    assert proc.returncode == 1
    assert "not an Optuna storage" in proc.stderr
