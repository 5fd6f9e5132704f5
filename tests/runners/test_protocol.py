"""The trial protocol against real subprocesses: both script forms and every failure mode."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import SCRIPTS
from tuner.runners import ScriptError, ScriptSpec, TrialOutcome, outcome_attrs, run_script
from tuner.runners._protocol import parse_metrics_line
from tuner.studies import TrialAttr


def test_python_form_reports_and_returns_metrics():
    spec = ScriptSpec.detect(SCRIPTS / "quad.py")
    assert spec.form == "python"
    out = run_script(spec, {"x": 0.5, "y": 0.0}, seed=3)
    assert out.state == "complete"
    assert out.value == pytest.approx(0.2**2 + 0.1**2)
    assert out.metrics["extra"] == 1.5
    assert [s for s, _ in out.intermediate] == [0, 1, 2]
    # the script's print() went to stderr, not into the protocol
    assert "this print goes to stderr" in out.stderr_tail
    assert out.exit_code == 0


def test_command_form_gets_args_env_and_seed():
    spec = ScriptSpec.detect(SCRIPTS / "quad_cli.py", objective="loss")
    assert spec.form == "command"
    out = run_script(spec, {"x": 0.7}, seed=42)
    assert out.state == "complete", out.reason
    assert out.value == pytest.approx(0.4**2)
    assert out.metrics["seed"] == 42
    assert [round(v, 6) for _, v in out.intermediate] == [
        round(0.16 + 1.0 / (s + 1), 6) for s in range(3)
    ]


def test_executable_shell_script(tmp_path):
    script = tmp_path / "train.sh"
    script.write_text('#!/bin/sh\necho "{\\"loss\\": 0.5, \\"argc\\": $#}"\n')
    script.chmod(0o755)
    out = run_script(ScriptSpec.detect(script, objective="loss"), {"a": 1, "b": "x"})
    assert out.state == "complete"
    assert out.value == 0.5 and out.metrics["argc"] == 4


def test_non_executable_command_is_a_clear_error(tmp_path):
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/sh\necho 1\n")
    script.chmod(0o644)
    with pytest.raises(ScriptError, match="chmod"):
        ScriptSpec.detect(script)


def test_missing_script_and_forced_python_form(tmp_path):
    with pytest.raises(ScriptError, match="not found"):
        ScriptSpec.detect(tmp_path / "nope.py")
    with pytest.raises(ScriptError, match="def train"):
        ScriptSpec.detect(SCRIPTS / "quad_cli.py", form="python")
    bad = tmp_path / "bad.py"
    bad.write_text("def train(:\n")
    with pytest.raises(ScriptError, match="does not parse"):
        ScriptSpec.detect(bad)


FAULTS = [
    ("crash", "exited with code 1: ZeroDivisionError: deliberate crash in user code"),
    ("exit", "exited with code 7"),
    ("exit_message", "exited with code 1: bad config: depth must be even"),
    ("segfault", "killed by SIGSEGV"),
    ("nan", "objective 'value' is nan"),
    ("inf", "objective 'value' is inf"),
    ("none_result", "exited with code 3"),
    ("string_result", "is 'high', not a number"),
    ("missing_key", "no 'value' key"),
]


@pytest.mark.parametrize(("fault", "reason"), FAULTS)
def test_python_faults_fail_the_trial_with_a_reason(fault, reason):
    out = run_script(ScriptSpec.detect(SCRIPTS / "faults.py"), {"fault": fault})
    assert out.state == "failed"
    assert reason in out.reason


def test_a_clean_sys_exit_ends_the_trial_like_a_return():
    out = run_script(ScriptSpec.detect(SCRIPTS / "faults.py"), {"fault": "exit_clean"})
    assert (out.state, out.value, out.exit_code) == ("complete", 0.25, 0)


def test_stderr_flood_keeps_only_a_tail():
    out = run_script(ScriptSpec.detect(SCRIPTS / "faults.py"), {"fault": "stderr_flood"})
    assert out.state == "complete"
    assert 0 < len(out.stderr_tail) <= 4096


def test_a_failed_trial_keeps_the_last_4_kib_of_stderr():
    """docs/attributes.md promises the whole tail the protocol keeps (``mttune.stderr_tail``)."""
    tail = "x" * 5000
    attrs = outcome_attrs(TrialOutcome("failed", reason="boom", stderr_tail=tail))
    assert attrs[TrialAttr.STDERR_TAIL.key] == tail[-4096:]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("garbage", "no JSON metrics on stdout (2 line(s) of other text"),
        ("nothing", "the script printed nothing on stdout"),
        ("stderr_only", "the script printed nothing on stdout"),
        ("binary", "no JSON metrics on stdout"),
        ("huge", "printed more than"),
        ("nan", "is nan"),
    ],
)
def test_command_output_faults(monkeypatch, mode, reason):
    monkeypatch.setenv("RAW_MODE", mode)
    t0 = time.monotonic()
    out = run_script(ScriptSpec.detect(SCRIPTS / "raw_output.py"), {}, max_output_bytes=1 << 20)
    assert out.state == "failed"
    assert reason in out.reason
    assert time.monotonic() - t0 < 30


def test_only_step_lines_use_the_last_value(monkeypatch):
    monkeypatch.setenv("RAW_MODE", "last_step_only")
    out = run_script(ScriptSpec.detect(SCRIPTS / "raw_output.py"), {})
    assert out.state == "complete" and out.value == 1.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_hang_is_killed_at_timeout_children_included(tmp_path):
    pid_file = tmp_path / "child.pid"
    os.environ["PID_FILE"] = str(pid_file)
    try:
        t0 = time.monotonic()
        out = run_script(
            ScriptSpec.detect(SCRIPTS / "faults.py"),
            {"fault": "hang_children"},
            timeout=3,
            kill_grace=0.5,
        )
    finally:
        del os.environ["PID_FILE"]
    assert out.state == "failed" and "timed out after 3 s" in out.reason
    assert time.monotonic() - t0 < 10
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the script's child outlived the trial"


def test_sigterm_ignoring_script_is_killed():
    t0 = time.monotonic()
    out = run_script(
        ScriptSpec.detect(SCRIPTS / "faults.py"),
        {"fault": "ignore_sigterm"},
        timeout=2,
        kill_grace=0.5,
    )
    assert out.state == "failed" and "timed out" in out.reason
    assert out.exit_code == -signal.SIGKILL
    assert time.monotonic() - t0 < 8


def test_pruning_callback_stops_the_script(monkeypatch):
    monkeypatch.setenv("QUAD_STEPS", "50")
    monkeypatch.setenv("QUAD_SLEEP", "0.05")
    seen = []

    def on_report(step, value):
        seen.append(step)
        return step >= 2

    t0 = time.monotonic()
    out = run_script(ScriptSpec.detect(SCRIPTS / "quad.py"), {"x": 0.0}, on_report=on_report)
    assert out.state == "pruned" and "step 2" in out.reason
    assert seen == [0, 1, 2]
    assert time.monotonic() - t0 < 2.5  # did not run the 50 steps


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('  {"a": 1}  \n', {"a": 1}),
        ("[1, 2]", None),
        ("loss 0.3", None),
        ("{broken", None),
        ("{" * 5000 + "}" * 5000, None),
        ('{"v": NaN}', "nan"),
    ],
)
def test_parse_metrics_line(line, expected):
    got = parse_metrics_line(line)
    if expected == "nan":
        assert got["v"] != got["v"]
    else:
        assert got == expected
