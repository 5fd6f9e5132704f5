"""Hedging the first trials across past studies: the numerics, the sampler, the measurement."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from tests.sampler.conftest import CENTRE, SPACE, bowl
from tuner.metadataset import MetaDataset
from tuner.prior import MEASURED_STRATEGIES, PortfolioCoverage
from tuner.sampler import MetaPriorSampler, decide_early_strategy
from tuner.sampler._hedge import hedge_scores, hedged_trials, study_weights
from tuner.studies import TrialAttr


def test_weights_favour_the_past_study_that_orders_the_trials_alike():
    tried = np.array([[0.0, 2.0, 1.0], [1.0, 1.0, 1.0], [2.0, 0.0, 1.0]])
    assert np.allclose(study_weights(tried[:1], np.array([0.3])), 1 / 3)
    w = study_weights(tried, np.array([0.1, 0.5, 0.9]))  # study 0 agrees, 1 reverses
    assert w.sum() == pytest.approx(1.0)
    assert w[0] > w[2] > w[1]  # the study that ties every pair stays in between


def test_first_the_best_mean_then_the_config_that_covers_what_the_first_missed():
    coverage = np.array(
        [
            [0.0, 0.0, 3.0, 3.0],  # great on studies 0-1, poor on 2-3
            [-1.0, -1.0, 2.0, 2.5],  # better there, still poor on 2-3: best mean
            [2.0, 2.0, 0.0, 0.0],  # covers 2-3
        ]
    )
    first = hedge_scores(coverage, coverage[:0], np.zeros(0))
    np.testing.assert_allclose(first, coverage.mean(axis=1))
    assert int(np.argmin(first)) == 1
    second = hedge_scores(coverage, coverage[[1]], np.array([0.5]))
    assert int(np.argmin(second)) == 2
    # a pending proposal counts toward the best so far just as a finished one does
    pending = hedge_scores(coverage, coverage[:0], np.zeros(0), pending=coverage[[1]])
    np.testing.assert_allclose(pending, second)


def test_leaving_a_source_out_drops_its_column_and_its_configs(xy_prior):
    coverage = xy_prior.coverage
    keep, rest = coverage.without_study(2)
    assert rest.n_studies == coverage.n_studies - 1
    assert 2 not in coverage.owners[keep] and len(keep) == np.sum(coverage.owners != 2)
    np.testing.assert_array_equal(rest.values[:, 2], coverage.values[keep, 3])
    local = xy_prior.without_source(2)
    assert len(local.portfolio) == len(local.portfolio_configs) == len(keep)
    with pytest.raises(ValueError, match="owners must lie"):
        PortfolioCoverage(coverage.values, coverage.owners + coverage.n_studies)


def _run(prior, strategy: str, n_trials: int, seed: int = 0) -> optuna.Study:
    study = optuna.create_study(
        sampler=MetaPriorSampler(prior, seed=seed, early_strategy=strategy)
    )
    c = CENTRE + 0.1
    study.optimize(
        lambda t: bowl(t.suggest_float("x", -1, 1), t.suggest_float("y", -1, 1), c),
        n_trials=n_trials,
    )
    return study


def test_hedged_first_trials_are_distinct_portfolio_configs_best_mean_first(xy_prior):
    study = _run(xy_prior, "hedge", 6)
    # the trials the prior chose (the guard may hand later ones to the fallback)
    chosen = [t for t in study.trials if TrialAttr.SOURCE.get(t.user_attrs) != "fallback"]
    rows = [TrialAttr.PORTFOLIO.get(t.user_attrs) for t in chosen]
    assert len(rows) >= 3 and all(isinstance(r, int) for r in rows)
    assert len(set(rows)) == len(rows)
    assert rows[0] == int(np.argmin(xy_prior.coverage.values.mean(axis=1)))
    again = _run(xy_prior, "hedge", 6)  # seeded: the same suggestions
    assert [t.params for t in again.trials] == [t.params for t in study.trials]


def test_hedge_k_hedges_the_first_k_trials_then_the_model_chooses(xy_prior):
    assert [hedged_trials(s, 10) for s in MEASURED_STRATEGIES] == [0, 1, 3, 10]
    assert hedged_trials("hedge-3", 2) == 2  # never beyond the portfolio trials
    hedge, model, three = (_run(xy_prior, s, 6) for s in ("hedge", "model", "hedge-3"))
    params = [[t.params for t in study.trials] for study in (hedge, model, three)]
    assert params[2][:3] == params[0][:3]  # hedged like "hedge" ...
    assert params[2][3:] != params[0][3:]  # ... then the model chooses
    assert params[0][:3] != params[1][:3]
    # the trials the prior chose are portfolio configs not yet tried, hedged or not
    chosen = [t for t in three.trials if TrialAttr.SOURCE.get(t.user_attrs) != "fallback"]
    rows = [TrialAttr.PORTFOLIO.get(t.user_attrs) for t in chosen]
    assert len(rows) >= 4 and None not in rows and len(set(rows)) == len(rows)


def test_auto_follows_the_measured_choice_and_hedge_needs_coverage(xy_prior):
    assert MetaPriorSampler(xy_prior).early_strategy in ("model", "hedge")
    local = xy_prior.without_source(0)
    local.info = {**xy_prior.info, "early_strategy": {"choice": "hedge"}}
    assert MetaPriorSampler(local).early_strategy == "hedge"
    local.info = {**xy_prior.info, "early_strategy": {"choice": "model"}}
    assert MetaPriorSampler(local).early_strategy == "model"
    local.info = {**xy_prior.info, "early_strategy": {"choice": "hedge-3"}}
    assert MetaPriorSampler(local).early_strategy == "hedge-3"
    local.coverage = None  # a prior from before coverage was recorded
    local.info = {**xy_prior.info, "early_strategy": {"choice": "hedge"}}
    assert MetaPriorSampler(local).early_strategy == "model"
    with pytest.raises(ValueError, match="Meta-train it again"):
        MetaPriorSampler(local, early_strategy="hedge")
    with pytest.raises(ValueError, match="got 'greedy'"):
        MetaPriorSampler(xy_prior, early_strategy="greedy")


def _xy_dataset(n_tasks: int = 16) -> MetaDataset:
    """The tasks ``xy_prior`` was trained on (same generator as the fixture)."""
    from tests.sampler.conftest import family_centre

    rng = np.random.default_rng(0)
    tasks = []
    for i in range(n_tasks):
        c = family_centre(rng)
        pts = rng.uniform(-1, 1, size=(50, 2))
        configs = [{"x": float(a), "y": float(b)} for a, b in pts]
        tasks.append((f"t{i}", configs, [bowl(a, b, c) for a, b in pts]))
    return MetaDataset.from_tasks(SPACE, tasks)


def test_the_measurement_compares_every_strategy_on_unseen_studies(xy_prior):
    dataset = _xy_dataset()
    record = decide_early_strategy(xy_prior, dataset, trials=4, seeds=1)
    assert record["studies"] == xy_prior.info["splits"]["held_out"]
    means = record["mean_regret"]
    assert set(means) == set(MEASURED_STRATEGIES) == {"model", "hedge-1", "hedge-3", "hedge"}
    assert record["choice"] == min(means, key=means.get)
    for curve in record["regret_per_trial"].values():  # best so far: never rises, >= 0
        assert len(curve) == 4 and min(curve) >= 0 and np.all(np.diff(curve) <= 1e-9)
    again = decide_early_strategy(xy_prior, dataset, trials=4, seeds=1)
    assert again.pop("seconds") >= 0 and again == {
        k: v for k, v in record.items() if k != "seconds"
    }
    xy_prior_old = xy_prior.without_source(0)
    xy_prior_old.coverage = None
    assert decide_early_strategy(xy_prior_old, dataset)["choice"] == "model"
