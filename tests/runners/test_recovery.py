"""What a resumed run finds: trials of runners that died, on a real SQLite study."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tuner.runners._liveness import runner_attr
from tuner.runners._study import fail_dead_local_trials, fail_orphaned_trials
from tuner.studies import TrialAttr, open_storage

optuna.logging.set_verbosity(optuna.logging.ERROR)
# the heartbeat is used outside Study.optimize on purpose: these tests play the runner
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def _study(tmp_path) -> optuna.Study:
    storage = open_storage(str(tmp_path / "s.db"), heartbeat_interval=1, grace_period=2)
    return optuna.create_study(study_name="s", storage=storage)


def test_a_trial_killed_before_its_first_heartbeat_is_failed_as_interrupted(tmp_path):
    """Created, then its runner died before tagging it or beating once: no heartbeat row,
    so Optuna never calls it stale; after the grace period it is failed, not left RUNNING."""
    study = _study(tmp_path)
    orphan = study.ask()  # RUNNING, no `runner` attribute, no heartbeat
    messages: list[str] = []
    failed = fail_orphaned_trials(study, grace_period=1.0, log=messages.append)
    assert failed == [orphan.number]
    t = study.trials[orphan.number]
    assert t.state == TrialState.FAIL
    assert t.user_attrs[TrialAttr.INTERRUPTED.key] is True
    assert "before the trial started" in t.user_attrs[TrialAttr.FAIL_REASON.key]
    assert messages and "heartbeat" in messages[0]


def test_tagged_trials_of_live_runners_are_left_alone(tmp_path):
    study = _study(tmp_path)
    live = study.ask()
    live.set_user_attr(TrialAttr.RUNNER.key, runner_attr())  # this process: alive
    assert fail_orphaned_trials(study, grace_period=1.0) == []
    assert fail_dead_local_trials(study) == []
    assert study.trials[live.number].state == TrialState.RUNNING


def test_a_tagged_trial_of_a_dead_local_runner_is_failed_at_once(tmp_path):
    study = _study(tmp_path)
    dead = study.ask()
    dead.set_user_attr(
        TrialAttr.RUNNER.key, {**runner_attr(), "pid": 2**22 + 12345}
    )  # no such process
    assert fail_dead_local_trials(study) == [dead.number]
    t = study.trials[dead.number]
    assert t.state == TrialState.FAIL and t.user_attrs[TrialAttr.INTERRUPTED.key] is True


def test_runners_joining_one_study_get_their_own_seed(tmp_path):
    """Two `mttune run --seed 0` that open one new study together (both see no trials) must
    not draw the same configs: each runner's place in the study is part of its seed."""
    import argparse

    from tuner.cli._run import _open_study
    from tuner.runners import join_study, make_pruner
    from tuner.space import SearchSpace

    space = SearchSpace.from_dict(
        {
            "objective": {"name": "loss", "direction": "minimize"},
            "params": {"x": {"type": "float", "low": 0, "high": 1}},
        }
    )
    args = argparse.Namespace(heartbeat=10, seed=0, sampler="random", prior=None)
    url = f"sqlite:///{tmp_path / 'j.db'}"
    first = _open_study(args, url, "shared", space, None, make_pruner("none"))
    second = _open_study(args, url, "shared", space, None, make_pruner("none"))
    xs = [s.ask().suggest_float("x", 0, 1) for s in (first, second)]
    assert xs[0] != xs[1]
    # the first runner of a study keeps its seed (same seed, same run); later ones are set
    # apart by their unique ids, not by their clocks
    other = optuna.create_study(study_name="other", storage=url)
    assert join_study(other) == 0
    assert len({join_study(other) for _ in range(5)} - {0}) == 5


def test_storage_labels_never_show_a_password(tmp_path):
    from tuner.runners._study import public_url, storage_label

    assert (
        public_url("postgresql://me:s3cret@db.example/hpo") == "postgresql://me:***@db.example/hpo"
    )
    assert public_url("mysql+pymysql://me@db/hpo") == "mysql+pymysql://me@db/hpo"
    odd = "sqlite:////tmp/dü@x #1/s.db"  # a path that re-rendering would percent-encode
    assert public_url(odd) == odd
    study = _study(tmp_path)
    assert storage_label(study) == f"sqlite:///{tmp_path / 's.db'}"


