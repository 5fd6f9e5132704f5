"""``mttune verify``: real script runs recorded as tagged trials, then used by review."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from tests.review.conftest import noisy_study, quad
from tuner.cli import main
from tuner.review import analyse, read_study
from tuner.studies import TrialAttr


@pytest.fixture
def study_db(tmp_path):
    db = tmp_path / "v.db"
    noisy_study(f"sqlite:///{db}", "s", n=20, sigma=0.05, seed=7)
    return db


def _trials(db, name="s"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}").trials


def test_verify_records_tagged_runs_and_review_uses_them(tmp_path, noisy_script, capsys):
    db = tmp_path / "small.db"
    noisy_study(f"sqlite:///{db}", "s", n=6, sigma=0.05, seed=7)
    before = _trials(db)
    argv = ["verify", str(db), "--study", "s", str(noisy_script), "--top-k", "6"]
    code = main([*argv, "--repeats", "3", "--perturb", "0.05", "--seed", "1", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    after = _trials(db)
    added = after[len(before) :]
    assert len(added) == len(result["runs"])
    tags = [t.user_attrs[TrialAttr.VERIFY.key] for t in added]
    assert {tag["of"] for tag in tags} == {t.number for t in before}  # all six configs
    by_number = {t.number: t for t in before}
    for t, tag in zip(added, tags, strict=True):
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert {
            a.key
            for a in (TrialAttr.SEED, TrialAttr.DURATION, TrialAttr.EXIT_CODE, TrialAttr.METRICS)
        } <= set(t.user_attrs)
        assert t.user_attrs[TrialAttr.METRICS.key]["true"] == pytest.approx(quad(t.params))
        original = by_number[tag["of"]].params
        if tag["kind"] == "repeat":
            assert t.params == original
        else:
            changed = [k for k in original if t.params[k] != original[k]]
            assert changed == [tag["param"]] and tag["value"] == t.params[tag["param"]]
            # 0.05 of the unit cube is a move of 0.1 on the range [-1, 1] (less at its ends)
            move = t.params[tag["param"]] - original[tag["param"]]
            assert move == pytest.approx(2 * tag["delta"], abs=1e-5)
            assert 0 < abs(tag["delta"]) <= 0.05 + 1e-9
    deltas = [abs(tag["delta"]) for tag in tags if tag["kind"] == "perturb"]
    assert sum(d == pytest.approx(0.05) for d in deltas) >= len(deltas) - 2
    kinds = [tag["kind"] for tag in tags]
    assert kinds.count("repeat") == 18 and kinds.count("perturb") == 24  # 6 x (x-, x+, y-, y+)
    seeds = [t.user_attrs[TrialAttr.SEED.key] for t in after]
    assert len(set(seeds)) == len(seeds)  # fresh seeds, none reused from the search
    assert len(result["verified"]) == 6
    for entry in result["verified"]:
        assert entry["method"] == "verify-repeats" and entry["runs_used"] == 3
        lo, hi = entry["interval"]
        assert lo < entry["mean"] < hi
    assert len(result["robustness"]) == 6
    for rob in result["robustness"].values():
        assert [(p["name"], p["method"]) for p in rob["params"]] == [
            ("x", "verify"),
            ("y", "verify"),
        ]

    report = json.loads(_review_json(db, capsys))
    assert report["trials"] == {"total": 48, "search": 6, "verification": 42, "complete": 6}
    assert report["convergence"]["trials"] == 6  # verification runs are not search
    analysis = analyse(read_study(str(db), "s"))
    for t in before:
        est = analysis.estimate_of(analysis.index.group_of_row(t.number).key)
        assert est is not None and est.method == "verify-repeats" and est.n_used == 3
        assert est.df == 12 and est.pooled == 6  # noise sd pooled over the 6 configs


def test_review_recommends_from_verified_repeats(tmp_path, noisy_script, capsys):
    db = tmp_path / "rec.db"
    noisy_study(f"sqlite:///{db}", "s", n=5, sigma=0.05, seed=11)
    argv = ["verify", str(db), "--study", "s", str(noisy_script), "--top-k", "5"]
    assert main([*argv, "--repeats", "3", "--perturb", "0", "--seed", "2"]) == 0
    capsys.readouterr()
    added = _trials(db)[5:]
    assert len(added) == 15
    report = json.loads(_review_json(db, capsys))
    rec = report["recommended"]  # every candidate has repeats now
    assert rec["method"] == "verify-repeats" and rec["runs_used"] == 3 and rec["df"] == 10
    method = report["confidence"]["method"]
    assert "fresh-seed repeats run by mttune verify" in method and "left out" in method
    repeats = [t.value for t in added if t.user_attrs[TrialAttr.VERIFY.key]["of"] == rec["number"]]
    assert rec["mean"] == pytest.approx(sum(repeats) / 3)
    assert report["robustness"]["seeds"] == {
        "n": 3,
        "sd": pytest.approx(float(np.std(repeats, ddof=1))),
        "min": min(repeats),
        "max": max(repeats),
        "from": "verify repeats",
    }
    assert report["confidence"]["pooled_repeats"]["df"] == 10
    p_best = [c["p_best"] for c in report["confidence"]["top_k"]]
    assert sum(p_best) == pytest.approx(1.0)


def _review_json(db, capsys) -> str:
    assert main(["review", str(db), "--study", "s", "--json"]) == 0
    return capsys.readouterr().out


def _verify(db, script, *options: str) -> int:
    return main(["verify", str(db), "--study", "s", str(script), *options])


def test_verify_prints_measured_intervals(study_db, noisy_script, capsys):
    code = _verify(study_db, noisy_script, "--top-k", "1", "--repeats", "2", "--perturb", "0.1")
    assert code == 0
    captured = capsys.readouterr()
    assert "measured on fresh seeds" in captured.out
    assert "robustness of #" in captured.out and "recommended now" in captured.out
    assert "repeat 2/2" in captured.err  # one progress line per run


def test_a_failing_script_is_recorded_never_fatal(study_db, noisy_script, capsys, monkeypatch):
    monkeypatch.setenv("NOISY_FAIL", "1")
    code = _verify(study_db, noisy_script, "--top-k", "1", "--repeats", "2", "--perturb", "0")
    assert code == 3  # no verification run completed
    assert "no verification run completed" in capsys.readouterr().err
    failed = [t for t in _trials(study_db) if TrialAttr.VERIFY.key in t.user_attrs]
    assert len(failed) == 2
    for t in failed:
        assert t.state == optuna.trial.TrialState.FAIL
        assert "deliberate failure" in t.user_attrs[TrialAttr.FAIL_REASON.key]
    report = json.loads(_review_json(study_db, capsys))
    assert report["failures"]["verification"] == {"fail": 2}
    assert report["failures"]["by_state"] == {"complete": 20}


def test_verify_errors_state_the_rule(study_db, noisy_script, tmp_path, capsys):
    missing = tmp_path / "nope.db"
    argv = ["verify", str(missing), "--study", "s", str(noisy_script)]
    assert main(argv) == 1
    assert "no such study database" in capsys.readouterr().err
    assert not missing.exists()  # verify must not create an empty database
    assert main(["verify", str(study_db), "--study", "t", str(noisy_script)]) == 1
    assert "no study named 't'" in capsys.readouterr().err
    assert main(["verify", str(study_db), "--study", "s", str(noisy_script), "--repeats", "1"])
    assert "--repeats must be >= 2" in capsys.readouterr().err
    assert main(["verify", str(study_db), "--study", "s", str(tmp_path / "none.py")]) == 1
    assert "training script" in capsys.readouterr().err
    assert len(_trials(study_db)) == 20


def _narrowed_study(db) -> None:
    """The best config (x=0.3) was found before the user narrowed x to [-1, 0]."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    study = optuna.create_study(study_name="n", storage=f"sqlite:///{db}")
    rng = np.random.default_rng(0)
    for i in range(24):
        high = 1.0 if i < 12 else 0.0
        params = {"x": 0.3 if i == 5 else float(rng.uniform(-1, high)), "y": -0.1}
        dists = {"x": FloatDistribution(-1.0, high), "y": FloatDistribution(-1.0, 1.0)}
        value = quad(params) + float(rng.normal(0, 0.01))
        study.add_trial(create_trial(params=params, distributions=dists, value=value))


