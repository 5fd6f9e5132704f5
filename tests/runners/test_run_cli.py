"""``mttune run`` end to end: real scripts, real SQLite studies, real interruptions."""

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
from tests.runners._studies import trials as _trials
from tests.runners._studies import wait_for_trials as _wait_for_trials
from tuner.cli import main
from tuner.space import load_space
from tuner.studies import StudyAttr, TrialAttr

SPACES = REPO / "tests" / "spaces"


def _run(*args: str) -> int:
    return main(["run", *args, "--progress", "none"])


def test_all_trials_failing_exits_3(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAULT", "crash")
    space = tmp_path / "s.yaml"
    space.write_text("name: allfail\nparams: {x: {type: float, low: 0, high: 1}}\n")
    assert _run(str(SCRIPTS / "faults.py"), "--space", str(space), "--n-trials", "2") == 3
    assert "no trial completed" in capsys.readouterr().err


def test_trial_timeout_fails_the_trial(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAULT", "hang")
    space = tmp_path / "s.yaml"
    space.write_text("name: hang\nparams: {x: {type: float, low: 0, high: 1}}\n")
    t0 = time.monotonic()
    assert (
        _run(
            str(SCRIPTS / "faults.py"),
            "--space",
            str(space),
            "--n-trials",
            "1",
            "--trial-timeout",
            "1",
        )
        == 3
    )
    assert time.monotonic() - t0 < 15
    (t,) = _trials(tmp_path / "studies" / "hang.db", "hang")
    assert t.state == TrialState.FAIL and "timed out" in t.user_attrs[TrialAttr.FAIL_REASON.key]


def test_pruning_prunes_poor_trials(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUAD_STEPS", "6")
    assert (
        _run(
            str(SCRIPTS / "quad.py"),
            "--space",
            str(SPACES / "quad.yaml"),
            "--n-trials",
            "20",
            "--seed",
            "0",
            "--sampler",
            "random",
            "--pruner",
            "median",
        )
        == 0
    )
    trials = _trials(tmp_path / "studies" / "quad.db", "quad")
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "the median pruner should stop some of 20 random trials"
    for t in pruned:
        assert "pruned at step" in t.user_attrs[TrialAttr.PRUNE_REASON.key]
        assert max(t.intermediate_values) < 5  # stopped early, not after all 6 steps
    complete = [t.value for t in trials if t.state == TrialState.COMPLETE]
    assert min(complete) <= min(min(t.intermediate_values.values()) for t in pruned)


def test_no_pruner_runs_every_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUAD_STEPS", "6")
    assert (
        _run(
            str(SCRIPTS / "quad.py"),
            "--space",
            str(SPACES / "quad.yaml"),
            "--n-trials",
            "10",
            "--seed",
            "0",
            "--sampler",
            "random",
            "--pruner",
            "none",
        )
        == 0
    )
    trials = _trials(tmp_path / "studies" / "quad.db", "quad")
    assert all(t.state == TrialState.COMPLETE for t in trials)


def test_a_study_resumes_when_only_help_texts_or_the_hash_recipe_changed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quad = [str(SCRIPTS / "quad.py"), "--pruner", "none", "--progress", "none"]
    assert _run(*quad, "--space", str(SPACES / "quad.yaml"), "--n-trials", "1") == 0
    helped = tmp_path / "helped.yaml"
    text = (SPACES / "quad.yaml").read_text()
    helped.write_text(text.replace("high: 1.0}", "high: 1.0, help: the first axis}", 1))
    assert _run(*quad, "--space", str(helped), "--n-trials", "2") == 0
    # a study whose hash an older mttune recorded (it covered help texts)
    study = optuna.load_study(study_name="quad", storage=f"sqlite:///{tmp_path}/studies/quad.db")
    study.set_user_attr(StudyAttr.SPACE_HASH.key, load_space(helped).legacy_hash)
    assert _run(*quad, "--space", str(helped), "--n-trials", "3") == 0
    assert len(_trials(tmp_path / "studies" / "quad.db", "quad")) == 3
    assert (
        optuna.load_study(
            study_name="quad", storage=f"sqlite:///{tmp_path}/studies/quad.db"
        ).user_attrs[StudyAttr.SPACE_HASH.key]
        == load_space(helped).hash
    )


def test_space_and_direction_mismatch_are_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert (
        _run(str(SCRIPTS / "quad.py"), "--space", str(SPACES / "quad.yaml"), "--n-trials", "1")
        == 0
    )
    other = tmp_path / "other.yaml"
    other.write_text((SPACES / "quad.yaml").read_text().replace("high: 1.0}", "high: 2.0}"))
    assert _run(str(SCRIPTS / "quad.py"), "--space", str(other), "--n-trials", "2") == 1
    err = capsys.readouterr().err
    assert "another search space" in err and "'x'" in err
    flipped = tmp_path / "max.yaml"
    flipped.write_text((SPACES / "quad.yaml").read_text().replace("minimize", "maximize"))
    assert _run(str(SCRIPTS / "quad.py"), "--space", str(flipped), "--n-trials", "2") == 1
    assert "minimizes, but the space says 'maximize'" in capsys.readouterr().err
    assert len(_trials(tmp_path / "studies" / "quad.db", "quad")) == 1


def test_bad_space_file_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("params: {x: {type: float, low: 3, high: 1}}\n")
    assert _run(str(SCRIPTS / "quad.py"), "--space", str(bad)) == 1
    err = capsys.readouterr().err
    assert "low (3) must be <= high (1)" in err and "'x'" in err
    assert not (tmp_path / "studies").exists()


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["--help"], 0, "examples:"),
        (["run", "--help"], 0, "train(params: dict, report)"),
        (["run", "x.py"], 2, "--space"),
        (["run", "x.py", "--space", "s.yaml", "--sampler", "nope"], 2, "invalid choice"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)
def test_cli_help_and_usage_errors(argv, code, needle):
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == code
    assert needle in proc.stdout + proc.stderr


def _start_run(tmp_path: Path, n_trials: int, extra_env: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, **extra_env}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tuner",
            "run",
            str(SCRIPTS / "quad.py"),
            "--space",
            str(SPACES / "quad.yaml"),
            "--n-trials",
            str(n_trials),
            "--seed",
            "0",
            "--heartbeat",
            "1",
            "--progress",
            "lines",
            "--pruner",
            "none",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _check_resumed(tmp_path: Path, n_trials: int) -> None:
    proc = _start_run(tmp_path, n_trials, {"QUAD_SLEEP": "0.1"})
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    trials = _trials(tmp_path / "studies" / "quad.db", "quad")
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert interrupted and all(t.user_attrs.get(TrialAttr.INTERRUPTED.key) for t in interrupted)
    retries = {
        t.user_attrs[TrialAttr.RETRY_OF.key]: t
        for t in trials
        if TrialAttr.RETRY_OF.key in t.user_attrs
    }
    # each interrupted trial was re-run once with the params it had; one killed between two
    # suggestions keeps the ones it had and samples the rest afresh, and one killed before it
    # got any params has nothing to re-run (a new trial takes its place)
    rerun = [t for t in interrupted if t.params]
    for t in rerun:
        assert retries[t.number].params.items() >= t.params.items()
        assert retries[t.number].state == TrialState.COMPLETE
    assert len(retries) == len(rerun)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == n_trials


@pytest.mark.slow
def test_ctrl_c_then_resume(tmp_path):
    proc = _start_run(tmp_path, 6, {"QUAD_SLEEP": "0.4", "QUAD_STEPS": "5"})
    _wait_for_trials(tmp_path / "studies" / "quad.db", "COMPLETE", 2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "resume it" in out
    trials = _trials(tmp_path / "studies" / "quad.db", "quad")
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    _check_resumed(tmp_path, 6)


@pytest.mark.slow
def test_sigkill_then_resume_recovers_the_running_trial(tmp_path):
    proc = _start_run(tmp_path, 6, {"QUAD_SLEEP": "0.4", "QUAD_STEPS": "5"})
    db = tmp_path / "studies" / "quad.db"
    _wait_for_trials(db, "COMPLETE", 2)
    _wait_for_trials(db, "RUNNING", 1)
    proc.kill()
    proc.communicate(timeout=30)
    trials = _trials(db, "quad")
    assert [t for t in trials if t.state == TrialState.RUNNING], "a trial was left RUNNING"
    _check_resumed(tmp_path, 6)
