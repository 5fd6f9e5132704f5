"""MetaPriorSampler behaviour on real Optuna studies (in-memory and SQLite)."""

from __future__ import annotations

import copy
import dataclasses
import logging
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import tuner
from tests.sampler.conftest import CENTRE, bowl, family_centre
from tuner.prior import save_prior
from tuner.sampler import MetaPriorSampler, NegativeTransferGuard
from tuner.sampler._guard import GuardState
from tuner.studies import TrialAttr

optuna.logging.set_verbosity(optuna.logging.ERROR)


def objective_for(centre):
    def objective(trial: optuna.Trial) -> float:
        return bowl(trial.suggest_float("x", -1, 1), trial.suggest_float("y", -1, 1), centre)

    return objective


def test_zero_shot_warm_start_is_good_and_diverse(xy_prior):
    sampler = MetaPriorSampler(xy_prior, n_startup_trials=3, seed=0)
    study = optuna.create_study(sampler=sampler)
    # ask three trials before any finishes: all zero-shot, and not near-duplicates
    trials = [study.ask() for _ in range(3)]
    points = []
    for t in trials:
        points.append((t.suggest_float("x", -1, 1), t.suggest_float("y", -1, 1)))
    for t in study.get_trials():
        assert t.user_attrs[TrialAttr.SOURCE.key] == "prior"
    pts = np.array(points)
    d = np.sqrt((((pts[:, None] - pts[None]) / 2) ** 2).mean(-1))  # RMS in the unit cube
    assert d[np.triu_indices(3, 1)].min() >= 0.15 - 1e-9
    # the first proposal is near the family's optimum, far better than random on average
    assert np.linalg.norm(pts[0] - CENTRE) < 0.35


def test_adapts_and_beats_random_on_family_tasks(xy_prior):
    rng = np.random.default_rng(1)
    ours, rand = [], []
    for seed in range(4):
        centre = family_centre(rng)
        study = optuna.create_study(sampler=MetaPriorSampler(xy_prior, seed=seed))
        study.optimize(objective_for(centre), n_trials=15)
        ours.append(study.best_value)
        r = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        r.optimize(objective_for(centre), n_trials=15)
        rand.append(r.best_value)
        sources = [t.user_attrs[TrialAttr.SOURCE.key] for t in study.trials]
        assert sources[0] == "prior" and "adapted-prior" in sources[1:]
    assert np.mean(ours) < np.mean(rand) / 3


def test_first_trials_are_distinct_portfolio_configs(xy_prior):
    """The first ``portfolio_trials`` come from the source studies' best configs, no repeats."""
    portfolio = xy_prior.encoder.decode_many(xy_prior.portfolio)
    sampler = MetaPriorSampler(xy_prior, portfolio_trials=5, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective_for(CENTRE), n_trials=8)
    # (the guard hands a trial to the fallback now and then, with probability 1 - trust)
    early = [t for t in study.trials[:5] if t.user_attrs[TrialAttr.SOURCE.key] != "fallback"]
    first = [t.user_attrs.get(TrialAttr.PORTFOLIO.key) for t in early]
    assert len(early) >= 3
    assert all(isinstance(i, int) for i in first) and len(set(first)) == len(early)
    for t, i in zip(early, first, strict=True):
        assert t.params == pytest.approx(portfolio[i])
    # then the whole space: candidates are no longer only the portfolio
    off = MetaPriorSampler(xy_prior, portfolio_trials=0, seed=0)
    study = optuna.create_study(sampler=off)
    study.optimize(objective_for(CENTRE), n_trials=8)
    assert any(TrialAttr.PORTFOLIO.key not in t.user_attrs for t in study.trials[1:])


def test_provenance_attributes(xy_prior, tmp_path):
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    study = optuna.create_study(storage=storage, sampler=MetaPriorSampler(xy_prior, seed=0))
    study.optimize(objective_for(CENTRE), n_trials=8)
    trials = optuna.load_study(study_name=study.study_name, storage=storage).trials
    for t in trials:
        assert t.user_attrs[TrialAttr.SOURCE.key] in {"prior", "adapted-prior", "fallback"}
        guard = t.user_attrs[TrialAttr.GUARD.key]
        assert set(guard) == {"trust", "evidence", "concordance", "z", "fired"}
        assert isinstance(t.user_attrs[TrialAttr.PRED_MEAN.key], float)
        assert t.user_attrs[TrialAttr.PRED_STD.key] > 0
    # evidence needs two earlier finished trials
    assert TrialAttr.CONCORDANCE.key not in trials[1].user_attrs
    assert all(0.0 <= t.user_attrs[TrialAttr.CONCORDANCE.key] <= 1.0 for t in trials[3:])


