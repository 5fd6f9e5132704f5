"""The attribute schema: current names written, legacy names still read end to end."""

from __future__ import annotations

import json

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tests.conftest import REPO, SCRIPTS
from tuner.cli import main
from tuner.space import load_space
from tuner.studies import Attr, StudyAttr, TrialAttr, canonical_trial_attrs

SPACES = REPO / "tests" / "spaces"


def test_every_attribute_is_prefixed_and_named_once():
    keys = [a.key for a in TrialAttr.all()]
    assert len(keys) == len(set(keys)) and all(k.startswith("mttune.") for k in keys)
    study = [StudyAttr.SPACE, StudyAttr.SPACE_HASH, StudyAttr.OBJECTIVE, StudyAttr.PRIOR]
    assert all(a.key.startswith("mttune.") for a in study)
    legacy = [n for a in TrialAttr.all() for n in a.legacy]
    assert not set(legacy) & set(keys)


def test_get_reads_the_current_name_first_then_legacy_names_and_checks_the_type():
    attr = Attr("mttune.retry_of", ("retry_of",), int)
    assert attr.get({"retry_of": 3}) == 3
    assert attr.get({"retry_of": 3, "mttune.retry_of": 4}) == 4
    assert attr.get({"mttune.retry_of": True}) is None  # a bool is not a trial number
    assert attr.get({"mttune.retry_of": "3"}, default=-1) == -1
    assert attr.has({"retry_of": None}) and not attr.has({})


def test_canonical_renames_legacy_keys_and_keeps_others():
    old = {"seed": 7, "interrupted": True, "user_key": 1, "mttune.source": "prior"}
    assert canonical_trial_attrs(old) == {
        TrialAttr.SEED.key: 7,
        TrialAttr.INTERRUPTED.key: True,
        "user_key": 1,
        "mttune.source": "prior",
    }
    both = {"seed": 1, TrialAttr.SEED.key: 2}
    assert canonical_trial_attrs(both) == {TrialAttr.SEED.key: 2}


def _legacy_study(db):
    """A study as mttune 0.1 wrote it: bare trial attribute names, ``mttune:`` study keys."""
    space = load_space(SPACES / "quad.yaml")
    storage = f"sqlite:///{db}"
    study = optuna.create_study(study_name="quad", storage=storage)
    study.set_user_attr("mttune:space_hash", space.hash)
    study.set_user_attr("mttune:space", space.to_dict())
    study.set_user_attr("mttune:objective", "value")
    dists = {n: FloatDistribution(-1.0, 1.0) for n in ("x", "y")}
    for i in range(4):
        x = -0.5 + 0.3 * i
        study.add_trial(
            create_trial(
                value=(x - 0.3) ** 2 + 0.01,
                params={"x": x, "y": -0.1},
                distributions=dists,
                user_attrs={"seed": 100 + i, "metrics": {"value": 0.0}},
            )
        )
    study.add_trial(
        create_trial(
            state=TrialState.FAIL,
            params={"x": 0.9, "y": 0.9},
            distributions=dists,
            user_attrs={"seed": 5, "fail_reason": "the script exited with code 1: boom"},
        )
    )
    study.add_trial(
        create_trial(
            state=TrialState.FAIL,
            params={"x": 0.25, "y": -0.05},
            distributions=dists,
            user_attrs={"seed": 6, "interrupted": True},
        )
    )
    return storage


def test_a_study_written_with_legacy_names_resumes_and_reviews(tmp_path, monkeypatch, capsys):
    db = tmp_path / "old.db"
    storage = _legacy_study(db)
    monkeypatch.chdir(tmp_path)
    args = [str(SCRIPTS / "quad.py"), "--space", str(SPACES / "quad.yaml"), "--storage", str(db)]
    code = main(["run", *args, "--study", "quad", "--n-trials", "6", "--progress", "none"])
    assert code == 0
    trials = optuna.load_study(study_name="quad", storage=storage).trials
    # the interrupted trial (legacy 'interrupted') was re-run with its config, under new names
    (rerun,) = [t for t in trials if TrialAttr.RETRY_OF.key in t.user_attrs]
    assert rerun.user_attrs[TrialAttr.RETRY_OF.key] == 5
    assert rerun.params == {"x": 0.25, "y": -0.05}
    assert rerun.state == TrialState.COMPLETE and TrialAttr.SEED.key in rerun.user_attrs
    assert "seed" not in rerun.user_attrs
    capsys.readouterr()
    assert main(["review", str(db), "--study", "quad", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    failures = report["failures"]
    assert failures["by_state"]["interrupted"] == 1 and failures["by_state"]["fail"] == 1
    assert failures["top_reasons"][0]["reason"] == "the script exited with code 1: boom"
