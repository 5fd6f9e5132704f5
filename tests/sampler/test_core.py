"""The sampler's pure parts: acquisition functions, the core's proposal, the study state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from tests.sampler.conftest import SPACE
from tuner import MttuneError
from tuner.prior import Calibration, MAMLConfig, MetaPrior, ModelConfig
from tuner.prior._maml import init_ensemble
from tuner.sampler import LowerConfidenceBound, _core, concordance, expected_improvement
from tuner.sampler._acquisition import resolve_acquisition
from tuner.sampler._mapping import StudyMapping
from tuner.sampler._state import StudyState

PORTFOLIO = np.array([[0.1, 0.1], [0.9, 0.9], [0.75, 0.25]])


@pytest.fixture(scope="module")
def prior() -> MetaPrior:
    """An untrained two-member prior: the core's mechanics do not need a good one."""
    _, params = init_ensemble(2, 8, 1, 2, torch.Generator().manual_seed(0))
    log_lrs = {k: torch.full((2,), math.log(0.05)) for k in params}
    model = ModelConfig(hidden=8, layers=1, ensemble=2)
    return MetaPrior(SPACE, model, MAMLConfig(), params, log_lrs, Calibration(), PORTFOLIO)


def _obs(x: np.ndarray, y: np.ndarray) -> _core.Observations:
    """Observations of the prior's own space: study and prior coordinates coincide."""
    x = np.asarray(x, dtype=float).reshape(-1, 2)
    y = np.asarray(y, dtype=float)
    return _core.Observations(tuple(range(len(y))), x, x, y, np.zeros(len(y), dtype=bool))


def _context(**kw) -> _core.StudyContext:
    empty = np.zeros((0, 2))
    values = {"fixed": {}, "others": empty, "pruned": empty, "used_rows": np.zeros(0, int)}
    return _core.StudyContext(**{**values, **kw})


def _settings(acquisition=expected_improvement, portfolio_trials=10, n_candidates=256):
    return _core.ProposalSettings(n_candidates, portfolio_trials, 256, acquisition)


class _Bowl:
    """A surrogate with a known optimum (encoded coordinates) and a chosen spread."""

    def __init__(self, prior, centre, std=None):
        self.adapted = prior.adapt()
        self.incumbent = 0.0
        self.centre = np.asarray(centre)
        self.std = std

    def predict(self, x):
        mean = ((x - self.centre) ** 2).sum(1)
        std = np.full(len(x), 0.01) if self.std is None else self.std(x)
        return mean, std


# ---------------------------------------------------------------------- acquisitions
def test_expected_improvement_matches_its_closed_form():
    mean, std = np.array([0.0, 0.5, 1.0]), np.array([1.0, 0.2, 0.3])
    u = (0.4 - mean) / std
    want = (0.4 - mean) * stats.norm.cdf(u) + std * stats.norm.pdf(u)
    np.testing.assert_allclose(expected_improvement(mean, std, 0.4), want)
    # no uncertainty: the plain improvement
    np.testing.assert_allclose(
        expected_improvement(mean, np.zeros(3), 0.4), [0.4, 0.0, 0.0], atol=1e-12
    )
    # lower mean, or more spread at equal mean, is worth more
    ei = expected_improvement(np.array([0.1, 0.2, 0.2]), np.array([0.1, 0.1, 0.5]), 0.0)
    assert ei[0] > ei[1] and ei[2] > ei[1]