def test_same_seed_same_suggestions_and_reseed(xy_prior):
    def params(sampler, n=14):
        study = optuna.create_study(sampler=sampler)
        study.optimize(objective_for(CENTRE), n_trials=n)
        return [t.params for t in study.trials]

    a = params(MetaPriorSampler(xy_prior, seed=7))
    b = params(MetaPriorSampler(xy_prior, seed=7))
    c = params(MetaPriorSampler(xy_prior, seed=8))
    assert a == b
    # the first trials pick among the prior's portfolio deterministically; random
    # candidates (drawn from the seed) come in after portfolio_trials
    assert a[10:] != c[10:]
    s = MetaPriorSampler(xy_prior, seed=7)
    s.reseed_rng()
    assert params(s) != a


def test_pickle_and_deepcopy_keep_suggestions(xy_prior):
    sampler = MetaPriorSampler(xy_prior, seed=3)
    for clone in (pickle.loads(pickle.dumps(sampler)), copy.deepcopy(sampler)):
        s1 = optuna.create_study(sampler=clone)
        s1.optimize(objective_for(CENTRE), n_trials=5)
        s2 = optuna.create_study(sampler=MetaPriorSampler(xy_prior, seed=3))
        s2.optimize(objective_for(CENTRE), n_trials=5)
        assert [t.params for t in s1.trials] == [t.params for t in s2.trials]


class _FirstValueSampler(optuna.samplers.BaseSampler):
    """A fallback that always gives a distribution's low end or last choice (marks its
    parameters apart from random ones)."""

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, name, distribution):
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            return distribution.choices[-1]
        return distribution.low


def test_define_by_run_outside_the_prior(xy_prior):
    """The prior sets the parameters it knows; unknown ones, a known name asked as another
    kind (text choices for a number) and their conditionals are the fallback's, on the same
    trial, and the trial records who set what."""
    trusting = NegativeTransferGuard(min_evidence=40, ceiling=1.0)  # no fallback trials
    sampler = MetaPriorSampler(xy_prior, seed=0, fallback=_FirstValueSampler(), guard=trusting)
    study = optuna.create_study(sampler=sampler)

    def objective(trial):
        x = trial.suggest_float("x", -1, 1)  # the prior's
        y = len(trial.suggest_categorical("y", ["lo", "high"]))  # same name, another kind
        kind = trial.suggest_categorical("kind", ["a", "b"])  # unknown to the prior
        extra = trial.suggest_float("lr", 1e-4, 1, log=True) if kind == "b" else 0.0
        return x**2 + y + extra

    study.optimize(objective, n_trials=6)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    for t in study.trials:
        assert t.user_attrs[TrialAttr.SOURCE.key] != "fallback"
        # the fallback's marks on everything the prior does not cover
        assert (t.params["y"], t.params["kind"], t.params["lr"]) == ("high", "b", 1e-4)
        sources = t.user_attrs[TrialAttr.PARAM_SOURCES.key]
        assert sources == {"x": "prior", "y": "fallback", "kind": "fallback", "lr": "fallback"}
    # x is the prior's: diverse proposals near the family's optimum, not -1
    xs = [t.params["x"] for t in study.trials]
    assert len(set(xs)) == len(xs) and all(x != -1.0 for x in xs)
    assert min(abs(x - CENTRE[0]) for x in xs) < 0.3


def test_enqueued_and_partially_fixed_params(xy_prior):
    study = optuna.create_study(sampler=MetaPriorSampler(xy_prior, seed=0))
    study.enqueue_trial({"x": -0.9})
    study.optimize(objective_for(CENTRE), n_trials=3)
    first = study.trials[0]
    assert first.params["x"] == -0.9
    # the prior's proposal is made knowing x is fixed: its recorded prediction is for the
    # config the trial ran, not for a proposal with another x
    pred = xy_prior.adapt().predict(xy_prior.encoder.encode(first.params)[None]).mean[0]
    assert first.user_attrs[TrialAttr.PRED_MEAN.key] == pytest.approx(pred, abs=1e-5)
    fixed = optuna.samplers.PartialFixedSampler({"y": 0.5}, MetaPriorSampler(xy_prior, seed=0))
    study2 = optuna.create_study(sampler=fixed)
    study2.optimize(objective_for(CENTRE), n_trials=6)
    assert all(t.params["y"] == 0.5 for t in study2.trials)
    assert len({t.params["x"] for t in study2.trials}) == 6


