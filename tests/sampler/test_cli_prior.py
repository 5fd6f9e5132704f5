"""``mttune run --prior``: the CLI drives MetaPriorSampler end to end."""

from __future__ import annotations

import optuna

from tests.conftest import REPO, SCRIPTS
from tuner.cli import main
from tuner.prior import load_prior, save_prior
from tuner.space import load_space
from tuner.studies import StudyAttr, TrialAttr


def test_run_with_a_prior_records_provenance(xy_prior, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prior = save_prior(xy_prior, tmp_path / "xy.safetensors")
    code = main(
        [
            "run",
            str(SCRIPTS / "quad.py"),
            "--space",
            str(REPO / "tests/spaces/quad.yaml"),
            "--prior",
            str(prior),
            "--n-trials",
            "5",
            "--seed",
            "0",
            "--progress",
            "none",
        ]
    )
    assert code == 0
    study = optuna.load_study(study_name="quad", storage="sqlite:///studies/quad.db")
    sources = [t.user_attrs[TrialAttr.SOURCE.key] for t in study.trials]
    assert sources[0] == "prior" and set(sources) <= {"prior", "adapted-prior", "fallback"}
    assert study.user_attrs[StudyAttr.PRIOR.key]["space_hash"] == xy_prior.space.hash


def test_prior_for_another_space_is_refused_before_any_trial(
    xy_prior, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    prior = save_prior(xy_prior, tmp_path / "xy.safetensors")
    code = main(
        [
            "run",
            str(SCRIPTS / "quad.py"),
            "--space",
            str(REPO / "search_spaces/mlp.yaml"),
            "--prior",
            str(prior),
            "--n-trials",
            "2",
            "--progress",
            "none",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "trained for another search space" in err and "'lr'" in err
    assert not (tmp_path / "studies").exists()


def test_shipped_prior_matches_the_shipped_space():
    space = load_space(REPO / "search_spaces" / "mlp.yaml")
    prior = load_prior(REPO / "studies" / "mlp.prior.safetensors", space=space)
    assert len(prior.info["sources"]["used"]) >= 10
    proposal = prior.zero_shot(2)
    assert all(space.contains(c) is None for c in proposal)