def test_seeds_of_resumed_runs_stay_in_range(tmp_path):
    """The resume offset (1_000_003 per finished trial) wraps instead of overflowing."""
    import argparse

    from tuner.cli._run import _open_study
    from tuner.runners import make_pruner
    from tuner.space import SearchSpace

    space = SearchSpace.from_dict(
        {
            "objective": {"name": "loss", "direction": "minimize"},
            "params": {"x": {"type": "float", "low": 0, "high": 1}},
        }
    )
    url = f"sqlite:///{tmp_path / 'big.db'}"
    args = argparse.Namespace(heartbeat=10, seed=2**32 - 1, sampler="random", prior=None)
    study = _open_study(args, url, "big", space, None, make_pruner("none"))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    resumed = _open_study(args, url, "big", space, None, make_pruner("none"))
    assert 0 <= resumed.ask().suggest_float("x", 0, 1) <= 1


@pytest.mark.parametrize("queued", [False, True], ids=["alone", "re-run-queued"])
def test_a_trial_another_runner_failed_while_it_ran_keeps_its_result(
    tmp_path, monkeypatch, queued
):
    """A runner paused past its heartbeat's grace period (Ctrl-Z, a sleeping laptop) finds
    its trial failed by another runner: the run goes on and the result is kept as a retry
    (in the re-run the other runner queued, if it did: the config does not run twice)."""
    import threading
    import time

    from tests.conftest import REPO, SCRIPTS
    from tuner.runners import RunOptions, ScriptSpec, create_or_resume_study, run_study
    from tuner.runners._study import _fail_interrupted, recover_interrupted
    from tuner.space import load_space

    monkeypatch.setenv("QUAD_SLEEP", "0.4")
    space = load_space(REPO / "tests" / "spaces" / "quad.yaml")
    study = create_or_resume_study(
        f"sqlite:///{tmp_path / 'p.db'}", "quad", space, optuna.samplers.RandomSampler(0), None
    )

    def other_runner() -> None:  # takes the first running trial for dead once its script runs
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if running and TrialAttr.SEED.key in running[0].user_attrs:
                _fail_interrupted(study, running[0])
                if queued:
                    recover_interrupted(study)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=other_runner)
    thread.start()
    script = ScriptSpec.detect(SCRIPTS / "quad.py")
    summary = run_study(study, script, space, RunOptions(n_trials=2))
    thread.join()
    trials = study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs[TrialAttr.INTERRUPTED.key] is True
    kept = [t for t in trials if t.user_attrs.get(TrialAttr.RETRY_OF.key) == failed[0].number]
    assert len(kept) == 1 and kept[0].state == TrialState.COMPLETE
    assert kept[0].params == failed[0].params and kept[0].value is not None
    # the kept result is this runner's run (its seed and reports), not a re-run of the config
    assert kept[0].user_attrs[TrialAttr.SEED.key] == failed[0].user_attrs[TrialAttr.SEED.key]
    assert len(kept[0].intermediate_values) == 3
    assert summary.counts.complete == 2 and summary.counts.running == 0
    assert summary.counts.waiting == 0 and len(trials) == 3


def test_a_re_run_interrupted_before_it_got_its_parameters_is_queued_again(tmp_path):
    from tuner.runners._study import recover_interrupted

    study = _study(tmp_path)
    first = study.ask()
    first.suggest_float("lr", 0, 1)
    first.set_user_attr(TrialAttr.INTERRUPTED.key, True)
    study.tell(first, state=TrialState.FAIL)
    assert recover_interrupted(study) == [first.number]
    retry = study.ask()  # the next run stops before the objective suggests anything
    assert retry.params == {}
    retry.set_user_attr(TrialAttr.INTERRUPTED.key, True)
    study.tell(retry, state=TrialState.FAIL)
    assert recover_interrupted(study) == [retry.number]
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    assert waiting.system_attrs["fixed_params"] == study.trials[first.number].params
