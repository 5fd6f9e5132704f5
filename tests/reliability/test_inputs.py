"""Inputs that used to validate and crash later: a one-line error (exit 1), nothing written."""

from __future__ import annotations

import os
import textwrap
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import REPO, SCRIPTS
from tuner.cli import main
from tuner.space import SpaceError, parse_space

QUAD = [str(SCRIPTS / "quad.py"), "--space", str(REPO / "tests" / "spaces" / "quad.yaml")]

_ECHO = """\
#!/usr/bin/env python3
import sys
if sys.argv[1:3] != ["--epochs", "5"]:
    sys.exit(f"expected --epochs 5 first, got {sys.argv[1:]}")
print('{"value": 1.0}')
"""


def _space(tmp_path, params: str, name: str = "s") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nobjective: value\nparams:\n" + textwrap.indent(params, "  "))
    return str(path)


def _nothing_written(tmp_path) -> bool:
    return not (tmp_path / "studies").exists()


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ("x: {type: float, low: 0, high: 1, step: 5.0e-324}", "too many steps"),
        ("x: {type: float, low: -1.0e+308, high: 1.0e+308}", "high - low"),
        ("x: {type: int, low: -9.0e+307, high: 9.0e+307}", "high - low"),
        ("x: {type: int, low: 0, high: 100000000000000000}", "2**53"),
    ],
)
def test_spaces_whose_ranges_overflow_are_refused(params, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    space = _space(tmp_path, params)
    assert main(["run", str(SCRIPTS / "quad.py"), "--space", space, "--progress", "none"]) == 1
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert _nothing_written(tmp_path)


def test_the_widest_ranges_allowed_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = _space(
        tmp_path,
        "x: {type: float, low: -4.0e+306, high: 4.0e+306}\n"
        "n: {type: int, low: -9007199254740992, high: 9007199254740992}",
    )
    (tmp_path / "f.py").write_text("def train(params, report):\n    return 1.0\n")
    argv = ["run", "f.py", "--space", space, "--n-trials", "12", "--progress", "none"]
    assert main(argv) == 0  # TPE past its startup trials too
    trials = optuna.load_study(study_name="s", storage="sqlite:///studies/s.db").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 12


def test_a_yaml_alias_bomb_is_refused_at_once():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, prev in zip("bcdefghi", "abcdefgh", strict=True):
        lines.append(f"{i}: &{i} [{','.join(['*' + prev] * 9)}]")
    text = "name: s\nparams:\n  x:\n    type: float\n    low: 0\n    high: 1\n    help:\n"
    text += textwrap.indent("\n".join(lines), "      ")
    assert len(text) < 1000
    start = time.monotonic()
    with pytest.raises(SpaceError, match="alias"):
        parse_space(text)
    assert time.monotonic() - start < 1


def test_thirty_thousand_choices_are_checked_fast():
    choices = ", ".join(f"c{i}" for i in range(30_000))
    start = time.monotonic()
    space = parse_space(f"params:\n  x: {{type: categorical, choices: [{choices}]}}\n")
    assert len(space.params["x"].distribution.choices) == 30_000
    assert time.monotonic() - start < 3


@pytest.mark.parametrize(
    "params",
    [
        'x: {type: float, low: 0, high: 1}\n"a\\0b": {type: int, low: 0, high: 3}',
        'x: {type: categorical, choices: [ok, "n\\0ul"]}',
    ],
)
def test_nul_bytes_in_names_or_choices_are_refused(params, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    space = _space(tmp_path, params)
    assert main(["run", str(SCRIPTS / "quad.py"), "--space", space, "--progress", "none"]) == 1
    err = capsys.readouterr().err
    assert "NUL" in err and "Traceback" not in err
    assert _nothing_written(tmp_path)


@pytest.mark.parametrize(
    "order",
    [
        ["echo", "--space", "S", "--n-trials", "2", "--", "--epochs", "5"],
        ["--space", "S", "--n-trials", "2", "--", "echo", "--epochs", "5"],
        ["echo", "--epochs", "5", "--space", "S", "--n-trials", "2"],  # no '--': refused
    ],
)
def test_script_arguments_after_dashdash(order, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "echo").write_text(_ECHO)
    (tmp_path / "echo").chmod(0o755)
    space = _space(tmp_path, "x: {type: float, low: 0, high: 1}")
    argv = ["run", *[space if a == "S" else a for a in order], "--progress", "none"]
    if "--" not in order:  # '--epochs' is an option of run: refused by argparse
        with pytest.raises(SystemExit):
            main(argv)
        return
    assert main(argv) == 0
    trials = optuna.load_study(study_name="s", storage="sqlite:///studies/s.db").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2  # it saw --epochs 5


def test_verify_takes_script_arguments_after_dashdash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "echo").write_text(_ECHO)
    (tmp_path / "echo").chmod(0o755)
    space = _space(tmp_path, "x: {type: float, low: 0, high: 1}")
    run = ["run", "echo", "--space", space, "--n-trials", "2", "--progress", "none"]
    assert main([*run, "--", "--epochs", "5"]) == 0
    verify = ["verify", "studies/s.db", "--study", "s", "echo", "--top-k", "1", "--repeats", "2"]
    assert main([*verify, "--perturb", "0", "--", "--epochs", "5"]) == 0


def test_an_over_long_study_name_or_storage_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    long = "s" * 300
    for argv in (
        ["run", *QUAD, "--study", long, "--progress", "none"],
        ["run", *QUAD, "--storage", f"{long}.db", "--progress", "none"],
        ["review", f"{long}.db"],
        ["review", f"{long}.log"],
    ):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert "too long" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_heartbeat_beyond_any_clock_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["run", *QUAD, "--heartbeat", str(10**20), "--progress", "none"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "--heartbeat" in err and "Traceback" not in err
    assert _nothing_written(tmp_path)


@pytest.mark.parametrize("command", ["run", "review"])
def test_a_fifo_as_storage_is_refused_without_hanging(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("pipe.db", "pipe.log"):
        os.mkfifo(tmp_path / name)
        argv = (
            ["run", *QUAD, "--storage", name, "--progress", "none"]
            if command == "run"
            else ["review", name]
        )
        result: list[int] = []
        worker = threading.Thread(target=lambda a=argv, r=result: r.append(main(a)), daemon=True)
        worker.start()
        worker.join(timeout=60)
        if worker.is_alive():  # unblock the thread stuck opening the FIFO, then fail
            with open(tmp_path / name, "wb"):
                pass
            pytest.fail(f"mttune {command} hangs on a FIFO as --storage")
        assert result == [1]
        assert "not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize("jobs", ["1", "4"])
def test_an_in_memory_sqlite_url_runs_without_warnings(tmp_path, monkeypatch, capsys, jobs):
    """One in-memory database for every thread, the heartbeat's and the trials' (--n-jobs)."""
    monkeypatch.chdir(tmp_path)
    argv = ["run", *QUAD, "--storage", "sqlite://", "--n-trials", "8", "--progress", "none"]
    assert main([*argv, "--n-jobs", jobs]) == 0
    out, err = capsys.readouterr()
    assert "no such table" not in err and "warning" not in err.lower()
    assert "the study was in memory" in out and "review it" not in out
