"""``mttune review`` from the command line: the study list, each output, each error."""

from __future__ import annotations

import json
import re
import sqlite3

import optuna
import pytest

from tests.conftest import REPO, SCRIPTS
from tests.review.conftest import mixed_study, noisy_study
from tuner.cli import main
from tuner.studies import TrialAttr

SPACES = REPO / "tests" / "spaces"

TOP_KEYS = {
    "format",
    "study",
    "storage",
    "direction",
    "objective",
    "trials",
    "best_observed",
    "recommended",
    "differs",
    "why",
    "promising",
    "verify_command",
    "confidence",
    "robustness",
    "importance",
    "convergence",
    "failures",
    "prior",
    "notes",
}
CANDIDATE_KEYS = {
    "rank",
    "number",
    "params",
    "runs",
    "runs_used",
    "trials",
    "observed_best",
    "mean",
    "se",
    "interval",
    "bound",
    "method",
    "p_best",
    "sd",
    "df",
}


@pytest.fixture
def two_studies(tmp_path):
    db = tmp_path / "two.db"
    noisy_study(f"sqlite:///{db}", "alpha", n=20, sigma=0.05, seed=1)
    noisy_study(f"sqlite:///{db}", "beta", n=12, sigma=0.05, seed=2, direction="maximize")
    return db