def test_enqueued_value_outside_the_prior_range_goes_to_the_fallback(xy_prior):
    def objective(trial):  # x with another range than the prior's [-1, 1]
        return bowl(trial.suggest_float("x", -2, 2), trial.suggest_float("y", -1, 1), CENTRE)

    study = optuna.create_study(sampler=MetaPriorSampler(xy_prior, seed=0))
    study.optimize(objective, n_trials=3)
    study.enqueue_trial({"x": 1.5})
    study.optimize(objective, n_trials=1)
    assert study.trials[-1].state == TrialState.COMPLETE
    assert study.trials[-1].params["x"] == 1.5


def test_enqueued_baselines_do_not_pin_a_parameter(xy_prior):
    """Three enqueued trials at x=0 are baselines, not a fixed x (PartialFixedSampler is)."""
    study = optuna.create_study(sampler=MetaPriorSampler(xy_prior, seed=1))
    for y in (-0.5, 0.0, 0.5):
        study.enqueue_trial({"x": 0.0, "y": y})
    study.optimize(objective_for(CENTRE), n_trials=10)
    assert all(t.params["x"] != 0.0 for t in study.trials[3:])


def test_pruned_configs_are_not_proposed_again(xy_prior):
    def objective(trial):
        trial.suggest_float("x", -1, 1)
        trial.suggest_float("y", -1, 1)
        raise optuna.TrialPruned()

    sampler = MetaPriorSampler(xy_prior, n_startup_trials=5, portfolio_trials=0, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=4)
    # nothing was observed, so every trial is a zero-shot proposal: each one keeps the
    # zero-shot spacing from the pruned ones before it
    pts = np.array([[t.params["x"], t.params["y"]] for t in study.trials])
    d = np.sqrt((((pts[:, None] - pts[None]) / 2) ** 2).mean(-1))  # RMS in the unit cube
    assert d[np.triu_indices(4, 1)].min() >= 0.15 - 1e-9


def test_no_startup_trials_adapts_from_the_first_trial(xy_prior):
    study = optuna.create_study(sampler=MetaPriorSampler(xy_prior, n_startup_trials=0, seed=0))
    study.optimize(objective_for(CENTRE), n_trials=3)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert study.trials[0].user_attrs[TrialAttr.SOURCE.key] == "adapted-prior"


def test_one_sampler_reused_across_studies(xy_prior):
    """In-memory studies all number their trials from 0: nothing cached leaks between them."""
    reused = MetaPriorSampler(xy_prior, seed=0)
    optuna.create_study(sampler=reused).optimize(objective_for(CENTRE), n_trials=12)
    other = (-0.6, 0.7)
    b = optuna.create_study(sampler=reused)
    b.optimize(objective_for(other), n_trials=12)
    fresh = optuna.create_study(sampler=MetaPriorSampler(xy_prior, seed=0))
    fresh.optimize(objective_for(other), n_trials=12)
    assert [t.params for t in b.trials] == [t.params for t in fresh.trials]


def test_a_long_lived_sampler_and_a_fresh_one_propose_the_same(xy_prior):
    """What the sampler caches per study (encodings, GP fits, mappings) only saves time."""
    lived = optuna.create_study(sampler=MetaPriorSampler(xy_prior, seed=0))
    lived.optimize(objective_for(CENTRE), n_trials=15)
    copy_ = optuna.create_study(sampler=MetaPriorSampler(xy_prior, seed=0))
    copy_.add_trials(lived.trials)
    for study in (lived, copy_):
        study.optimize(objective_for(CENTRE), n_trials=6)
    assert [t.params for t in copy_.trials[15:]] == [t.params for t in lived.trials[15:]]
    sources = {t.user_attrs[TrialAttr.SOURCE.key] for t in lived.trials[15:]}
    assert "adapted-prior" in sources  # the cached path was the one taken