def test_review_and_verify_a_config_from_an_earlier_range(tmp_path, noisy_script, capsys):
    """Optuna lets a range change mid-study: the best config from the old range is reviewed
    where it is (no crash, no clipping) and its perturbed runs record a range that holds
    them."""
    db = tmp_path / "n.db"
    _narrowed_study(db)
    assert main(["review", str(db), "--study", "n", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    best_x = report["recommended"]["params"]["x"]
    assert best_x > 0.0  # outside the latest range, [-1, 0]
    (x,) = [p for p in report["robustness"]["params"] if p["name"] == "x"]
    # moved by 0.05 of the range the study used, [-1, 1]
    assert sorted(s["value"] for s in x["sides"]) == pytest.approx([best_x - 0.1, best_x + 0.1])
    argv = ["verify", str(db), "--study", "n", str(noisy_script), "--top-k", "1"]
    assert main([*argv, "--repeats", "2", "--perturb", "0.05", "--json"]) == 0
    moved = [
        t
        for t in _trials(db, "n")
        if t.user_attrs.get(TrialAttr.VERIFY.key, {}).get("param") == "x"
    ]
    assert len(moved) == 2
    for t in moved:
        assert t.distributions["x"]._contains(t.params["x"])


def test_a_neighbour_whose_run_failed_makes_the_parameter_fragile(study_db, capsys):
    from optuna.trial import create_trial

    rec = json.loads(_review_json(study_db, capsys))["recommended"]
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{study_db}")
    base = study.trials[rec["number"]]
    params = {**base.params, "x": min(base.params["x"] + 0.1, 1.0)}
    tag = {"of": rec["number"], "kind": "perturb", "param": "x", "delta": 0.05}
    study.add_trial(
        create_trial(
            state=optuna.trial.TrialState.FAIL,
            params=params,
            distributions=base.distributions,
            user_attrs={
                TrialAttr.VERIFY.key: tag,
                TrialAttr.FAIL_REASON.key: "diverged: loss is nan",
            },
        )
    )
    report = json.loads(_review_json(study_db, capsys))
    (x,) = [p for p in report["robustness"]["params"] if p["name"] == "x"]
    up = next(s for s in x["sides"] if s["sign"] == 1)
    assert x["fragile"] and up["failed_runs"] == 1 and "x" in report["robustness"]["fragile"]
    assert main(["review", str(study_db), "--study", "s"]) == 0
    assert not any(
        b["param"] == "x" and b["value"] > base.params["x"] for b in report["robustness"]["better"]
    )
    assert main(["review", str(study_db), "--study", "s"]) == 0
    assert "failed (1" in capsys.readouterr().out


def test_a_single_lucky_run_is_promising_not_recommended_over_measured_configs(
    tmp_path, noisy_script, capsys
):
    """End to end: real SQLite, the real CLI, the real script protocol."""
    db = tmp_path / "p.db"
    noisy_study(f"sqlite:///{db}", "s", n=20, sigma=0.05, seed=7)
    base = ["verify", str(db), "--study", "s", str(noisy_script), "--repeats", "3"]
    assert main([*base, "--top-k", "1", "--perturb", "0", "--seed", "1", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)["verified"][0]
    # one lucky run of a config near the optimum, as a perturbed neighbour run once
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    study = optuna.load_study(study_name="s", storage=storage)
    tag = {"of": measured["number"], "kind": "perturb", "param": "x", "delta": 0.05, "value": 0.31}
    study.add_trial(
        optuna.trial.create_trial(
            params={"x": 0.31, "y": -0.09},
            distributions=study.trials[0].distributions,
            value=-0.3,
            user_attrs={TrialAttr.VERIFY.key: tag, TrialAttr.SEED.key: 123},
        )
    )
    lucky = len(study.trials) - 1

    assert main(["review", str(db), "--study", "s", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["recommended"]["number"] == measured["number"]
    assert report["recommended"]["method"] == "verify-repeats"
    assert [d["number"] for d in report["promising"]] == [lucky]
    assert report["promising"][0]["method"] == "surrogate"
    want = f"mttune verify {db} --study s SCRIPT --trials {lucky} --perturb 0"
    assert report["verify_command"] == want == report["promising"][0]["command"]
    assert main(["review", str(db), "--study", "s", "--html", str(tmp_path / "r.html")]) == 0
    text = capsys.readouterr().out
    assert "promising, verify it" in text and f"--trials {lucky} --perturb 0" in text
    assert "Promising, verify it" in (tmp_path / "r.html").read_text()

    # the command it printed, with the real script: the lucky config is measured now
    cmd = [*base, "--trials", str(lucky), "--perturb", "0", "--seed", "2", "--json"]
    assert main(cmd) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(d["number"], d["method"], d["runs_used"]) for d in out["verified"]] == [
        (lucky, "verify-repeats", 3)
    ]
    assert out["review"]["promising"] == [] and out["review"]["verify_command"] is None
    assert abs(out["verified"][0]["mean"] - quad({"x": 0.31, "y": -0.09})) < 0.15


def test_verify_trials_names_configs_review_ranks(study_db, noisy_script, capsys):
    argv = ["verify", str(study_db), "--study", "s", str(noisy_script), "--trials", "999"]
    assert main(argv) == 1
    assert "trial #999 is not a completed config" in capsys.readouterr().err
    assert len(_trials(study_db)) == 20  # nothing ran
