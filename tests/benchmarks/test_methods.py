"""The transfer benchmark's methods and metric, on small real studies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from benchmarks.methods import PriorFreeGP, greedy_portfolio, meta_learn_tpe, source_studies
from benchmarks.report import incumbent_curve, regret_curves
from tuner.metadataset import MetaDataset
from tuner.space import Encoder, SearchSpace

PEER = Path(__file__).resolve().parents[3] / "shared" / "peers" / "meta_learn_tpe"

# a conditional parameter gives the prior's coordinates a presence column the Encoder lacks
SPACE = SearchSpace.from_dict(
    {
        "name": "cond",
        "objective": {"name": "loss", "direction": "minimize"},
        "params": {
            "kind": {"type": "categorical", "choices": ["a", "b"]},
            "x": {"type": "float", "low": 0.0, "high": 1.0},
            "depth": {
                "type": "int",
                "low": 1,
                "high": 8,
                "condition": {"param": "kind", "equals": "b"},
            },
        },
    }
)


def _loss(cfg, centre):
    return (cfg["x"] - centre) ** 2 + (0.0 if cfg["kind"] == "b" else 0.3)


def test_greedy_portfolio_compares_in_the_tasks_own_coordinates():
    rng = np.random.default_rng(0)
    enc = Encoder(SPACE)
    tasks = []
    for i, centre in enumerate((0.2, 0.25, 0.8)):
        configs = enc.decode_many(enc.sample(40, rng))
        values = [_loss(c, centre) for c in configs]
        if i == 2:  # an older study that did not tune x yet: x gets a presence column
            configs[:10] = [{k: v for k, v in c.items() if k != "x"} for c in configs[:10]]
        tasks.append((f"t{i}", configs, values))
    past = MetaDataset.from_tasks(SPACE, tasks)
    assert past.tasks[0].x.shape[1] == enc.dim + 1  # Encoder coordinates would not compare
    portfolio = greedy_portfolio(past)
    assert len(portfolio) == 3 and all(c["kind"] == "b" for c in portfolio)
    # the first pick is the best config of a study near the two alike ones, then the odd one
    assert portfolio[0]["x"] < 0.5 and any(c["x"] > 0.5 for c in portfolio[1:])


def test_regret_is_of_the_incumbents_true_value():
    # trial 1 observed luckily well (0.1) but is truly 0.9; trial 2 is truly 0.2
    run = {
        "method": "m",
        "task": "t",
        "seed": 0,
        "values": [0.5, 0.1, 0.3],
        "true": [0.5, 0.9, 0.2],
    }
    assert incumbent_curve(run, 1.0).tolist() == [0.5, 0.9, 0.9]
    refs = {"t": {"best": 0.0, "median": 1.0}}
    assert regret_curves([run], refs, "minimize")["m"][0].tolist() == [0.5, 0.9, 0.9]
    deterministic = {"method": "m", "task": "t", "seed": 0, "values": [0.5, 0.1, 0.3]}
    assert incumbent_curve(deterministic, 1.0).tolist() == [0.5, 0.1, 0.1]
    # maximisation: the sign turns it around
    up = {"values": [0.5, 0.9, 0.7], "true": [0.5, 0.1, 0.8]}
    assert incumbent_curve(up, -1.0).tolist() == [-0.5, -0.1, -0.1]


def _objective(trial):
    kind = trial.suggest_categorical("kind", ["a", "b"])
    x = trial.suggest_float("x", 0.0, 1.0)
    if kind == "b":
        trial.suggest_int("depth", 1, 8)
    return _loss({"kind": kind, "x": x}, 0.3)


def test_prior_free_gp_is_seeded_and_finds_the_bowl():
    def run(seed):
        study = optuna.create_study(sampler=PriorFreeGP(SPACE, seed=seed))
        study.optimize(_objective, n_trials=20)
        return study

    a, b = run(0), run(0)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert a.best_value < 0.01
    assert len({tuple(sorted(t.params.items())) for t in a.trials}) == 20


@pytest.mark.skipif(not (PEER / "sampler.py").is_file(), reason=f"no Meta-Learn TPE at {PEER}")
def test_meta_learn_tpe_runs_on_optuna_5_from_the_past_studies(tmp_path):
    db = tmp_path / "past.db"
    for i, centre in enumerate((0.25, 0.35)):
        study = optuna.create_study(
            study_name=f"task-{i}",
            storage=f"sqlite:///{db}",
            sampler=optuna.samplers.TPESampler(seed=i),
        )
        study.optimize(lambda t, c=centre: (t.suggest_float("x", 0, 1) - c) ** 2, n_trials=20)
    sources = source_studies(str(db))
    assert [len(s.trials) for s in sources] == [20, 20]

    def run():
        sampler = meta_learn_tpe(str(PEER), sources, seed=3)
        study = optuna.create_study(sampler=sampler)
        study.optimize(lambda t: (t.suggest_float("x", 0, 1) - 0.3) ** 2, n_trials=25)
        return [t.params["x"] for t in study.trials]

    xs = run()
    assert xs == run()  # seeded
    assert min((x - 0.3) ** 2 for x in xs[10:]) < 1e-3  # past its 10 start-up trials it transfers
    with pytest.raises(FileNotFoundError, match="--meta-learn-tpe"):
        meta_learn_tpe(str(tmp_path), sources, seed=0)
