"""Script output beyond what a float or a 64-bit step holds: a FAILED trial, on both backends.

A number too big for a float (``10**400``), a step that is not finite (``Infinity``, ``NaN``)
or too big for SQLite's INTEGER (``1e300``, ``2**70``) is the script's fault: the trial FAILs
with a reason (it is not left interrupted, so a resume does not run it again), ``mttune run``
and ``mttune verify`` go on.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import REPO
from tests.runners.conftest import kill_marker, local_ray  # noqa: F401 (fixtures)
from tuner.cli import main
from tuner.runners import ScriptSpec, run_script
from tuner.studies import TrialAttr

SPACE = (REPO / "tests" / "spaces" / "s1.yaml").read_text()

# (stdout line of a command-form script, what the failure reason says)
BAD_LINES = {
    "int beyond floats": ('{"value": 1' + "0" * 400 + "}", "objective 'value' is inf"),
    "infinite step": ('{"step": Infinity, "value": 1.0}', "step inf"),
    "NaN step": ('{"step": NaN, "value": 1.0}', "step nan"),
    "float step beyond 64 bits": ('{"step": 1e300, "value": 1.0}', "beyond 64-bit"),
    "int step beyond 64 bits": (json.dumps({"step": 2**70, "value": 1.0}), "beyond 64-bit"),
    "intermediate beyond floats": ('{"step": 1, "value": 1' + "0" * 400 + "}", "is inf"),
}


def _command_script(tmp_path: Path, line: str) -> Path:
    script = tmp_path / "bad.py"
    script.write_text(f"print('{{\"value\": 0.5}}')\nprint({line!r})\n")
    return script


@pytest.mark.parametrize("case", BAD_LINES)
def test_a_number_beyond_floats_or_steps_fails_the_trial_with_a_reason(tmp_path, case):
    line, reason = BAD_LINES[case]
    spec = ScriptSpec.detect(str(_command_script(tmp_path, line)), objective="value")
    outcome = run_script(spec, {"x": 0.1})
    assert outcome.state == "failed", outcome
    assert reason in outcome.reason


def _python_script(tmp_path: Path) -> Path:
    """Trial 0 returns 10**400, trial 1 reports step 2**70, the others are fine."""
    script = tmp_path / "f.py"
    script.write_text(
        textwrap.dedent(
            """\
            import os

            def train(params, report):
                n = int(os.environ["MTTUNE_TRIAL_NUMBER"])
                if n == 0:
                    return {"value": 10**400}
                if n == 1:
                    report(2**70, 0.5)
                return params["x"] ** 2 + params["y"]
            """
        )
    )
    return script


@pytest.fixture(params=["optuna", pytest.param("ray", marks=pytest.mark.ray)])
def backend(request) -> str:
    if request.param == "ray":
        request.getfixturevalue("local_ray")
    return request.param


def test_run_records_big_numbers_as_failed_trials_on_both_backends(backend, tmp_path):
    (tmp_path / "space1.yaml").write_text(SPACE)
    db = tmp_path / "s.db"
    args = [
        "run",
        str(_python_script(tmp_path)),
        "--space",
        str(tmp_path / "space1.yaml"),
        "--storage",
        str(db),
        "--n-trials",
        "4",
        "--backend",
        backend,
        "--progress",
        "none",
        *(["--pruner", "none"] if backend == "optuna" else ["--scheduler", "none"]),
    ]
    if backend == "ray":
        args += ["--workers", "1"]
    assert main(args) == 0
    trials = optuna.load_study(study_name="s1", storage=f"sqlite:///{db}").trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2 + [TrialState.COMPLETE] * 2
    reasons = [TrialAttr.FAIL_REASON.get(t.user_attrs) for t in trials[:2]]
    assert "objective 'value' is inf" in reasons[0] and "beyond 64-bit" in reasons[1]
    assert not any(TrialAttr.INTERRUPTED.get(t.user_attrs) for t in trials)
    assert main(args) == 0  # the study is at its target: a resume runs nothing again
    assert len(optuna.load_study(study_name="s1", storage=f"sqlite:///{db}").trials) == 4


def test_verify_records_a_big_number_as_a_failed_run(tmp_path, capsys):
    (tmp_path / "space1.yaml").write_text(SPACE)
    db = tmp_path / "s.db"
    good = tmp_path / "good.py"
    good.write_text("def train(params, report):\n    return params['x'] ** 2\n")
    run = ["run", str(good), "--space", str(tmp_path / "space1.yaml"), "--storage", str(db)]
    assert main([*run, "--n-trials", "6", "--progress", "none", "--seed", "0"]) == 0
    big = tmp_path / "big.py"
    big.write_text("def train(params, report):\n    return {'value': 10**400}\n")
    code = main(["verify", str(db), "--study", "s1", str(big), "--top-k", "1", "--repeats", "2"])
    assert code == 3  # ran, but no run completed: the exit code that says so
    err = capsys.readouterr().err
    assert "Traceback" not in err and "FAILED: objective 'value' is inf" in err
    trials = optuna.load_study(study_name="s1", storage=f"sqlite:///{db}").trials
    runs = [t for t in trials if TrialAttr.VERIFY.has(t.user_attrs)]
    assert runs and all(t.state == TrialState.FAIL for t in runs)
    assert all("is inf" in TrialAttr.FAIL_REASON.get(t.user_attrs) for t in runs)


def _steps_script(tmp_path: Path, n: int) -> ScriptSpec:
    script = tmp_path / "steps.py"
    script.write_text(
        f"for s in range({n}):\n"
        '    print(\'{"step": %d, "value": %g}\' % (s, 1.0 / (s + 1)))\n'
        "print('{\"value\": 0.25}')\n"
    )
    return ScriptSpec.detect(str(script), objective="value")


def test_thousands_of_reports_cost_the_runner_little_each(tmp_path):
    """A report costs a storage write and a pruner's look at the study (here 20 ms): a
    script that reports 3000 steps in a burst must not wait 3000 of them."""
    calls: list[int] = []

    def slow_storage(step: int, value: float) -> bool:
        calls.append(step)
        time.sleep(0.02)
        return False

    outcome = run_script(_steps_script(tmp_path, 3000), {}, on_report=slow_storage)
    assert outcome.state == "complete" and outcome.value == 0.25
    assert 20 <= len(calls) <= 300, len(calls)
    assert outcome.intermediate[-1] == (2999, float("%g" % (1.0 / 3000)))  # the last is kept
    assert [s for s, _ in outcome.intermediate] == sorted({s for s, _ in outcome.intermediate})


def test_the_trial_timeout_measures_the_script_not_the_reading_of_its_output(tmp_path):
    """The script prints 15 reports and exits at once; recording them takes 4.5 s here."""

    def slow_storage(step: int, value: float) -> bool:
        time.sleep(0.3)
        return False

    outcome = run_script(_steps_script(tmp_path, 15), {}, timeout=2, on_report=slow_storage)
    assert outcome.state == "complete", outcome.reason
    assert len(outcome.intermediate) == 15


def test_run_records_a_script_of_many_reports_within_its_trial_timeout(tmp_path):
    (tmp_path / "space1.yaml").write_text(SPACE)
    script = tmp_path / "many.py"
    script.write_text(
        "def train(params, report):\n"
        "    for s in range(1500):\n"
        "        report(s, params['x'] ** 2 + 1.0 / (s + 1))\n"
        "    return params['x'] ** 2\n"
    )
    db = tmp_path / "s.db"
    args = ["run", str(script), "--space", str(tmp_path / "space1.yaml"), "--storage", str(db)]
    assert main([*args, "--n-trials", "2", "--trial-timeout", "10", "--progress", "none"]) == 0
    trials = optuna.load_study(study_name="s1", storage=f"sqlite:///{db}").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(max(t.intermediate_values) == 1499 for t in trials)  # the last report
