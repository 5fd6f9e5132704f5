"""``mttune run --backend ray`` end to end: real local Ray (2 CPUs), real scripts, SQLite.

One local Ray serves the module (started and cleaned up as a run does); ``mttune run`` in
this process uses it. Scripts run in the environment of the Ray workers, fixed when Ray
starts, so the environment the test scripts need is set then. The interruption test starts
its own Ray in a subprocess.
"""

from __future__ import annotations

import itertools
import json
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
from tuner.runners import (
    RayOptions,
    RunOptions,
    ScriptSpec,
    create_or_resume_study,
    make_pruner,
    make_sampler,
    ray_cluster,
    run_ray,
    trial_seed,
)
from tuner.space import load_space
from tuner.studies import StudyAttr, TrialAttr

SPACES = REPO / "tests" / "spaces"
RAY_FAULT = "the Ray worker running the trial failed"
RAY_LINES = ["--backend", "ray", "--progress", "lines"]

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]


@pytest.fixture(scope="module")
def kill_marker(tmp_path_factory) -> Path:
    """The file the first trial of ``kill_runner.py`` creates before killing its worker."""
    return tmp_path_factory.mktemp("kill") / "killed.pid"


@pytest.fixture(scope="module")
def local_ray(kill_marker):
    """A local Ray for the module, started (and its files removed) as ``mttune run`` does."""
    temp_dir = Path(tempfile.mkdtemp(prefix="mtr-", dir="/tmp"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KILL_MARKER", str(kill_marker))
        with ray_cluster(RayOptions(workers=2, temp_dir=str(temp_dir))) as resources:
            assert resources["CPU"] >= 2
            yield resources
    assert not temp_dir.exists(), "a local Ray must leave no files behind"


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


def test_python_form_lands_in_the_study_like_the_optuna_backend(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = _quad("--seed", "1", "--sampler", "random")
    assert _run(*args, "--n-trials", "4", "--workers", "2", "--scheduler", "none") == 0
    assert "best trial" in capsys.readouterr().out
    trials = _trials(tmp_path / "studies" / "quad.db", "quad")
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert t.value == pytest.approx((t.params["x"] - 0.3) ** 2 + (t.params["y"] + 0.1) ** 2)
        assert sorted(t.intermediate_values) == [0, 1, 2]
        assert t.user_attrs[TrialAttr.METRICS.key]["extra"] == 1.5
        assert t.user_attrs[TrialAttr.SEED.key] == trial_seed(1, t.number)
        assert (
            t.user_attrs[TrialAttr.EXIT_CODE.key] == 0 and t.user_attrs[TrialAttr.DURATION.key] > 0
        )
        assert (
            t.user_attrs[TrialAttr.RUNNER.key]["pid"] == os.getpid()
        )  # the driver owns the trial
    # The Optuna backend writes the same attributes: review tools see no difference.
    local_db = tmp_path / "local.db"
    assert main(["run", *args, "--storage", str(local_db), "--n-trials", "1"]) == 0
    (local,) = _trials(local_db, "quad")
    assert set(local.user_attrs) == set(trials[0].user_attrs)


def test_command_form_with_json_summary_keeps_stdout_clean(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "cli.db"
    code = _run(
        str(SCRIPTS / "quad_cli.py"),
        "--space",
        str(SPACES / "quad_cli.yaml"),
        "--storage",
        str(db),
        "--n-trials",
        "3",
        "--seed",
        "0",
        "--json",
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)  # nothing from Ray on stdout
    trials = _trials(db, "quad-cli")
    assert summary["trials"]["ran_now"] == 3 == len(trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and summary["best"]["value"] == min(t.value for t in complete)
    assert all(
        t.user_attrs[TrialAttr.METRICS.key]["seed"] == t.user_attrs[TrialAttr.SEED.key]
        for t in complete
    )


def test_parallel_trials_really_overlap(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # sleepy.py sleeps 1 s
    args = [str(SCRIPTS / "sleepy.py"), "--space", str(SPACES / "quad.yaml"), "--study", "s"]
    assert _run(*args, "--n-trials", "4", "--workers", "2", "--seed", "0") == 0
    trials = _trials(tmp_path / "studies" / "s.db", "s")
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    # the scripts themselves ran at the same time, not only their Optuna trials
    spans = sorted(
        (
            t.user_attrs[TrialAttr.METRICS.key]["t_start"],
            t.user_attrs[TrialAttr.METRICS.key]["t_end"],
        )
        for t in trials
    )
    assert sum(b[0] < a[1] for a, b in itertools.pairwise(spans)) >= 2
    dates = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(dates))


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


def test_failing_trials_are_recorded_and_the_run_goes_on(tmp_path):
    space = load_space(SPACES / "faults_all.yaml")
    study = create_or_resume_study(
        f"sqlite:///{tmp_path / 'f.db'}",
        "faults",
        space,
        make_sampler("random", 0),
        make_pruner("none"),
    )
    faults = ["crash", "nan", "segfault", "hang", "exit", "none"]
    for fault in faults:
        study.enqueue_trial({"x": 0.5, "fault": fault})
    summary = run_ray(
        study,
        ScriptSpec.detect(SCRIPTS / "faults.py"),
        space,
        RunOptions(n_trials=len(faults), trial_timeout=2, seed=0),
        RayOptions(workers=2, scheduler="none"),
    )
    assert not summary.interrupted
    assert (summary.counts.complete, summary.counts.failed, summary.counts.interrupted) == (
        1,
        5,
        0,
    )
    by_fault = {t.params["fault"]: t for t in study.get_trials()}
    assert by_fault["none"].state == TrialState.COMPLETE
    expected = {
        "crash": "exited with code 1: ZeroDivisionError",
        "nan": "objective 'value' is nan",
        "segfault": "killed by SIGSEGV",
        "hang": "timed out after 2 s",
        "exit": "exited with code 7",
    }
    for fault, needle in expected.items():
        t = by_fault[fault]
        assert t.state == TrialState.FAIL and TrialAttr.INTERRUPTED.key not in t.user_attrs
        assert needle in t.user_attrs[TrialAttr.FAIL_REASON.key], t.user_attrs[
            TrialAttr.FAIL_REASON.key
        ]
    assert "deliberate crash" in by_fault["crash"].user_attrs[TrialAttr.STDERR_TAIL.key]


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


def test_rerun_resumes_to_the_target_without_duplicates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = _quad("--seed", "0", "--sampler", "random", "--scheduler", "none")
    assert _run(*args, "--n-trials", "3") == 0
    assert _run(*args, "--n-trials", "3") == 0  # nothing missing: runs nothing
    assert len(_trials(tmp_path / "studies" / "quad.db", "quad")) == 3
    assert _run(*args, "--n-trials", "5") == 0
    trials = _trials(tmp_path / "studies" / "quad.db", "quad")
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({(t.params["x"], t.params["y"]) for t in trials}) == 5


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