def test_parallel_jobs(xy_prior, tmp_path):
    storage = f"sqlite:///{tmp_path / 'par.db'}"
    study = optuna.create_study(storage=storage, sampler=MetaPriorSampler(xy_prior, seed=0))
    study.optimize(objective_for(CENTRE), n_trials=12, n_jobs=2)
    trials = study.get_trials()
    assert len(trials) == 12 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({(t.params["x"], t.params["y"]) for t in trials}) == 12


def test_two_processes_share_one_rdb_study(xy_prior, tmp_path):
    prior_file = save_prior(xy_prior, tmp_path / "p.safetensors")
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(study_name="shared", storage=storage)
    worker = textwrap.dedent(
        f"""
        import optuna
        from tuner.sampler import MetaPriorSampler
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.load_study(study_name="shared", storage={storage!r},
                                  sampler=MetaPriorSampler({str(prior_file)!r}))
        def f(t):
            return (t.suggest_float("x", -1, 1) - 0.4) ** 2 + t.suggest_float("y", -1, 1) ** 2
        study.optimize(f, n_trials=6)
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", worker]) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    assert len(trials) == 12 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(TrialAttr.SOURCE.key in t.user_attrs for t in trials)


def test_misleading_prior_is_caught_by_the_guard(xy_prior):
    """On tasks whose optimum is opposite the family's, the guard hands over to TPE."""
    finals, tpe_finals, fired = [], [], 0
    rng = np.random.default_rng(11)
    for seed in range(3):
        far = -family_centre(rng)  # the prior's favourite region is now poor
        study = optuna.create_study(sampler=MetaPriorSampler(xy_prior, seed=seed))
        study.optimize(objective_for(far), n_trials=30)
        finals.append(study.best_value)
        guards = [t.user_attrs[TrialAttr.GUARD.key] for t in study.trials]
        fired += any(g["fired"] for g in guards)
        tpe = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
        tpe.optimize(objective_for(far), n_trials=30)
        tpe_finals.append(tpe.best_value)
    assert fired >= 2
    # values span [0, ~5] here: within 1% of that range of TPE's result after 30 trials
    assert np.mean(finals) <= np.mean(tpe_finals) + 0.05, (finals, tpe_finals)


def test_an_adversarial_prior_hands_over_to_the_fallback(xy_prior, caplog):
    """Force an inverted relation: the guard must fire, say so, and route trials to TPE."""
    caplog.set_level("WARNING", logger="tuner.sampler")
    study = optuna.create_study(
        direction="maximize",  # maximising the bowl: the prior ranks everything backwards
        sampler=MetaPriorSampler(xy_prior, seed=0, guard=NegativeTransferGuard(min_evidence=4)),
    )
    tuner.set_verbosity(logging.WARNING)  # the module silences Optuna (and so the sampler)
    try:
        study.optimize(objective_for(CENTRE), n_trials=25)
    finally:
        tuner.set_verbosity(None)
    guards = [t.user_attrs[TrialAttr.GUARD.key] for t in study.trials]
    assert any(g["fired"] for g in guards)
    sources = [t.user_attrs[TrialAttr.SOURCE.key] for t in study.trials[-10:]]
    assert sources.count("fallback") >= 5
    warnings = [r.getMessage() for r in caplog.records if "mean evidence" in r.getMessage()]
    assert len(warnings) == 1  # said once, not on every trial
    assert "trusting the fallback sampler" in warnings[0]


def test_poor_proposals_of_the_prior_count_as_evidence_against_it(xy_prior):
    """A trial the prior proposed whose value lands among the worst quarter of the trials
    before it is marked, and the guard scores it 0 whatever its concordance."""
    guard = NegativeTransferGuard(min_evidence=40)  # keeps proposing from the prior
    study = optuna.create_study(sampler=MetaPriorSampler(xy_prior, seed=0, guard=guard))
    study.optimize(objective_for(CENTRE), n_trials=6)
    worst_so_far = max(t.value for t in study.trials)
    told = {}
    for value in (worst_so_far + 1.0, min(t.value for t in study.trials) - 1.0):
        trial = study.ask()
        trial.suggest_float("x", -1, 1)
        trial.suggest_float("y", -1, 1)
        study.tell(trial, value)
        told[value] = study.trials[trial.number]
    bad, good = told.values()
    assert bad.user_attrs[TrialAttr.SOURCE.key] == "adapted-prior"  # (seeded: not the 5 % to TPE)
    assert bad.user_attrs[TrialAttr.POOR.key] is True
    assert TrialAttr.POOR.key not in good.user_attrs
    # the guard's evidence: the concordances, with 0 for the poor proposals
    study.sampler = MetaPriorSampler(xy_prior, seed=0)
    probe = study.ask()
    state = study.trials[probe.number].user_attrs[TrialAttr.GUARD.key]
    evidence = [
        0.0 if t.user_attrs.get(TrialAttr.POOR.key) else t.user_attrs[TrialAttr.CONCORDANCE.key]
        for t in study.trials
        if TrialAttr.CONCORDANCE.key in t.user_attrs
    ]
    assert 0.0 in evidence and state["concordance"] == pytest.approx(np.mean(evidence), abs=1e-4)


def _distrusting_sampler(xy_prior, **kwargs) -> MetaPriorSampler:
    # a guard that never trusts the prior: every trial after the first goes to the fallback
    guard = NegativeTransferGuard(min_evidence=1, floor=0.0, ceiling=0.0)
    return MetaPriorSampler(xy_prior, seed=0, guard=guard, fallback=_FirstValueSampler(), **kwargs)


def test_the_fallback_starts_with_random_trials(xy_prior):
    """After a hand-over, the first fallback trials are uniformly random, the rest the
    fallback's own, so a distrusted prior's proposals do not seed the fallback's model."""
    study = optuna.create_study(sampler=_distrusting_sampler(xy_prior, fallback_startup_trials=4))
    study.optimize(objective_for(CENTRE), n_trials=9)
    sources = [t.user_attrs[TrialAttr.SOURCE.key] for t in study.trials]
    assert sources == ["prior"] * 1 + ["fallback"] * 8
    from_fallback = [t.params == {"x": -1.0, "y": -1.0} for t in study.trials[1:]]
    assert from_fallback == [False] * 4 + [True] * 4
    # random, but seeded per trial: the same seed gives the same startup trials
    again = optuna.create_study(sampler=_distrusting_sampler(xy_prior, fallback_startup_trials=4))
    again.optimize(objective_for(CENTRE), n_trials=9)
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    xs = [t.params["x"] for t in study.trials[1:5]]
    assert len(set(xs)) == 4 and all(-1 <= x <= 1 for x in xs)


@dataclasses.dataclass(frozen=True)
class _LateGuard(NegativeTransferGuard):
    """Trusts the prior fully for its first ``after`` trials with evidence, then not at all."""

    after: int = 20

    def assess(self, concordances):
        trust = 1.0 if len(concordances) < self.after else 0.0
        return GuardState(trust, len(concordances), None, None, trust < 0.5)


def test_a_late_hand_over_lets_the_fallback_model_from_the_study(xy_prior):
    """With 20 complete trials (twice ``fallback_startup_trials``) the study has enough for
    the fallback to model: a hand-over then starts with the fallback's own trials, not with
    random ones. An early hand-over keeps its random start (the test above)."""
    guard = _LateGuard(ceiling=1.0, after=21)
    sampler = MetaPriorSampler(xy_prior, seed=0, guard=guard, fallback=_FirstValueSampler())
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective_for(CENTRE), n_trials=26)
    sources = [t.user_attrs[TrialAttr.SOURCE.key] for t in study.trials]
    assert sources == ["prior"] + ["adapted-prior"] * 22 + ["fallback"] * 3
    assert all(t.params == {"x": -1.0, "y": -1.0} for t in study.trials[23:])
    # the same hand-over with a larger start-up still begins with random trials
    sampler = MetaPriorSampler(
        xy_prior, seed=0, guard=guard, fallback=_FirstValueSampler(), fallback_startup_trials=15
    )
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective_for(CENTRE), n_trials=26)
    assert not any(t.params == {"x": -1.0, "y": -1.0} for t in study.trials[23:])


