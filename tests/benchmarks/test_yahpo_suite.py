"""YAHPO Gym surrogates as benchmark suites (skipped without ../shared/data/yahpo)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.suites import YahpoSuite
from tuner.space import Encoder


@pytest.mark.yahpo
@pytest.mark.parametrize(
    ("scenario", "n_tasks", "low", "high"),
    [("rbv2_xgboost", 119, 0.0, 1.0), ("lcbench", 34, 0.0, 100.0)],
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
