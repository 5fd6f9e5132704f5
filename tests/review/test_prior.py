"""Prior diagnostics on studies really run by MetaPriorSampler.

A small prior is meta-trained on bowls centred near (0.3, 0.7). It then drives two
studies: one of the same family (the prior should predict it well and keep its trust) and
one whose objective is the bowl turned upside down (the prior ranks it backwards: the
negative-transfer guard must fire, and review must say so).
"""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
from scipy import stats

from tests.prior.conftest import CENTRE, SMALL_MODEL, SPACE, bowl_family
from tuner.cli import main
from tuner.prior import MAMLConfig, meta_train
from tuner.runners import record_prior
from tuner.sampler import MetaPriorSampler
from tuner.studies import StudyAttr, TrialAttr

N_TRIALS = 25

pytestmark = pytest.mark.slow  # meta-trains a prior and runs MetaPriorSampler (~30 s)


def _bowl(params: dict) -> float:
    return (params["a"] - CENTRE[0]) ** 2 + (params["b"] - CENTRE[1]) ** 2


@pytest.fixture(scope="module")
def prior_studies(tmp_path_factory):
    prior = meta_train(
        bowl_family(10, 30, seed=0),
        model=SMALL_MODEL,
        maml=MAMLConfig(max_steps=40, val_every=20, patience=2),
        seed=0,
    )
    db = tmp_path_factory.mktemp("prior") / "prior.db"
    noise = np.random.default_rng(1)
    for name, sign in (("same", 1.0), ("upside-down", -1.0)):
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.create_study(
            study_name=name, storage=f"sqlite:///{db}", sampler=MetaPriorSampler(prior, seed=0)
        )
        record_prior(study, prior, "bowl.safetensors")
        study.set_user_attr(StudyAttr.OBJECTIVE.key, "loss")
        study.optimize(
            lambda t, s=sign: s * _bowl(SPACE.suggest(t)) + noise.normal(0, 0.01),
            n_trials=N_TRIALS,
        )
    return db


def _prior_section(db, name: str, capsys) -> dict:
    assert main(["review", str(db), "--study", name, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["prior"]


def _trials(db, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}").trials


@pytest.mark.parametrize("name", ["same", "upside-down"])
def test_prior_diagnostics_summarise_the_samplers_records(prior_studies, name, capsys):
    """Every number of the section, recomputed from the trials' attributes through Optuna."""
    p = _prior_section(prior_studies, name, capsys)
    trials = _trials(prior_studies, name)
    by_source: dict[str, list] = {}
    for t in trials:
        by_source.setdefault(t.user_attrs[TrialAttr.SOURCE.key], []).append(t)
    assert set(p["sources"]) == set(by_source) and "prior" in by_source
    for src, ts in by_source.items():
        values = [t.value for t in ts]
        assert p["sources"][src]["trials"] == p["sources"][src]["complete"] == len(ts)
        assert p["sources"][src]["mean"] == pytest.approx(np.mean(values))
        assert p["sources"][src]["best"] == pytest.approx(min(values))
    assert p["proposed_by_prior"] + p["fallback"] == N_TRIALS
    assert p["fallback"] == len(by_source.get("fallback", []))
    poor = [t for t in trials if t.user_attrs.get(TrialAttr.POOR.key) is True]
    assert p["poor_proposals"] == len(poor)
    scored = [t for t in trials if TrialAttr.PRED_MEAN.key in t.user_attrs]
    pred = [t.user_attrs[TrialAttr.PRED_MEAN.key] for t in scored]
    obs = [t.value for t in scored]
    assert p["correlation"]["n"] == len(scored) >= N_TRIALS - 3
    assert p["correlation"]["spearman"] == pytest.approx(stats.spearmanr(pred, obs).statistic)
    assert p["correlation"]["kendall"] == pytest.approx(stats.kendalltau(pred, obs).statistic)
    conc = [
        t.user_attrs[TrialAttr.CONCORDANCE.key]
        for t in trials
        if TrialAttr.CONCORDANCE.key in t.user_attrs
    ]
    assert p["concordance"] == {"n": len(conc), "mean": pytest.approx(np.mean(conc))}
    zero = [t.user_attrs.get(TrialAttr.CONCORDANCE_ZERO_SHOT.key) for t in trials]
    pairs = [
        (c, z)
        for t, z in zip(trials, zero, strict=True)
        if (c := t.user_attrs.get(TrialAttr.CONCORDANCE.key)) is not None and z is not None
    ]
    assert len(pairs) == len(conc)  # both are recorded on the same trials
    assert p["adaptation"] == {
        "n": len(pairs),
        "adapted": pytest.approx(np.mean([c for c, _ in pairs])),
        "zero_shot": pytest.approx(np.mean([z for _, z in pairs])),
    }
    guards = [(t.number, t.user_attrs[TrialAttr.GUARD.key]) for t in trials]
    fired = [n for n, g in guards if g["fired"]]
    assert p["guard"]["fired"] is bool(fired) and p["guard"]["fired_trials"] == len(fired)
    assert p["guard"]["first_fired"] == (fired[0] if fired else None)
    last = guards[-1][1]
    assert p["guard"]["final"] == {
        k: last[k] for k in ("trust", "concordance", "evidence", "fired")
    }
    info = p["study_prior"]
    assert info["path"] == "bowl.safetensors" and len(info["sources"]) >= 8
    assert info["validation"]  # what meta-training measured on held-out studies
    assert len(p["points"]) == len(scored)


def test_an_upside_down_study_shows_the_guard_firing(prior_studies, capsys):
    good = _prior_section(prior_studies, "same", capsys)
    bad = _prior_section(prior_studies, "upside-down", capsys)
    assert bad["guard"]["fired"] is True and bad["guard"]["final"]["trust"] < 0.5
    assert bad["concordance"]["mean"] < 0.5
    assert bad["correlation"]["spearman"] < good["correlation"]["spearman"]


def test_prior_section_in_the_terminal_and_the_page(prior_studies, tmp_path, capsys):
    page = tmp_path / "p.html"
    code = main(["review", str(prior_studies), "--study", "upside-down", "--html", str(page)])
    assert code == 0
    out = capsys.readouterr().out
    assert "prior diagnostics" in out and "guard fired" in out and "learned from" in out
    html = page.read_text()
    assert "Prior diagnostics" in html and "predicted (rank units" in html
    p = _prior_section(prior_studies, "upside-down", capsys)
    assert p["poor_proposals"] > 0  # the prior's poor proposals, on the page as in the terminal
    said = f"{p['poor_proposals']} of the prior's {p['proposed_by_prior']} proposals landed"
    assert said in out and said in html
    a = p["adaptation"]
    said = f"over {a['n']} trials it ranked each new trial against the earlier ones correctly"
    assert said in out and said in html
    assert html.count("Plotly.newPlot") == 6  # the prior's predicted-vs-observed plot too


def test_adapting_to_the_study_shows_against_the_zero_shot_prior(prior_studies, capsys):
    """The zero-shot prior ranks the same family well and the upside-down one backwards;
    adapting to the upside-down study's own trials must rank them better than it."""
    same = _prior_section(prior_studies, "same", capsys)["adaptation"]
    bad = _prior_section(prior_studies, "upside-down", capsys)["adaptation"]
    assert same["n"] >= N_TRIALS - 3 and bad["n"] >= N_TRIALS - 3
    assert same["zero_shot"] > 0.5 and same["adapted"] > 0.5, same
    assert bad["zero_shot"] < 0.5 and bad["adapted"] > bad["zero_shot"], bad