def _json_review(capsys, *args: str) -> dict:
    assert main(["review", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_list_studies_in_a_table_and_as_json(two_studies, capsys):
    assert main(["review", str(two_studies)]) == 0
    out = capsys.readouterr().out
    assert "alpha" in out and "beta" in out and "minimize" in out and "maximize" in out
    listed = _json_review(capsys, str(two_studies))["studies"]
    assert [s["study"] for s in listed] == ["alpha", "beta"]
    trials = optuna.load_study(study_name="beta", storage=f"sqlite:///{two_studies}").trials
    assert listed[1]["trials"] == 12 and listed[1]["complete"] == 12
    assert listed[1]["best_value"] == max(t.value for t in trials)


def test_one_study_in_the_terminal(two_studies, capsys):
    assert main(["review", str(two_studies), "--study", "alpha"]) == 0
    out = capsys.readouterr().out
    for section in (
        "best observed vs recommended",
        "confidence",
        "robustness",
        "importance",
        "convergence",
        "posterior interval",
    ):
        assert section in out, section


def test_text_that_looks_like_markup_is_printed_as_it_is(tmp_path, capsys):
    """A failure reason like ``[rank0]: ...`` or a study named ``f[/]x`` is text, not style."""
    db = tmp_path / "m.db"
    study = optuna.create_study(study_name="f[/]x", storage=f"sqlite:///{db}")
    for i in range(6):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        if i < 2:
            trial.set_user_attr(
                TrialAttr.FAIL_REASON.key, "[rank0]: torch.OutOfMemoryError [/3 vs 4]"
            )
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, x)
    assert main(["review", str(db)]) == 0
    assert "f[/]x" in capsys.readouterr().out
    assert main(["review", str(db), "--study", "f[/]x"]) == 0
    out = capsys.readouterr().out
    assert "study f[/]x" in out and "[rank0]: torch.OutOfMemoryError [/3 vs 4]" in out


def test_json_report_has_the_documented_structure(two_studies, capsys):
    report = _json_review(capsys, str(two_studies), "--study", "alpha")
    assert set(report) == TOP_KEYS
    assert report["format"] == "mttune-review/1"
    assert set(report["recommended"]) == CANDIDATE_KEYS | {"method_text", "level"}
    assert all(set(c) == CANDIDATE_KEYS for c in report["confidence"]["top_k"])
    assert [c["rank"] for c in report["confidence"]["top_k"]] == [1, 2, 3, 4, 5]
    rob = report["robustness"]
    assert {p["name"] for p in rob["params"]} == {"x", "y"}
    for p in rob["params"]:
        assert {s["sign"] for s in p["sides"]} <= {-1, 1} and p["method"] == "surrogate"
        assert len(p["curve"]) >= 3
    assert set(report["importance"]["values"]) == {"x", "y"}
    assert report["importance"]["values"]["x"] + report["importance"]["values"]["y"] == (
        pytest.approx(1.0)
    )
    conv = report["convergence"]
    assert conv["trials"] == 20 and len(conv["points"]) == 20
    best_so_far = [p[2] for p in conv["points"]]
    assert best_so_far == sorted(best_so_far, reverse=True)
    assert report["failures"]["by_state"] == {"complete": 20}
    assert report["prior"] is None


def test_why_is_explained_when_best_and_recommended_differ(tmp_path, capsys):
    db = tmp_path / "n.db"
    for seed in range(6):  # high noise: the luckiest draw is rarely the best config
        noisy_study(f"sqlite:///{db}", f"s{seed}", n=30, sigma=0.3, seed=seed)
    differing = 0
    for seed in range(6):
        report = _json_review(capsys, str(db), "--study", f"s{seed}")
        if report["differs"]:
            differing += 1
            best, rec = report["best_observed"], report["recommended"]
            assert best["number"] != rec["number"]
            assert f"#{best['number']}" in report["why"] and f"#{rec['number']}" in report["why"]
            assert rec["bound"] < best["estimate"]["bound"]  # minimising: lower worst case
        else:
            assert report["why"] is None
    assert differing >= 3


def test_html_page_is_self_contained(two_studies, tmp_path, capsys):
    page = tmp_path / "report.html"
    assert main(["review", str(two_studies), "--study", "beta", "--html", str(page)]) == 0
    assert f"wrote {page}" in capsys.readouterr().err
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert len(re.findall(r"plotly\.js v\d", html)) == 1  # the bundle, embedded once
    assert not re.search(r"<script[^>]+src=", html)  # nothing to fetch
    assert html.count("Plotly.newPlot") == 5
    for title in ("History", "importance", "Parallel coordinates", "Robustness", "candidates"):
        assert title in html


def test_mixed_study_conditional_params_failures_and_repeats(tmp_path, capsys):
    db = tmp_path / "mixed.db"
    mixed_study(f"sqlite:///{db}", "mixed")
    report = _json_review(capsys, str(db), "--study", "mixed")
    trials = optuna.load_study(study_name="mixed", storage=f"sqlite:///{db}").trials
    failed = [t.number for t in trials if t.state == optuna.trial.TrialState.FAIL]
    pruned = [t.number for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert failed and pruned
    fails = report["failures"]
    assert fails["by_state"] == {
        "complete": 31 - len(failed) - len(pruned),
        "fail": len(failed),
        "pruned": len(pruned),
    }
    assert fails["top_reasons"] == [
        {
            "reason": "the script exited with code 1: CUDA OOM",
            "count": len(failed),
            "trials": failed[:5],
        }
    ]
    assert "momentum" in report["importance"]["not_rated"]
    assert set(report["importance"]["values"]) == {"x", "lr", "layers", "dropout", "optimizer"}
    rob = report["robustness"]
    assert "optimizer" in rob["skipped"]
    if report["recommended"]["params"].get("optimizer") == "adam":
        assert rob["skipped"]["momentum"] == "inactive in this config"
    from tuner.review import analyse, read_study

    analysis = analyse(read_study(str(db), "mixed"))
    (twice,) = analysis.index.repeated()  # trial 0's config, enqueued again
    assert twice.numbers(analysis.data) == [0, 30]
    assert twice.params == trials[0].params


def test_review_of_a_study_made_by_mttune_run(tmp_path, capsys, monkeypatch):
    """End to end: real scripts that crash, return NaN or exit; review names the reasons."""
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "faults.db"
    code = main(
        [
            "run",
            str(SCRIPTS / "faults.py"),
            "--space",
            str(SPACES / "faults.yaml"),
            "--storage",
            str(db),
            "--n-trials",
            "14",
            "--seed",
            "3",
            "--sampler",
            "random",
            "--pruner",
            "none",
            "--progress",
            "none",
        ]
    )
    assert code == 0
    capsys.readouterr()
    report = _json_review(capsys, str(db), "--study", "faults")
    reasons = " | ".join(r["reason"] for r in report["failures"]["top_reasons"])
    assert "ZeroDivisionError" in reasons or "is nan" in reasons or "code 7" in reasons
    n_fail = report["failures"]["by_state"].get("fail", 0)
    assert sum(r["count"] for r in report["failures"]["top_reasons"]) <= n_fail
    assert report["objective"] == "value"
    assert report["recommended"]["params"]["fault"] == "none"


def test_empty_study_and_too_few_trials(tmp_path, capsys):
    db = tmp_path / "e.db"
    optuna.create_study(study_name="empty", storage=f"sqlite:///{db}")
    noisy_study(f"sqlite:///{db}", "three", n=3, sigma=0.05, seed=0)
    report = _json_review(capsys, str(db), "--study", "empty")
    assert report["recommended"] is None and report["trials"]["total"] == 0
    assert main(["review", str(db), "--study", "empty"]) == 0
    assert "nothing to recommend" in capsys.readouterr().out
    report = _json_review(capsys, str(db), "--study", "three")
    assert report["recommended"]["method"] == "single"
    assert report["recommended"]["interval"] is None
    assert "too few" in report["confidence"]["method"]
    assert not any("come from a model" in n for n in report["notes"])


def test_a_constant_objective_says_why_there_is_no_interval(tmp_path, capsys):
    db = tmp_path / "c.db"
    study = optuna.create_study(study_name="flat", storage=f"sqlite:///{db}")
    study.optimize(lambda t: 0.0 * t.suggest_float("x", 0, 1), n_trials=20)
    report = _json_review(capsys, str(db), "--study", "flat")
    assert report["recommended"]["method"] == "single"
    assert "all 20 completed trials have the same value" in report["confidence"]["method"]
    assert not any("come from a model" in n for n in report["notes"])


def _error(capsys, *argv: str) -> str:
    assert main(list(argv)) == 1
    return capsys.readouterr().err


def test_unknown_study_names_the_studies_there_are(two_studies, capsys):
    err = _error(capsys, "review", str(two_studies), "--study", "gamma")
    assert "no study named 'gamma'" in err and "alpha, beta" in err


def test_files_that_are_not_optuna_storages(tmp_path, capsys):
    text = tmp_path / "notes.db"
    text.write_text("just some notes\n")
    assert "not an SQLite database" in _error(capsys, "review", str(text))
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE t (x)")
    assert "not an Optuna storage" in _error(capsys, "review", str(other), "--study", "s")
    missing = tmp_path / "missing.db"
    assert "no such study database" in _error(capsys, "review", str(missing))
    assert not missing.exists()
    assert "is a directory" in _error(capsys, "review", str(tmp_path))


def test_multi_objective_study_is_refused_with_the_reason(tmp_path, capsys):
    db = tmp_path / "mo.db"
    study = optuna.create_study(
        study_name="mo", storage=f"sqlite:///{db}", directions=["minimize", "maximize"]
    )
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), 3)
    assert "2 objectives" in _error(capsys, "review", str(db), "--study", "mo")


def test_bad_options_state_the_rule(two_studies, capsys):
    err = _error(capsys, "review", str(two_studies), "--study", "alpha", "--top-k", "0")
    assert "--top-k must be >= 1" in err
    err = _error(capsys, "review", str(two_studies), "--study", "alpha", "--perturb", "0.9")
    assert "--perturb must be between 0 and 0.5" in err
    err = _error(capsys, "review", str(two_studies), "--study", "alpha", "--html", "/no/dir/x")
    assert "cannot write the HTML report" in err
    # with --json too: nothing on stdout for a command that fails
    argv = ["review", str(two_studies), "--study", "alpha", "--json", "--html", "/no/dir/x"]
    assert main(argv) == 1
    assert capsys.readouterr().out == ""
