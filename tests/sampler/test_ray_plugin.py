"""MetaPriorSampler inside plain Ray Tune, as ``OptunaSearch(sampler=...)``."""

from __future__ import annotations

import math
import statistics
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO
from tuner.runners import RayOptions, ray_cluster
from tuner.sampler import MetaPriorSampler
from tuner.studies import TrialAttr

pytestmark = pytest.mark.ray


def test_optuna_search_with_meta_prior_sampler(xy_prior):
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    def trainable(config):
        tune.report({"loss": (config["x"] - 0.4) ** 2 + (config["y"] + 0.3) ** 2})

    space = {"x": tune.uniform(-1, 1), "y": tune.uniform(-1, 1)}
    sampler = MetaPriorSampler(xy_prior, seed=0)
    search = OptunaSearch(sampler=sampler, metric="loss", mode="min", seed=0)
    temp_dir = Path(tempfile.mkdtemp(prefix="mtp-", dir="/tmp"))
    with ray_cluster(RayOptions(workers=1, temp_dir=str(temp_dir))):
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                search_alg=search,
                num_samples=6,
            ),
            run_config=tune.RunConfig(verbose=0, storage_path=str(temp_dir / "results")),
        )
        results = tuner.fit()
    losses = sorted(r.metrics["loss"] for r in results)
    trials = search._ot_study.trials  # OptunaSearch's own study, driven by our sampler
    # every result Ray got went back to the sampler's study (what adapting the prior needs)
    assert len(losses) == 6 and sorted(t.value for t in trials) == losses
    sources = [t.user_attrs.get(TrialAttr.SOURCE.key) for t in trials]
    assert sources[0] == "prior" and set(sources) <= {"prior", "adapted-prior", "fallback"}
    # The prior's zero-shot proposal lands near the bowls' optimum (a uniform draw comes
    # within 0.05 of it 4% of the time), and the trials the prior drove stay there (the
    # median of uniform draws is about 0.8).
    assert trials[0].value < 0.05, trials[0].params
    driven = [t.value for t, src in zip(trials, sources, strict=True) if src != "fallback"]
    assert statistics.median(driven) < 0.1, [(t.value, t.user_attrs) for t in trials]


def test_ray_randint_and_lograndint_bounds_adapt_the_prior():
    """Ray's ``randint(1, 4)`` / ``lograndint(8, 257)`` have exclusive upper bounds, so the
    distributions OptunaSearch asks never equal the prior's 1..3 and 8..256: the sampler maps
    them onto the prior's features and adapts (it used to stay zero-shot for every trial)."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from tuner.prior import load_prior
    from tuner.studies import StudyAttr

    def trainable(config):
        loss = (math.log10(config["lr"]) + 2.2) ** 2 + 0.05 * config["n_layers"]
        tune.report({"loss": loss + 0.02 * abs(math.log2(config["hidden"]) - 6)})

    space = {
        "lr": tune.loguniform(1e-4, 0.1),
        "n_layers": tune.randint(1, 5),
        "hidden": tune.lograndint(8, 257),
    }
    prior = load_prior(REPO / "studies" / "mlp.prior.safetensors")
    search = OptunaSearch(sampler=MetaPriorSampler(prior, seed=0), metric="loss", mode="min")
    temp_dir = Path(tempfile.mkdtemp(prefix="mtp-", dir="/tmp"))
    with ray_cluster(RayOptions(workers=1, temp_dir=str(temp_dir))):
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(search_alg=search, num_samples=10),
            run_config=tune.RunConfig(verbose=0, storage_path=str(temp_dir / "results")),
        )
        tuner.fit()
    study = search._ot_study
    sources = [t.user_attrs[TrialAttr.SOURCE.key] for t in study.trials]
    assert sources[0] == "prior" and "adapted-prior" in sources, sources
    assert sum(TrialAttr.CONCORDANCE.key in t.user_attrs for t in study.trials) >= 5
    coverage = study.user_attrs[StudyAttr.COVERAGE.key]
    assert coverage["covered"] == ["lr", "n_layers", "hidden"] and coverage["fallback"] == {}
    assert study.trials[0].distributions["hidden"].high == 256


def test_pruning_optuna_search_records_asha_stops_pruned_at_their_last_step(tmp_path):
    """Ray's own OptunaSearch records ASHA's stops COMPLETE with a truncated value; this one
    records them PRUNED (in the user's study), and what ran to its end stays COMPLETE."""
    import optuna
    from optuna.trial import TrialState
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from tuner.runners import PruningOptunaSearch

    steps = 6  # RunConfig(stop=...) ends every trial that gets there: its end, not a prune

    def trainable(config):
        base = (config["x"] - 0.4) ** 2 + (config["y"] + 0.3) ** 2
        for step in range(1, 100):
            tune.report({"loss": base + 1.0 / step})  # improves with every step

    storage = f"sqlite:///{tmp_path / 'ray.db'}"
    search = PruningOptunaSearch(
        space={
            "x": optuna.distributions.FloatDistribution(-1, 1),
            "y": optuna.distributions.FloatDistribution(-1, 1),
        },
        sampler=optuna.samplers.RandomSampler(seed=0),
        metric="loss",
        mode="min",
        study_name="ray-asha",
        storage=optuna.storages.RDBStorage(storage),
    )
    asha = ASHAScheduler(metric="loss", mode="min", grace_period=1, reduction_factor=2, max_t=50)
    temp_dir = Path(tempfile.mkdtemp(prefix="mtp-", dir="/tmp"))
    with ray_cluster(RayOptions(workers=2, temp_dir=str(temp_dir))):
        tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=search, scheduler=search.watch(asha), num_samples=12
            ),
            run_config=tune.RunConfig(
                verbose=0,
                storage_path=str(temp_dir / "results"),
                stop={"training_iteration": steps},
            ),
        ).fit()
    trials = optuna.load_study(study_name="ray-asha", storage=storage).trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 12 and pruned and complete, [(t.state, t.last_step) for t in trials]
    for t in pruned:  # stopped at a rung (1, 2 or 4 reports) by ASHA, its last report kept
        assert t.last_step < steps and t.value == t.intermediate_values[t.last_step]
        assert "by AsyncHyperBandScheduler" in TrialAttr.PRUNE_REASON.get(t.user_attrs)
    for t in complete:
        assert t.last_step == steps and t.value == t.intermediate_values[steps]
