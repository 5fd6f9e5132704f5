"""The built-in priors' benchmark: real runs of each method, failed trials, the report."""

from __future__ import annotations

import argparse
import math

import pytest

from benchmarks import builtin_priors as bench


@pytest.fixture
def short_mlp(monkeypatch):
    monkeypatch.setenv("MLP_EPOCHS", "2")


@pytest.mark.parametrize("method", ["builtin", "defaults+tpe", "random"])
def test_a_real_mlp_run_records_every_trial(short_mlp, method):
    run = bench.run_one(("mlp", method, "wine", 0, 3))
    assert (run["method"], run["dataset"], run["seed"]) == (method, "wine", 0)
    assert len(run["values"]) == 3
    assert all(v is None or (math.isfinite(v) and v > 0) for v in run["values"])


def test_the_same_seed_gives_the_same_run(short_mlp):
    a, b = (bench.run_one(("mlp", "builtin", "wine", 1, 2)) for _ in range(2))
    assert a["values"] == b["values"]


def test_failed_trials_count_as_no_result():
    assert bench._best([None, 0.5, None, 0.2], 2) == 0.5
    assert bench._best([None, None], 2) == math.inf


def _args(*argv: str) -> argparse.Namespace:
    return bench._parse(["--family", "mlp", "--seeds", "1", "--budget", "5", *argv])


def test_the_report_covers_only_pairs_every_method_finished():
    args = _args("--short-budget", "2", "--methods", "builtin,tpe")
    jobs = [("mlp", m, "wine", 0, 5 if m == "tpe" else 2) for m in args.methods]
    jobs += [("mlp", m, "digits", 0, 5 if m == "tpe" else 2) for m in args.methods]
    done = {
        ("builtin", "wine", 0): {"method": "builtin", "dataset": "wine", "values": [0.3, 0.1]},
        ("tpe", "wine", 0): {
            "method": "tpe",
            "dataset": "wine",
            "values": [0.9, 0.5, 0.4, None, 0.2],
        },
        ("builtin", "digits", 0): {"method": "builtin", "dataset": "digits", "values": [0.3, 0.2]},
    }
    text = bench.report(done, jobs, args)
    assert "not run: digits seed 0" in text
    # regret @1: builtin 0.3 - 0.1 = 0.2, tpe 0.9 - 0.1 = 0.8; @5 only TPE ran that long
    assert "| builtin | 0.200 | - |" in text
    assert "| tpe | 0.800 | 0.100 |" in text


def test_a_method_the_family_lacks_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        bench._parse(["--family", "mlp", "--methods", "flaml+tpe"])
    assert "unknown method 'flaml+tpe' for mlp" in capsys.readouterr().err