def test_no_fallback_startup_hands_every_trial_to_the_fallback(xy_prior):
    study = optuna.create_study(sampler=_distrusting_sampler(xy_prior, fallback_startup_trials=0))
    study.optimize(objective_for(CENTRE), n_trials=4)
    assert [t.params for t in study.trials[1:]] == [{"x": -1.0, "y": -1.0}] * 3


def test_multi_objective_goes_to_the_fallback(xy_prior):
    study = optuna.create_study(
        directions=["minimize", "minimize"], sampler=MetaPriorSampler(xy_prior, seed=0)
    )
    study.optimize(
        lambda t: (t.suggest_float("x", -1, 1), t.suggest_float("y", -1, 1)), n_trials=5
    )
    assert all(t.user_attrs[TrialAttr.SOURCE.key] == "fallback" for t in study.trials)


def test_bad_arguments_are_clear_errors(xy_prior, tmp_path):
    from tuner import MttuneError

    with pytest.raises(MttuneError, match="acquisition must be one of"):
        MetaPriorSampler(xy_prior, acquisition="pi")
    with pytest.raises(MttuneError, match="n_startup_trials must be >= 0"):
        MetaPriorSampler(xy_prior, n_startup_trials=-1)
    with pytest.raises(MttuneError, match="portfolio_trials must be >= 0, got -2"):
        MetaPriorSampler(xy_prior, portfolio_trials=-2)
    with pytest.raises(MttuneError, match="fallback_startup_trials must be >= 0, got -1"):
        MetaPriorSampler(xy_prior, fallback_startup_trials=-1)
    with pytest.raises(MttuneError, match="prior file not found"):
        MetaPriorSampler(tmp_path / "missing.safetensors")


