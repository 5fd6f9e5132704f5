"""The trust benchmark's MLP problem: real trainings (2 epochs on iris), real cache on disk."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.trust import main
from benchmarks.trust_problems import TRUTH_SEEDS, MlpProblem, seed_mean

CONFIG = {"lr": 0.01, "weight_decay": 1e-4, "hidden": 16, "n_layers": 1, "dropout": 0.0}
CONFIG |= {"batch_size": 32, "optimizer": "adam"}


@pytest.fixture(autouse=True)
def _short_trainings(monkeypatch):
    monkeypatch.setenv("MLP_EPOCHS", "2")
    monkeypatch.setenv("MLP_DATASET", "iris")  # the problem sets these two: restored after
    monkeypatch.setenv("MTTUNE_SEED", "0")


def test_true_value_is_the_mean_over_ten_seeds_and_is_trained_once(tmp_path):
    problem = MlpProblem(datasets=["iris"], raw=tmp_path)
    values = problem.seed_values("iris", CONFIG)
    assert problem.trainings == len(TRUTH_SEEDS) == len(values)
    assert len(set(values)) > 1  # the seeds really differ
    truth = problem.truth("iris", [CONFIG, dict(reversed(CONFIG.items()))])
    assert truth[0] == truth[1] == pytest.approx(sum(values) / len(values))
    assert problem.trainings == len(TRUTH_SEEDS)  # the second and third look-ups are cached
    again = MlpProblem(datasets=["iris"], raw=tmp_path)  # a rerun reads the file
    assert again.truth("iris", [CONFIG])[0] == truth[0] and again.trainings == 0
    assert again.optimum("iris") == truth[0]


def test_each_trial_trains_with_a_fresh_seed(tmp_path):
    problem = MlpProblem(datasets=["iris"], raw=tmp_path)
    objective = problem.objective("iris", "seed", seed=1)
    draws = [objective(CONFIG) for _ in range(4)]
    assert len(set(draws)) == 4
    assert not set(draws) & set(problem.seed_values("iris", CONFIG))  # not the truth seeds


def test_diverged_seeds_are_left_out_of_the_true_value():
    assert seed_mean([1.0, None, 3.0]) == 2.0
    assert seed_mean([None, None]) == math.inf


def test_the_mlp_benchmark_runs_tiny_and_writes_its_table(tmp_path):
    out = tmp_path / "trust_mlp.md"
    args = ["--problem", "mlp", "--trials", "4,6", "--studies", "1", "--samplers", "random"]
    args += ["--datasets", "iris", "--top-k", "2", "--raw", str(tmp_path), "--out", str(out)]
    assert main(args) == 0
    assert "| random | seed | 4 | 1 |" in out.read_text()
    assert "| random | seed | 6 | 1 |" in out.read_text()
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["trials"] for r in rows] == [4, 6]
    for r in rows:  # losses: lower is better, the regret zero is the least true loss known
        assert r["optimum"] <= min(r["rec_true"], r["best_true"])
