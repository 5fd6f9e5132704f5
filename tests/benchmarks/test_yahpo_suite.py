"""YAHPO Gym surrogates as benchmark suites (skipped without ../shared/data/yahpo)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from benchmarks.suites import REPLICATIONS, SEED_NOISE, YahpoSuite, load_suite
from benchmarks.transfer import folds
from tuner.space import Encoder


@pytest.mark.yahpo
@pytest.mark.parametrize(
    ("scenario", "n_tasks", "low", "high"),
    [
        ("rbv2_xgboost", 119, 0.0, 1.0),
        ("lcbench", 34, 0.0, 100.0),
        ("rbv2_rpart", 117, 0.0, 1.0),
        ("iaml_glmnet", 4, 0.0, 1.0),
    ],
)
def test_yahpo_suites_evaluate_real_surrogates(yahpo_dir, scenario, n_tasks, low, high):
    suite = YahpoSuite(scenario, yahpo_dir)
    assert len(suite.tasks) == n_tasks
    enc = Encoder(suite.space)
    configs = enc.decode_many(enc.sample(64, np.random.default_rng(0)))
    values = suite.evaluate(suite.tasks[0], configs)
    assert values.shape == (64,) and np.all(np.isfinite(values))
    assert low - 0.05 <= values.min() and values.max() <= high + 0.05
    assert values.std() > 0  # configs matter
    other = suite.evaluate(suite.tasks[1], configs)
    assert not np.allclose(values, other)  # tasks differ


def _configs(suite, n=200, seed=0):
    enc = Encoder(suite.space)
    return enc.decode_many(enc.sample(n, np.random.default_rng(seed)))


@pytest.mark.yahpo
def test_rpart_is_searched_on_its_integer_grid(yahpo_dir):
    suite = YahpoSuite("rbv2_rpart", yahpo_dir)
    ints = [p.name for p in suite.space if type(p.distribution).__name__ == "IntDistribution"]
    assert ints == ["maxdepth", "minbucket", "minsplit"]
    assert all(isinstance(c[n], int) for c in _configs(suite, 20) for n in ints)
    assert not suite.noisy and not suite.leave_one_out


@pytest.mark.yahpo
def test_glmnet_is_split_leave_one_task_out(yahpo_dir):
    suite = load_suite("yahpo:iaml_glmnet", yahpo_dir)
    splits = folds(suite, argparse.Namespace(train_tasks=100, test_tasks=20, split_seed=0))
    assert len(splits) == 4
    assert sorted(t for test, _ in splits for t in test) == sorted(suite.tasks)
    for test, past in splits:
        assert len(test) == 1 and len(past) == 3 and test[0] not in past


@pytest.mark.yahpo
def test_noisy_variants_draw_a_replication_and_keep_the_mean_as_truth(yahpo_dir):
    plain = load_suite("yahpo:rbv2_xgboost", yahpo_dir)
    noisy = load_suite("yahpo:rbv2_xgboost:noisy", yahpo_dir)
    heavy = load_suite("yahpo:rbv2_xgboost:noisy-heavy", yahpo_dir)
    assert noisy.name == "yahpo:rbv2_xgboost:noisy" and noisy.noisy and not plain.noisy
    task, configs = noisy.tasks[5], _configs(noisy)
    true = noisy.true_values(task, configs)
    # the truth is the mean over the replications, the same for both noisy variants
    by_repl = [noisy.evaluate(task, configs, fidelity=[{"repl": r}] * 200) for r in range(1, 11)]
    assert REPLICATIONS == 10
    np.testing.assert_allclose(true, np.mean(by_repl, axis=0), rtol=1e-6)
    np.testing.assert_allclose(heavy.true_values(task, configs), true, rtol=1e-6)
    assert np.array_equal(plain.true_values(task, configs), plain.evaluate(task, configs))
    # one evaluation is one replication: seeded, noisy around the truth, no bias
    a = noisy.evaluate(task, configs, np.random.default_rng(1))
    assert np.array_equal(a, noisy.evaluate(task, configs, np.random.default_rng(1)))
    assert not np.array_equal(a, noisy.evaluate(task, configs, np.random.default_rng(2)))
    err = a - true
    assert 0 < err.std() < 0.05 and abs(err.mean()) < 3 * err.std() / np.sqrt(len(err))
    # the heavy variant adds the seed-to-seed noise on top
    e_heavy = heavy.evaluate(task, configs, np.random.default_rng(1)) - true
    assert e_heavy.std() ** 2 == pytest.approx(err.std() ** 2 + SEED_NOISE**2, rel=0.35)


@pytest.mark.yahpo
def test_few_tasks_variant_and_bad_variants(yahpo_dir):
    few = load_suite("yahpo:lcbench:few7", yahpo_dir)
    assert few.past_tasks == 7 and not few.noisy
    splits = folds(few, argparse.Namespace(train_tasks=100, test_tasks=10, split_seed=0))
    assert [len(past) for _, past in splits] == [7]
    with pytest.raises(ValueError, match="needs replications"):
        load_suite("yahpo:lcbench:noisy", yahpo_dir)
    with pytest.raises(ValueError, match="unknown suite variant 'loud'"):
        load_suite("yahpo:rbv2_xgboost:loud", yahpo_dir)
