"""Scenarios both backends must run the same way: ``mttune run`` with each ``--backend``.

Each test runs once per backend, on real scripts and SQLite studies: the Optuna backend from
this process, the Ray backend on a local Ray (2 CPUs) started once for the module when a Ray
case runs (``-m "not ray"`` leaves those out). What a trial records must not depend on the
backend: ``mttune review`` cannot tell them apart.
"""

from __future__ import annotations

import itertools
import json
import os

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import REPO, SCRIPTS
from tests.runners._studies import trials as _trials
from tests.runners.conftest import SLEEP_S
from tuner.cli import main
from tuner.runners import (
    RayOptions,
    RunOptions,
    RunSummary,
    ScriptSpec,
    create_or_resume_study,
    make_pruner,
    make_sampler,
    run_ray,
    run_study,
    trial_seed,
)
from tuner.space import SearchSpace, load_space
from tuner.studies import TrialAttr

SPACES = REPO / "tests" / "spaces"
# what each complete trial of quad.py records, whichever backend ran it
QUAD_ATTRS = {
    TrialAttr.RUNNER.key,
    TrialAttr.SEED.key,
    TrialAttr.DURATION.key,
    TrialAttr.EXIT_CODE.key,
    TrialAttr.METRICS.key,
    TrialAttr.metric("value"),  # each metric on its own too, for optuna-dashboard
    TrialAttr.metric("extra"),
}


@pytest.fixture(params=["optuna", pytest.param("ray", marks=pytest.mark.ray)])
def backend(request) -> str:
    """The backend of the test: ``optuna``, or ``ray`` (on the module's local Ray)."""
    if request.param == "ray":
        request.getfixturevalue("local_ray")
    return request.param


def _run(backend: str, *args: str, parallel: int | None = None) -> int:
    """``mttune run ARGS`` on ``backend`` without early stopping, ``parallel`` trials at once.

    ``parallel=None``: the backend's default (one at a time; on Ray, as many as its CPUs).
    """
    optuna_backend = backend == "optuna"
    extra = ["--pruner" if optuna_backend else "--scheduler", "none"]
    if parallel is not None:
        extra += ["--n-jobs" if optuna_backend else "--workers", str(parallel)]
    return main(["run", *args, "--backend", backend, *extra, "--progress", "none"])


def _quad(*extra: str) -> list[str]:
    return [str(SCRIPTS / "quad.py"), "--space", str(SPACES / "quad.yaml"), *extra]


def test_python_form_records_each_trial_the_same_way(backend, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = _run(backend, *_quad("--n-trials", "4", "--seed", "1", "--sampler", "random"))
    assert code == 0
    out = capsys.readouterr().out
    assert "best trial" in out and "mttune review" in out
    trials = _trials(tmp_path / "studies" / "quad.db", "quad")
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert t.value == pytest.approx((t.params["x"] - 0.3) ** 2 + (t.params["y"] + 0.1) ** 2)
        assert sorted(t.intermediate_values) == [0, 1, 2]
        attrs = t.user_attrs
        assert set(attrs) == QUAD_ATTRS
        assert attrs[TrialAttr.METRICS.key]["extra"] == 1.5
        assert attrs[TrialAttr.metric("extra")] == 1.5
        assert attrs[TrialAttr.metric("value")] == t.value
        assert attrs[TrialAttr.SEED.key] == trial_seed(1, t.number)
        assert attrs[TrialAttr.EXIT_CODE.key] == 0 and attrs[TrialAttr.DURATION.key] > 0
        # this process owns the trial, also when a Ray worker ran its script
        assert attrs[TrialAttr.RUNNER.key]["pid"] == os.getpid()


def test_command_form_with_json_summary_keeps_stdout_clean(backend, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "elsewhere" / "s.db"
    code = _run(
        backend,
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
    summary = json.loads(capsys.readouterr().out)  # nothing but the summary on stdout
    trials = _trials(db, "quad-cli")
    assert summary["trials"]["ran_now"] == summary["trials"]["complete"] == len(trials) == 3
    assert summary["best"]["value"] == min(t.value for t in trials)
    assert summary["review"].startswith("mttune review")
    for t in trials:
        assert t.user_attrs[TrialAttr.METRICS.key]["seed"] == t.user_attrs[TrialAttr.SEED.key]


def _faults_study(tmp_path, faults: list[str]) -> tuple[optuna.Study, SearchSpace]:
    space = load_space(SPACES / "faults_all.yaml")
    study = create_or_resume_study(
        f"sqlite:///{tmp_path / 'f.db'}",
        "faults",
        space,
        make_sampler("random", 0),
        make_pruner("none"),
    )
    for fault in faults:
        study.enqueue_trial({"x": 0.5, "fault": fault})
    return study, space


def _run_library(
    backend: str, study: optuna.Study, space: SearchSpace, options: RunOptions
) -> RunSummary:
    script = ScriptSpec.detect(SCRIPTS / "faults.py")
    if backend == "optuna":
        return run_study(study, script, space, options)
    return run_ray(study, script, space, options, RayOptions(workers=2, scheduler="none"))


def test_failing_trials_are_recorded_and_the_run_goes_on(backend, tmp_path):
    faults = ["crash", "nan", "segfault", "hang", "exit", "none"]
    study, space = _faults_study(tmp_path, faults)
    options = RunOptions(n_trials=len(faults), trial_timeout=2, seed=0)
    summary = _run_library(backend, study, space, options)
    assert not summary.interrupted
    counts = summary.counts
    assert (counts.complete, counts.failed, counts.interrupted) == (1, 5, 0)
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
        assert needle in t.user_attrs[TrialAttr.FAIL_REASON.key], t.user_attrs
    assert "deliberate crash" in by_fault["crash"].user_attrs[TrialAttr.STDERR_TAIL.key]


def test_rerun_resumes_to_the_target_without_duplicates(backend, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = _quad("--seed", "0", "--sampler", "random")
    assert _run(backend, *args, "--n-trials", "3") == 0
    assert _run(backend, *args, "--n-trials", "3") == 0  # nothing missing: runs nothing
    assert len(_trials(tmp_path / "studies" / "quad.db", "quad")) == 3
    assert _run(backend, *args, "--n-trials", "5") == 0
    trials = _trials(tmp_path / "studies" / "quad.db", "quad")
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials)
    # the resumed run did not replay the first run's suggestions
    assert len({(t.params["x"], t.params["y"]) for t in trials}) == 5


def test_parallel_trials_really_overlap(backend, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLEEP_S", SLEEP_S)  # what the module's Ray workers got at its start
    args = [str(SCRIPTS / "sleepy.py"), "--space", str(SPACES / "quad.yaml"), "--study", "s"]
    assert _run(backend, *args, "--n-trials", "6", "--seed", "0", parallel=2) == 0
    trials = _trials(tmp_path / "studies" / "s.db", "s")
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    # the scripts themselves ran at the same time, not only their Optuna trials
    metrics = [t.user_attrs[TrialAttr.METRICS.key] for t in trials]
    spans = sorted((m["t_start"], m["t_end"]) for m in metrics)
    assert sum(b[0] < a[1] for a, b in itertools.pairwise(spans)) >= 2, spans
    dates = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(dates))
