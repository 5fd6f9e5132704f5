"""Priors that follow the study's space: narrowed, wider, shifted, other kinds, new names."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from tests.conftest import REPO
from tests.sampler.conftest import CENTRE, bowl
from tuner.prior import load_prior
from tuner.sampler import MetaPriorSampler
from tuner.sampler._mapping import StudyMapping
from tuner.studies import StudyAttr, TrialAttr

optuna.logging.set_verbosity(optuna.logging.ERROR)


@pytest.fixture(scope="module")
def mlp_prior():
    return load_prior(REPO / "studies" / "mlp.prior.safetensors")


def _mlp_objective(dists):
    """A smooth stand-in for the MLP's validation loss, asked with ``dists``."""

    def objective(trial):
        c = {name: trial._suggest(name, d) for name, d in dists.items()}
        loss = (math.log10(c["lr"]) + 2.2) ** 2 + 0.05 * c["n_layers"]
        return loss + 0.02 * abs(math.log2(c["hidden"]) - 6) + (c.get("dropout", 0.2) - 0.2) ** 2

    return objective


# the spaces Ray Tune's OptunaSearch hands over for randint(1, 5) and lograndint(8, 257):
# exclusive upper bounds, so never the YAML's 1..3 and 8..256
RAY_LIKE = {
    "lr": FloatDistribution(1e-4, 0.1, log=True),  # narrowed from 1e-4..0.3
    "n_layers": IntDistribution(1, 4),  # wider than the prior's 1..3
    "hidden": IntDistribution(8, 256, log=True),
    "batch_size": CategoricalDistribution([32, 64]),  # a subset of the choices
}


def test_a_space_that_differs_from_the_prior_adapts_instead_of_staying_zero_shot(mlp_prior):
    """Asked with other distributions, the sampler used to stay zero-shot for the whole
    study (every trial 'prior', never adapting): now it adapts from the second trial."""
    study = optuna.create_study(sampler=MetaPriorSampler(mlp_prior, seed=0))
    study.optimize(_mlp_objective(RAY_LIKE), n_trials=14)
    sources = [t.user_attrs[TrialAttr.SOURCE.key] for t in study.trials]
    assert sources[0] == "prior" and sources.count("adapted-prior") >= 5, sources  # was 0
    assert sum(TrialAttr.CONCORDANCE.key in t.user_attrs for t in study.trials) >= 8
    for t in study.trials:
        assert all(d._contains(d.to_internal_repr(t.params[n])) for n, d in RAY_LIKE.items())
    driven = [t for t in study.trials if t.user_attrs[TrialAttr.SOURCE.key] != "fallback"]
    assert driven[-1].user_attrs[TrialAttr.PARAM_SOURCES.key] == dict.fromkeys(RAY_LIKE, "prior")
    coverage = study.user_attrs[StudyAttr.COVERAGE.key]
    assert coverage["covered"] == list(RAY_LIKE) and coverage["fallback"] == {}
    notes = " ".join(coverage["notes"])
    assert "lr range 0.0001..0.1 lies inside the prior's 0.0001..0.3 log" in notes
    assert "n_layers range 1..4 reaches beyond the prior's 1..3" in notes


def test_the_prior_keeps_driving_what_it_knows_beside_a_new_parameter(mlp_prior):
    dists = {**RAY_LIKE, "label_smoothing": FloatDistribution(0.0, 0.2)}
    study = optuna.create_study(sampler=MetaPriorSampler(mlp_prior, seed=1))
    study.optimize(_mlp_objective(dists), n_trials=6)
    last = study.trials[-1]
    sources = last.user_attrs[TrialAttr.PARAM_SOURCES.key]
    assert sources.pop("label_smoothing") == "fallback" and set(sources.values()) == {"prior"}
    coverage = study.user_attrs[StudyAttr.COVERAGE.key]
    assert coverage["fallback"] == {"label_smoothing": "new to the prior"}


def test_values_beyond_the_prior_s_range_are_extrapolation_with_wider_uncertainty(xy_prior):
    mapping = StudyMapping(
        xy_prior, {"x": FloatDistribution(-3, 3), "y": FloatDistribution(-1, 1)}
    )
    inside = mapping.encoder.encode({"x": 0.5, "y": 0.0})
    outside = mapping.encoder.encode({"x": 2.5, "y": 0.0})
    f, extra = mapping.to_prior(np.vstack([inside, outside]))
    assert extra[0] == 0.0 and extra[1] > 0.0
    assert f.min() >= 0.0 and f.max() <= 1.0  # the network sees the edge of its range
    edge = mapping.to_prior(mapping.encoder.encode({"x": 1.0, "y": 0.0})[None])[0]
    np.testing.assert_allclose(f[1], edge[0])


def test_int_as_float_and_numeric_choices_map_by_value(xy_prior):
    mapping = StudyMapping(
        xy_prior, {"x": IntDistribution(-1, 1), "y": CategoricalDistribution([-0.5, 0.5])}
    )
    assert mapping.coverage.covered == ("x", "y") and not mapping.coverage.fallback
    f, _ = mapping.configs_to_prior([{"x": 1, "y": 0.5}])
    want, _ = StudyMapping(
        xy_prior, {"x": FloatDistribution(-1, 1), "y": FloatDistribution(-1, 1)}
    ).configs_to_prior([{"x": 1.0, "y": 0.5}])
    np.testing.assert_allclose(f, want)
    unknown = StudyMapping(xy_prior, {"x": CategoricalDistribution(["a", "b"])})
    assert unknown.coverage.fallback == {"x": "categorical here, numeric in the prior"}


def test_points_map_onto_the_prior_as_the_configs_they_decode_to(mlp_prior):
    # to_prior decodes to arrays, configs_to_prior reads Python values: the same coordinates,
    # with a condition (momentum), a new choice, numeric choices and ranges beyond the prior's
    mapping = StudyMapping(
        mlp_prior,
        {
            "lr": FloatDistribution(1e-5, 1.0, log=True),
            "hidden": FloatDistribution(4, 512),
            "n_layers": IntDistribution(1, 5),
            "dropout": FloatDistribution(0.0, 0.9, step=0.1),
            "batch_size": CategoricalDistribution([8, 16, 64]),
            "optimizer": CategoricalDistribution(["sgd", "adam", "rmsprop"]),
            "momentum": FloatDistribution(0.0, 0.999),
        },
        mlp_prior.space,
    )
    assert mapping.space.params["momentum"].condition is not None
    u = mapping.encoder.canonicalize(np.random.default_rng(0).random((300, mapping.dim)))
    f, extra = mapping.to_prior(u)
    want_f, want_extra = mapping.configs_to_prior(mapping.encoder.decode_many(u))
    np.testing.assert_array_equal(f, want_f)
    np.testing.assert_array_equal(extra, want_extra)
    assert extra.max() > 0.0  # some points lie beyond the prior's ranges


def test_a_narrowed_range_in_define_by_run_stays_inside_it(xy_prior):
    def objective(trial):
        return bowl(trial.suggest_float("x", 0.0, 0.3), trial.suggest_float("y", -1, 1), CENTRE)

    study = optuna.create_study(sampler=MetaPriorSampler(xy_prior, seed=0))
    study.optimize(objective, n_trials=10)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert all(0.0 <= t.params["x"] <= 0.3 for t in study.trials)
    # the family's optimum x = 0.4 lies beyond the range: proposals push to its edge
    assert np.median([t.params["x"] for t in study.trials[3:]]) > 0.2