def test_lower_confidence_bound_kappa_is_settable():
    mean, std = np.array([0.0, 1.0]), np.array([0.1, 2.0])
    np.testing.assert_allclose(LowerConfidenceBound(kappa=2.0)(mean, std, 0.0), [0.2, 3.0])
    assert resolve_acquisition("lcb")(mean, std, 0.0).tolist() == pytest.approx([0.15, 2.0])
    with pytest.raises(MttuneError, match="kappa must be >= 0, got -1"):
        LowerConfidenceBound(kappa=-1)
    with pytest.raises(MttuneError, match=r"one of \['ei', 'lcb'\] or a callable"):
        resolve_acquisition("pi")
    with pytest.raises(MttuneError, match="or a callable"):
        resolve_acquisition(3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- observations
def test_subset_keeps_the_best_half_and_a_seeded_rest():
    obs = _obs(np.random.default_rng(0).random((20, 2)), np.arange(20)[::-1])
    assert _core.subset(obs, 20, np.random.default_rng(1)).tolist() == list(range(20))
    idx = _core.subset(obs, 8, np.random.default_rng(1))
    assert len(idx) == 8 and set(range(16, 20)) <= set(idx.tolist())  # the 4 best
    np.testing.assert_array_equal(idx, _core.subset(obs, 8, np.random.default_rng(1)))


def test_gp_refit_points_grow_and_stay_put_between_refits():
    points = [_core.refit_point(n) for n in range(2, 600)]
    assert points == sorted(points) and all(
        p <= n for p, n in zip(points, range(2, 600), strict=True)
    )
    assert _core.refit_point(7) == _core.refit_point(8) == 6
    assert _core.refit_point(313) == _core.refit_point(399) == 313


# ---------------------------------------------------------------------- proposals
def _propose(prior, obs, context=None, *, surrogate=None, portfolio_trials=10, **settings):
    mapping = StudyMapping(prior, SPACE.distributions)
    return _core.propose(
        prior,
        mapping,
        obs,
        context or _context(),
        _settings(portfolio_trials=portfolio_trials, **settings),
        np.random.default_rng(0),
        surrogate=surrogate,
        portfolio_configs=mapping.portfolio(_core.portfolio_rows(prior)),
    )


def test_early_proposals_are_fresh_portfolio_configs(prior):
    p = _propose(prior, _obs([], []))
    assert p.why == _core.WHY_ZERO_SHOT and p.portfolio_row is not None
    np.testing.assert_allclose(prior.encoder.encode(p.config), PORTFOLIO[p.portfolio_row])
    # with every row used, the proposal comes from the whole space
    q = _propose(prior, _obs([], []), _context(used_rows=np.arange(len(PORTFOLIO))))
    assert q.portfolio_row is None


def test_acquisition_proposals_follow_the_surrogate_and_never_repeat(prior):
    centre = PORTFOLIO[2]
    bowl = _Bowl(prior, centre)
    obs = _obs(PORTFOLIO[:2], [1.0, 2.0])
    p = _propose(prior, obs, surrogate=bowl, portfolio_trials=0)
    assert p.why == _core.WHY_ACQUISITION and p.portfolio_row == 2  # the optimum itself
    # once evaluated it is not proposed again; the next best is close by
    q = _propose(prior, _obs(PORTFOLIO, [1.0, 2.0, 0.0]), surrogate=bowl, portfolio_trials=0)
    x = prior.encoder.encode(q.config)
    assert q.portfolio_row is None and 0 < np.abs(x - centre).max() < 0.1
    # and a running trial there keeps the proposal away from it
    near = _context(others=np.array([centre]))
    r = _propose(prior, obs, near, surrogate=bowl, portfolio_trials=0)
    assert np.sqrt(((prior.encoder.encode(r.config) - centre) ** 2).mean()) >= 0.05


def test_a_large_kappa_explores_where_the_surrogate_is_unsure(prior):
    unsure = _Bowl(prior, [0.5, 0.5], std=lambda x: 10.0 * x[:, 0] * x[:, 1])
    obs = _obs([[0.5, 0.5]], [0.0])
    greedy = _propose(
        prior, obs, surrogate=unsure, portfolio_trials=0, acquisition=LowerConfidenceBound(0.0)
    )
    bold = _propose(
        prior, obs, surrogate=unsure, portfolio_trials=0, acquisition=LowerConfidenceBound(50.0)
    )
    assert np.abs(prior.encoder.encode(greedy.config) - 0.5).max() < 0.1
    assert prior.encoder.encode(bold.config).min() > 0.8  # the (1, 1) corner


def test_fixed_values_hold_in_every_proposal(prior):
    assert _propose(prior, _obs([], []), _context(fixed={"x": -0.5})).config["x"] == -0.5


# ---------------------------------------------------------------------- evidence
def test_score_trial_is_the_prequential_concordance_and_the_poor_flag(prior):
    obs = _obs(np.random.default_rng(0).random((8, 2)), np.arange(8.0))
    adapted = prior.adapt()
    x_new = np.array([0.3, 0.7])
    pred = adapted.predict(np.vstack([x_new, obs.x])).mean
    ev = _core.score_trial(adapted, x_new, 2.5, obs)
    assert ev.concordance == pytest.approx(concordance(pred[0], 2.5, pred[1:], obs.y))
    assert ev.pred_mean == pytest.approx(pred[0]) and not ev.poor
    assert _core.score_trial(adapted, x_new, 6.0, obs).poor  # above the 75 % quantile (5.25)


# ---------------------------------------------------------------------- the study state
def test_the_study_state_serves_one_storage_and_forgets_finished_trials():
    class Storage:
        pass

    a, b = Storage(), Storage()
    state = StudyState(a)
    assert state.serves(a) and not state.serves(b)
    state.proposals[1] = ({"x": 0.0}, ("space",))
    state.adapted[1] = ((), None)  # type: ignore[assignment]
    state.forget(1)
    assert not state.proposals and not state.adapted
    state.keep_encoding(("space",), 5, None)
    assert state.encoding(("space",), 5) == (True, None)
    assert state.encoding(("space",), 6) == (False, None)
    # encodings of another space are not those of this one
    assert state.encoding(("other space",), 5) == (False, None)
