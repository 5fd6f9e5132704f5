"""``mttune run --backend ray`` end to end: real local Ray (2 CPUs), real scripts, SQLite.

What only the Ray backend does (ASHA, dead workers, resources); the scenarios both backends
share are in ``test_backends.py``. One local Ray serves the module (``local_ray`` of the
conftest, started and cleaned up as a run does); ``mttune run`` in this process uses it.
The interruption test starts its own Ray in a subprocess.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import REPO, SCRIPTS
from tests.runners._studies import trials as _trials
from tests.runners._studies import wait_for_trials
from tuner.cli import main
from tuner.space import load_space
from tuner.studies import StudyAttr, TrialAttr

SPACES = REPO / "tests" / "spaces"
RAY_FAULT = "the Ray worker running the trial failed"
RAY_LINES = ["--backend", "ray", "--progress", "lines"]

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]


def _run(*args: str) -> int:
    return main(["run", *args, "--backend", "ray", "--progress", "none"])


def _quad(*extra: str) -> list[str]:
    return [str(SCRIPTS / "quad.py"), "--space", str(SPACES / "quad.yaml"), *extra]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has exited


def test_asha_stops_poor_trials_and_they_are_pruned(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # quad.py reports steps 0, 1, 2
    args = _quad("--n-trials", "12", "--seed", "0", "--sampler", "random", "--workers", "2")
    assert _run(*args) == 0  # --scheduler asha is the default
    trials = _trials(tmp_path / "studies" / "quad.db", "quad")
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 12 and pruned and complete
    for t in pruned:
        assert "pruned at step" in t.user_attrs[TrialAttr.PRUNE_REASON.key]
        assert "ASHA" in t.user_attrs[TrialAttr.PRUNE_REASON.key]
        assert max(t.intermediate_values) < 2  # stopped early, not after all 3 steps
        assert t.value == t.intermediate_values[max(t.intermediate_values)]
    for t in complete:
        assert sorted(t.intermediate_values) == [0, 1, 2]
    # what ASHA kept was at least as good, at its first report, as what it stopped there
    first = {t.number: t.intermediate_values[0] for t in trials}
    assert min(first[t.number] for t in complete) <= min(first[t.number] for t in pruned)


def test_a_killed_worker_is_recorded_and_its_trial_rerun(tmp_path, monkeypatch, kill_marker):
    monkeypatch.chdir(tmp_path)
    args = [str(SCRIPTS / "kill_runner.py"), "--space", str(SPACES / "quad.yaml"), "--study", "k"]
    assert _run(*args, "--n-trials", "4", "--workers", "2", "--scheduler", "none") == 0
    trials = _trials(tmp_path / "studies" / "k.db", "k")
    (dead,) = [t for t in trials if t.state == TrialState.FAIL]
    assert dead.user_attrs[TrialAttr.INTERRUPTED.key] is True
    assert dead.user_attrs[TrialAttr.FAIL_REASON.key].startswith(
        f"{RAY_FAULT} (re-run as a new trial)"
    )
    assert dead.intermediate_values == {0: pytest.approx((dead.params["x"] - 0.3) ** 2 + 1.0)}
    (rerun,) = [t for t in trials if t.user_attrs.get(TrialAttr.RETRY_OF.key) == dead.number]
    assert rerun.params == dead.params and rerun.state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
    assert len(trials) == 5  # the target plus the one re-run: nothing lost or counted twice
    assert not _alive(int(kill_marker.read_text())), "the script must die with its worker"


def test_prior_drives_the_ray_search(tmp_path, monkeypatch):
    from tuner.metadataset import MetaDataset
    from tuner.prior import MAMLConfig, ModelConfig, meta_train, save_prior

    space = load_space(SPACES / "quad.yaml")
    rng = np.random.default_rng(0)
    tasks = []
    for i in range(6):
        centre = np.array([0.3, -0.1]) + rng.uniform(-0.1, 0.1, size=2)
        points = rng.uniform(-1, 1, size=(30, 2))
        values = ((points - centre) ** 2).sum(axis=1)
        tasks.append((f"t{i}", [{"x": float(a), "y": float(b)} for a, b in points], values))
    prior = meta_train(
        MetaDataset.from_tasks(space, tasks),
        model=ModelConfig(hidden=16, layers=1, ensemble=2),
        maml=MAMLConfig(max_steps=30, val_every=10, patience=2),
    )
    path = save_prior(prior, tmp_path / "quad.prior.safetensors")
    monkeypatch.chdir(tmp_path)
    assert _run(*_quad("--prior", str(path), "--n-trials", "3", "--scheduler", "none")) == 0
    study = optuna.load_study(study_name="quad", storage=f"sqlite:///{tmp_path}/studies/quad.db")
    assert study.user_attrs[StudyAttr.PRIOR.key]["space_hash"] == space.hash
    sources = [t.user_attrs.get(TrialAttr.SOURCE.key) for t in study.get_trials()]
    assert len(sources) == 3 and "prior" in sources  # MetaPriorSampler asked for them


def test_gpus_per_trial_without_gpus_is_refused_before_the_study(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _run(*_quad("--n-trials", "1", "--gpus-per-trial", "1")) == 1
    err = capsys.readouterr().err
    assert "--gpus-per-trial 1 asks for GPUs" in err and "has none" in err
    assert not (tmp_path / "studies").exists()


@pytest.mark.slow
def test_sigterm_stops_a_local_ray_run_cleanly_and_it_resumes(tmp_path, monkeypatch):
    ray_tmp = Path(tempfile.mkdtemp(prefix="mtr-", dir="/tmp"))
    db = tmp_path / "s.db"
    args = [
        str(SCRIPTS / "sleepy.py"),
        "--space",
        str(SPACES / "quad.yaml"),
        "--study",
        "sleepy",
        "--storage",
        str(db),
        "--n-trials",
        "6",
        "--seed",
        "0",
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner", "run", *args, *RAY_LINES, "--ray-tmp", str(ray_tmp)],
        cwd=tmp_path,
        env={**os.environ, "SLEEP_S": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_trials(db, "COMPLETE", 2, timeout=120)
        wait_for_trials(db, "RUNNING", 1, timeout=120)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "resume it" in out
    assert "Traceback" not in err and "raylet" not in out + err
    assert not ray_tmp.exists(), "the local Ray's files must be removed"
    trials = _trials(db, "sleepy")
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert stopped and all(t.user_attrs.get(TrialAttr.INTERRUPTED.key) for t in stopped)

    # The same command again (here on the module's Ray) re-runs the stopped trials.
    monkeypatch.chdir(tmp_path)
    assert _run(*args) == 0
    trials = _trials(db, "sleepy")
    retries = {
        t.user_attrs[TrialAttr.RETRY_OF.key]: t
        for t in trials
        if TrialAttr.RETRY_OF.key in t.user_attrs
    }
    assert sorted(retries) == sorted(t.number for t in stopped)
    for t in stopped:
        assert retries[t.number].params == t.params
        assert retries[t.number].state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6


def test_a_trial_another_runner_failed_while_it_ran_keeps_its_result(tmp_path, monkeypatch):
    """The Ray driver paused past the heartbeat's grace period finds its trial failed by
    another runner: the run goes on and the script's result is kept as a re-run of it, as
    the Optuna runner keeps it (tests/runners/test_recovery.py)."""
    import threading

    from tuner.runners._study import _fail_interrupted

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUAD_SLEEP", "0.5")
    db = tmp_path / "studies" / "quad.db"

    def other_runner() -> None:  # fails the first running trial as dead once its script runs
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _has_running_trial(db):  # read with sqlite3: never races the schema's creation
                study = optuna.load_study(study_name="quad", storage=f"sqlite:///{db}")
                running = study.get_trials(states=(TrialState.RUNNING,))
                if running and TrialAttr.SEED.key in running[0].user_attrs:
                    _fail_interrupted(study, running[0])
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=other_runner)
    thread.start()
    args = _quad("--n-trials", "2", "--seed", "0", "--sampler", "random", "--scheduler", "none")
    assert _run(*args, "--workers", "1") == 0
    thread.join()
    trials = _trials(db, "quad")
    (failed,) = [t for t in trials if t.state == TrialState.FAIL]
    assert failed.user_attrs[TrialAttr.INTERRUPTED.key] is True
    (kept,) = [t for t in trials if t.user_attrs.get(TrialAttr.RETRY_OF.key) == failed.number]
    assert kept.state == TrialState.COMPLETE and kept.params == failed.params
    assert kept.user_attrs[TrialAttr.SEED.key] == failed.user_attrs[TrialAttr.SEED.key]
    assert sorted(kept.intermediate_values) == [0, 1, 2]  # this run's own reports
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2


def _has_running_trial(db: Path) -> bool:
    import sqlite3

    if not db.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            row = con.execute("SELECT 1 FROM trials WHERE state = 'RUNNING'").fetchone()
            return row is not None
    except sqlite3.OperationalError:  # no tables yet, or locked: look again
        return False
