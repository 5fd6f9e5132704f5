"""Scripts that bend the trial protocol: odd results, closed pipes, daemons, odd names."""

from __future__ import annotations

import os
import signal
import textwrap
import time

import pytest

from tuner.runners import ScriptSpec, run_script


def _script(tmp_path, body: str, name: str = "train.py") -> ScriptSpec:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    if not name.endswith(".py"):
        path.chmod(0o755)
    return ScriptSpec.detect(path)


@pytest.mark.parametrize("key", ["epoch", "step"])
def test_a_returned_dict_with_an_epoch_or_step_key_is_the_final_result(tmp_path, key):
    spec = _script(
        tmp_path,
        f"""
        def train(params, report):
            report(1, 3.0)
            return {{"value": 0.25, "{key}": 5, "acc": 0.9}}
        """,
    )
    assert spec.form == "python"
    # a pruner that prunes everything: a final result must never reach it
    outcome = run_script(spec, {}, on_report=lambda step, value: step == 5)
    assert outcome.state == "complete", outcome.reason
    assert outcome.value == 0.25
    assert outcome.metrics == {"value": 0.25, key: 5, "acc": 0.9}
    assert outcome.intermediate == [(1, 3.0)]


def test_a_script_that_closes_its_pipes_and_keeps_running_keeps_its_result(tmp_path):
    spec = _script(
        tmp_path,
        """\
        #!/usr/bin/env python3
        import os, sys, time
        print('{"value": 0.5}', flush=True)
        os.close(1)
        os.close(2)
        time.sleep(2)
        """,
        name="closer",
    )
    start = time.monotonic()
    outcome = run_script(spec, {}, timeout=30)
    assert outcome.state == "complete", outcome.reason
    assert outcome.value == 0.5
    assert time.monotonic() - start >= 1.9  # it was waited for, not killed


def test_a_script_that_closes_its_pipes_still_meets_the_trial_timeout(tmp_path):
    spec = _script(
        tmp_path,
        """\
        #!/usr/bin/env python3
        import os, time
        os.close(1)
        os.close(2)
        time.sleep(60)
        """,
        name="closer",
    )
    start = time.monotonic()
    outcome = run_script(spec, {}, timeout=1.5, kill_grace=0.5)
    assert outcome.state == "failed"
    assert "timed out" in outcome.reason
    assert time.monotonic() - start < 10


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has exited
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="Linux /proc needed")
def test_a_setsid_double_forked_daemon_does_not_outlive_its_trial(tmp_path):
    pidfile = tmp_path / "daemon.pid"
    spec = _script(
        tmp_path,
        f"""\
        #!/usr/bin/env python3
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                with open({str(pidfile)!r}, "w") as f:
                    f.write(str(os.getpid()))
                time.sleep(120)
            os._exit(0)
        os.wait()
        while not os.path.exists({str(pidfile)!r}):
            time.sleep(0.05)
        print('{{"value": 1.0}}')
        """,
        name="daemonize",
    )
    outcome = run_script(spec, {}, timeout=60)
    assert outcome.state == "complete", outcome.reason
    pid = int(pidfile.read_text())
    try:
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), "the daemon outlived its trial"
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_nul_byte_in_a_command_line_parameter_fails_the_trial(tmp_path):
    spec = _script(tmp_path, "#!/bin/sh\necho '{\"value\": 1}'\n", name="cmd")
    outcome = run_script(spec, {"a": "n\0ul"})
    assert outcome.state == "failed"
    assert "cannot start the script" in outcome.reason and "null byte" in outcome.reason
