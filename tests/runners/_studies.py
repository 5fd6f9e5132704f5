"""Helpers of the runner tests: read a SQLite study, wait for trials of a running one."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import optuna


def trials(db: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    """The trials of ``study`` in the SQLite file ``db``."""
    return optuna.load_study(study_name=study, storage=f"sqlite:///{db}").get_trials()


def wait_for_trials(db: Path, state: str, n: int, timeout: float = 60) -> None:
    """Wait until ``db`` (written by another process) holds ``n`` trials in ``state``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    got = con.execute(
                        "SELECT COUNT(*) FROM trials WHERE state = ?", (state,)
                    ).fetchone()[0]
                if got >= n:
                    return
            except sqlite3.OperationalError:
                pass
        time.sleep(0.1)
    raise AssertionError(f"never saw {n} {state} trials in {db}")
