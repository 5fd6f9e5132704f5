"""The trust benchmark end to end at a tiny size (real YAHPO surrogate, real SQLite, real CLI)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.suites import YahpoSuite
from benchmarks.trust import calibration, main
from benchmarks.trust_problems import NoisyTask


@pytest.mark.yahpo
def test_replications_are_noisy_draws_around_the_true_value(yahpo_dir):
    suite = YahpoSuite("rbv2_xgboost", yahpo_dir)
    task = suite.tasks[0]
    config = {"booster": "gbtree", "nrounds": 200, "eta": 0.1, "lambda": 1.0, "alpha": 0.01}
    config |= {"subsample": 0.8, "max_depth": 6, "min_child_weight": 3.0, "gamma": 0.01}
    config |= {"colsample_bytree": 0.8, "colsample_bylevel": 0.8}
    config["num.impute.selected.cpo"] = "impute.median"
    objective = NoisyTask(suite, task, "repl", 0.01, seed=0)
    draws = np.array([objective(config) for _ in range(30)])
    truth = objective.truth([config])[0]
    assert draws.std() > 0  # the replications differ
    assert abs(draws.mean() - truth) < 3 * draws.std() / np.sqrt(30) + 1e-9
    heavy = NoisyTask(suite, task, "heavy", 0.01, seed=0)
    assert np.array([heavy(config) for _ in range(30)]).std() > draws.std()


@pytest.mark.yahpo
@pytest.mark.slow
def test_the_benchmark_runs_tiny_and_writes_its_tables(yahpo_dir, tmp_path):
    out = tmp_path / "trust.md"
    args = ["--data", str(yahpo_dir), "--trials", "8", "--studies", "2", "--test-tasks", "2"]
    args += ["--train-tasks", "3", "--train-trials", "10", "--raw", str(tmp_path / "raw")]
    args += ["--meta-train-args", "--max-steps 5 --ensemble 1", "--out", str(out)]
    assert main(args) == 0
    text = out.read_text()
    for sampler in ("tpe", "random", "mttune"):
        for noise in ("repl", "heavy"):
            assert f"| {sampler} | {noise} | 8 | 2 |" in text
    assert "95% intervals cover 90-97% in every cell: **" in text
    assert "P(best) bin" in text
    lines = (tmp_path / "raw" / "rows.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 12
    for r in rows:
        assert r["method"] in {"surrogate", "repeats", "single"}
        assert 0.0 <= r["rec_true"] <= 1.0 and r["optimum"] >= r["rec_true"] - 0.05


def test_p_best_calibration_bins_pool_every_candidate():
    rows = [{"p_best": [[0.95, True], [0.05, False]]}, {"p_best": [[0.6, False], [0.4, True]]}]
    bins = {label: (n, p, hit) for label, n, p, hit in calibration(rows)}
    assert bins["[0.9, 1.0]"] == (1, 0.95, 1.0)
    assert bins["[0.0, 0.1)"] == (1, 0.05, 0.0)
    assert bins["[0.5, 0.7)"] == (1, 0.6, 0.0) and bins["[0.3, 0.5)"] == (1, 0.4, 1.0)
