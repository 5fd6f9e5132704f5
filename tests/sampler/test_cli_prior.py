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


def _run_with_prior(tmp_path, prior, space_text: str, n: int) -> optuna.Study:
    space = tmp_path / "space.yaml"
    space.write_text(space_text)
    code = main(
        [
            "run",
            str(SCRIPTS / "quad.py"),
            "--space",
            str(space),
            "--prior",
            str(prior),
            "--n-trials",
            str(n),
            "--seed",
            "0",
            "--progress",
            "none",
        ]
    )
    assert code == 0
    return optuna.load_study(study_name="quad", storage="sqlite:///studies/quad.db")


def test_a_narrowed_range_keeps_the_prior_and_adapts(xy_prior, tmp_path, monkeypatch, caplog):
    """The case that refused the prior outright: a range narrowed in the YAML."""
    monkeypatch.chdir(tmp_path)
    prior = save_prior(xy_prior, tmp_path / "xy.safetensors")
    narrowed = (
        (REPO / "tests/spaces/quad.yaml")
        .read_text()
        .replace("x: {type: float, low: -1.0, high: 1.0}", "x: {type: float, low: 0.0, high: 0.6}")
    )
    study = _run_with_prior(tmp_path, prior, narrowed, 8)
    sources = [t.user_attrs[TrialAttr.SOURCE.key] for t in study.trials]
    assert sources[0] == "prior" and "adapted-prior" in sources
    assert all(0.0 <= t.params["x"] <= 0.6 for t in study.trials)
    coverage = study.user_attrs[StudyAttr.COVERAGE.key]
    assert coverage["covered"] == ["x", "y"] and coverage["fallback"] == {}
    assert any("x range 0..0.6 lies inside the prior's -1..1" in n for n in coverage["notes"])
    adapted = [t for t in study.trials if t.user_attrs[TrialAttr.SOURCE.key] == "adapted-prior"]
    assert all(TrialAttr.CONCORDANCE.key in t.user_attrs for t in adapted[1:])
    assert adapted[-1].user_attrs[TrialAttr.PARAM_SOURCES.key] == {"x": "prior", "y": "prior"}


def test_a_prior_that_covers_nothing_says_so_and_the_fallback_runs(
    xy_prior, tmp_path, monkeypatch, caplog
):
    monkeypatch.chdir(tmp_path)
    prior = save_prior(xy_prior, tmp_path / "xy.safetensors")
    other = "objective: {name: value}\nparams:\n  lr: {type: float, low: 0.001, high: 1.0}\n"
    script = tmp_path / "lr.py"
    script.write_text("def train(params, report):\n    return (params['lr'] - 0.3) ** 2\n")
    (tmp_path / "o.yaml").write_text(other)
    argv = ["run", str(script), "--space", str(tmp_path / "o.yaml"), "--prior", str(prior)]
    code = main([*argv, "--n-trials", "3", "--progress", "none", "--study", "quad"])
    assert code == 0
    study = optuna.load_study(study_name="quad", storage="sqlite:///studies/quad.db")
    assert [t.user_attrs[TrialAttr.SOURCE.key] for t in study.trials] == ["fallback"] * 3
    coverage = study.user_attrs[StudyAttr.COVERAGE.key]
    assert coverage["covered"] == [] and coverage["fallback"] == {"lr": "new to the prior"}
    assert "covers none of study 'quad'" in caplog.text


def test_shipped_prior_matches_the_shipped_space():
    space = load_space(REPO / "search_spaces" / "mlp.yaml")
    prior = load_prior(REPO / "studies" / "mlp.prior.safetensors")
    assert len(prior.info["sources"]["used"]) >= 10
    proposal = prior.zero_shot(2)
    assert all(space.contains(c) is None for c in proposal)
