"""Held-out tasks by role: disjoint splits, cross-fitted calibration, the check, old files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.prior.conftest import SMALL_MODEL, bowl_family
from tuner.cli import main
from tuner.metadataset import MetaDataset
from tuner.prior import MAMLConfig, load_prior, meta_train, save_prior
from tuner.prior._assess import assess, split_tasks
from tuner.prior._train import evaluate_episodes, validation_episodes

# Written by mttune before the task splits (main at 3502a16: hidden 8, 2 members, 6 bowl
# tasks, 20 steps): a file of the old layout, without 'splits' or 'calibration_check'.
OLD_FILE = Path(__file__).parents[1] / "data" / "prior-before-splits.safetensors"
TINY_MAML = MAMLConfig(max_steps=20, val_every=10, meta_batch=4)


@pytest.mark.parametrize("n", range(3, 41))
def test_splits_are_disjoint_and_cover_the_tasks(n):
    s = split_tasks(n, MAMLConfig(), seed=n)
    roles = [set(s.train), set(s.early_stopping), set(s.assessment)]
    assert set().union(*roles) == set(range(n))
    assert len(s.train) >= 2
    assert not roles[0] & roles[1] and not roles[0] & roles[2]
    if s.shared:
        assert roles[1] == roles[2]
    else:
        assert not roles[1] & roles[2]  # reported metrics never on early-stopping tasks
    folds = [set(f) for f in s.folds]
    assert set().union(*folds) == roles[2] and sum(map(len, folds)) == len(roles[2])


def test_the_split_is_reproducible_with_the_seed():
    assert split_tasks(30, MAMLConfig(), seed=4) == split_tasks(30, MAMLConfig(), seed=4)
    assert split_tasks(30, MAMLConfig(), seed=4) != split_tasks(30, MAMLConfig(), seed=5)


def test_enough_tasks_give_three_roles_and_two_folds():
    s = split_tasks(119, MAMLConfig(), seed=0)
    assert (len(s.train), len(s.early_stopping), len(s.assessment)) == (83, 18, 18)
    assert not s.shared and not s.degraded and len(s.folds) == 2
    assert split_tasks(5, MAMLConfig(), seed=0).shared is False


@pytest.mark.parametrize(("n", "held"), [(3, 1), (4, 2)])
def test_few_tasks_share_the_held_out_ones_and_say_so(n, held):
    s = split_tasks(n, MAMLConfig(), seed=0)
    assert s.shared and s.degraded
    assert len(s.assessment) == held and s.early_stopping == s.assessment
    assert f"only {n} tasks, too few to split three ways" in s.note
    assert "optimistic" in s.note
    assert len(s.folds) == min(held, 2)


def test_the_prior_records_its_splits_and_reports_on_assessment_tasks_only(bowl_prior):
    splits = bowl_prior.info["splits"]
    assert splits["scheme"] == "separate" and splits["degraded"] is False
    assert not set(splits["assessment"]) & set(splits["early_stopping"])
    assert not set(splits["assessment"]) & set(splits["train"])
    counts = splits["counts"]
    assert counts == {k: len(splits[k]) for k in ("train", "early_stopping", "assessment")}
    assert sum(counts.values()) == 24


def test_reported_metrics_and_calibration_come_from_the_assessment_tasks(bowl_prior):
    """Recomputed from the assessment tasks alone, they are exactly what the prior stores."""
    dataset = bowl_family(24, 60, seed=0)
    splits = split_tasks(24, bowl_prior.maml, seed=0)
    names = [t.name for t in dataset.tasks]
    assert [names[i] for i in splits.assessment] == bowl_prior.info["splits"]["assessment"]
    sub = MetaDataset(
        dataset.space,
        [dataset.tasks[i] for i in splits.assessment],
        dataset.report,
        dataset.features,
    )
    episodes = [
        dataclasses.replace(ep, task=splits.assessment[ep.task])
        for ep in validation_episodes(sub, 0)
    ]
    calibration, metrics, check = assess(evaluate_episodes(bowl_prior, episodes), splits.folds)
    assert calibration == bowl_prior.calibration
    assert metrics == bowl_prior.info["validation"]
    assert check == bowl_prior.info["calibration_check"]


def test_calibration_check_is_on_tasks_the_calibration_was_not_fitted_on(bowl_prior):
    check = bowl_prior.info["calibration_check"]
    assert check["nominal"] == {"coverage_68": 0.68, "coverage_95": 0.95}
    n_assess = bowl_prior.info["splits"]["counts"]["assessment"]
    assert [f["fit_tasks"] + f["check_tasks"] for f in check["folds"]] == [n_assess] * 2
    # the reported metrics are the cross-fitted predictions: the same coverage, pooled
    assert check["reported"]["coverage_95"] == pytest.approx(
        check["held_out"]["coverage_95"], abs=0.002
    )
    assert 0.5 <= check["held_out"]["coverage_95"] <= 1.0


def test_meta_train_with_few_tasks_states_it_in_the_prior_and_in_show(tmp_path, capsys):
    prior = meta_train(bowl_family(4, 30, seed=3), model=SMALL_MODEL, maml=TINY_MAML, seed=0)
    splits = prior.info["splits"]
    assert splits["scheme"] == "shared" and splits["degraded"] is True
    assert "only 4 tasks, too few to split three ways" in splits["note"]
    assert splits["early_stopping"] == splits["assessment"]
    path = save_prior(prior, tmp_path / "few.safetensors")
    assert main(["prior", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("warning: held-out tasks: only 4 tasks, too few") == 1
    assert "2 held-out tasks for early stopping and assessment" in out


def test_three_tasks_have_no_held_out_check_and_say_so(tmp_path, capsys):
    prior = meta_train(bowl_family(3, 30, seed=3), model=SMALL_MODEL, maml=TINY_MAML, seed=0)
    assert prior.info["calibration_check"]["held_out"] is None
    assert "fitted and checked on the same task" in prior.info["splits"]["note"]
    path = save_prior(prior, tmp_path / "three.safetensors")
    assert main(["prior", "show", str(path)]) == 0
    assert "not checked on other tasks (too few)" in capsys.readouterr().out


def test_prior_show_prints_the_splits_and_the_calibration_check(bowl_prior, tmp_path, capsys):
    path = save_prior(bowl_prior, tmp_path / "p.safetensors")
    assert main(["prior", "show", str(path)]) == 0
    out = capsys.readouterr().out
    counts = bowl_prior.info["splits"]["counts"]
    assert (
        f"{counts['train']} train, {counts['early_stopping']} early-stopping, "
        f"{counts['assessment']} assessment tasks" in out
    )
    assert "held-out tasks: " in out and "warning" not in out
    assert "validation on assessment studies, cross-fitted" in out
    held = bowl_prior.info["calibration_check"]["held_out"]["coverage_95"]
    assert f"95% intervals: {held:.2f} on tasks it was not fitted on" in out
    assert "nominal 0.95" in out
    assert main(["prior", "show", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["splits"]["counts"] == counts and "calibration_check" in shown


def test_a_file_from_before_the_splits_loads_and_says_it_has_no_record(capsys):
    assert OLD_FILE.stat().st_size < 50 * 1024
    prior = load_prior(OLD_FILE)
    assert "splits" not in prior.info and "calibration_check" not in prior.info
    assert prior.info["tasks"]["validation"]
    assert main(["prior", "show", str(OLD_FILE)]) == 0
    out = capsys.readouterr().out
    assert "no split record" in out and "optimistic" in out
    assert "validation on held-out studies" in out and "calibration check" not in out