def test_failed_trials_steer_away_from_failing_regions(xy_prior):
    """A region where the script fails counts as worst, so the sampler leaves it."""

    def objective(trial):
        x, y = trial.suggest_float("x", -1, 1), trial.suggest_float("y", -1, 1)
        if x > 0.0:  # the family's optimum lies here, but the script crashes
            raise RuntimeError("diverged")
        return bowl(x, y, CENTRE)

    def share_avoiding(sampler):
        study = optuna.create_study(sampler=sampler)
        study.optimize(objective, n_trials=25, catch=(RuntimeError,))
        return np.mean([t.params["x"] <= 0.0 for t in study.trials[10:]])

    ours = [share_avoiding(MetaPriorSampler(xy_prior, seed=s)) for s in range(3)]
    tpe = [share_avoiding(optuna.samplers.TPESampler(seed=s)) for s in range(3)]  # ignores FAIL
    assert np.mean(ours) > np.mean(tpe) + 0.15, (ours, tpe)


def test_without_the_residual_gp_proposals_come_from_the_adapted_prior_alone(xy_prior, tmp_path):
    """``residual_gp=False``: each adapted proposal's prediction is the adapted prior's own."""
    from tuner.prior import observation_targets

    def run(name, **kwargs):
        study = optuna.create_study(
            study_name=name,
            storage=f"sqlite:///{tmp_path / 'gp.db'}",
            sampler=MetaPriorSampler(xy_prior, seed=4, **kwargs),
        )
        study.optimize(objective_for(CENTRE + 0.1), n_trials=16)
        return study.trials

    def own_prediction(trials, n):
        """The prior adapted to trials 0..n-1 (all complete), at trial n's config."""
        earlier = trials[:n]
        f = xy_prior.encoder.encode_many([t.params for t in earlier])
        t = observation_targets([t.value for t in earlier], "minimize")
        new = xy_prior.encoder.encode_many([trials[n].params])
        return float(xy_prior.adapt(f, t).predict(new).mean[0])

    alone = run("alone", residual_gp=False)
    adapted = [t for t in alone if TrialAttr.SOURCE.get(t.user_attrs) == "adapted-prior"]
    assert len(adapted) >= 10
    for t in adapted:
        recorded = t.user_attrs[TrialAttr.PRED_MEAN.key]
        assert recorded == pytest.approx(own_prediction(alone, t.number), abs=2e-6)
    # reproducible, and not what the default (with the GP) proposes
    assert [t.params for t in run("again", residual_gp=False)] == [t.params for t in alone]
    with_gp = run("with-gp")
    gaps = [
        abs(t.user_attrs[TrialAttr.PRED_MEAN.key] - own_prediction(with_gp, t.number))
        for t in with_gp[3:]
        if TrialAttr.SOURCE.get(t.user_attrs) == "adapted-prior"
    ]
    assert max(gaps) > 1e-3
