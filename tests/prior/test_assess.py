"""Held-out tasks by role: disjoint splits, cross-fitted calibration, the check, old files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from tests.prior.conftest import SMALL_MODEL, bowl_family
from tuner.cli import main
from tuner.prior import MAMLConfig, load_prior, meta_train, save_prior
from tuner.prior._assess import cross_fit, fit_calibration, split_tasks
from tuner.prior._train import evaluate_episodes, validation_episodes

# Written by mttune before the task splits (main at 3502a16: hidden 8, 2 members, 6 bowl
# tasks, 20 steps): a file of the old layout, without 'splits' or 'calibration_check'.
OLD_FILE = Path(__file__).parents[1] / "data" / "prior-before-splits.safetensors"
TINY_MAML = MAMLConfig(max_steps=20, val_every=10, meta_batch=4)


@pytest.mark.parametrize("n", range(3, 41))
def test_splits_are_disjoint_and_cover_the_tasks(n):
    s = split_tasks(n, MAMLConfig(), seed=n)
    assert set(s.train) | set(s.held_out) == set(range(n))
    assert not set(s.train) & set(s.held_out) and len(s.train) >= 2
    folds = [set(f) for f in s.folds]
    assert set().union(*folds) == set(s.held_out) and sum(map(len, folds)) == len(s.held_out)
    assert s.degraded == (len(s.held_out) == 1)


def test_the_split_is_reproducible_with_the_seed():
    assert split_tasks(30, MAMLConfig(), seed=4) == split_tasks(30, MAMLConfig(), seed=4)
    assert split_tasks(30, MAMLConfig(), seed=4) != split_tasks(30, MAMLConfig(), seed=5)


def test_the_held_out_tasks_are_those_held_out_before_the_cross_fit():
    """A prior trains on the same tasks as before: the first 20 % of the seeded permutation."""
    order = np.random.default_rng(7).permutation(24)
    s = split_tasks(24, MAMLConfig(), seed=7)
    assert s.held_out == tuple(sorted(int(i) for i in order[:5]))
    assert s.train == tuple(sorted(int(i) for i in order[5:]))


def test_enough_tasks_give_two_folds():
    s = split_tasks(119, MAMLConfig(), seed=0)
    assert (len(s.train), len(s.held_out)) == (95, 24)
    assert [len(f) for f in s.folds] == [12, 12] and not s.degraded
    assert not split_tasks(8, MAMLConfig(), seed=0).degraded  # 2 held out: 1 and 1


@pytest.mark.parametrize("n", [3, 4, 7])
def test_a_single_held_out_task_cannot_cross_fit_and_says_so(n):
    s = split_tasks(n, MAMLConfig(), seed=0)
    assert s.degraded and len(s.held_out) == 1 and len(s.folds) == 1
    assert f"only {n} tasks" in s.note and "optimistic" in s.note


def test_the_prior_records_its_splits(bowl_prior):
    splits = bowl_prior.info["splits"]
    assert splits["scheme"] == "cross-fitted" and splits["degraded"] is False
    assert not set(splits["held_out"]) & set(splits["train"])
    assert splits["counts"] == {"train": 19, "held_out": 5}
    assert sorted(n for f in splits["folds"] for n in f) == sorted(splits["held_out"])


def test_reported_metrics_are_cross_fitted_and_the_calibration_is_in_sample(bowl_prior):
    """Recomputed by hand: each half measured with the step and calibration of the other."""
    dataset = bowl_family(24, 60, seed=0)
    splits = split_tasks(24, bowl_prior.maml, seed=0)
    sub = dataset.subset(splits.held_out)
    episodes = [
        dataclasses.replace(ep, task=splits.held_out[ep.task])
        for ep in validation_episodes(sub, 0)
    ]
    shipped = evaluate_episodes(bowl_prior, episodes)
    assert fit_calibration(shipped) == bowl_prior.calibration
    # every fold picked its own best step, and the metrics differ from the in-sample ones
    steps = bowl_prior.info["training"]["fold_best_steps"]
    assert len(steps) == 2 and all(s >= bowl_prior.maml.val_every for s in steps)
    check = bowl_prior.info["calibration_check"]
    assert check["reported"]["coverage_95"] == pytest.approx(
        check["held_out"]["coverage_95"], abs=0.002
    )
    assert [f["fit_tasks"] + f["check_tasks"] for f in check["folds"]] == [5, 5]
    in_sample = check["in_sample"]
    assert (in_sample["coverage_68"], in_sample["coverage_95"]) != (
        check["held_out"]["coverage_68"],
        check["held_out"]["coverage_95"],
    )


def test_the_fold_a_prior_is_measured_with_is_the_other_one():
    """cross_fit evaluates fold i with the prior and calibration of fold 1 - i."""
    calls = []

    def evaluate(j, tasks):
        calls.append((j, tuple(tasks)))
        rng = np.random.default_rng(j * 10 + len(calls))
        t = rng.normal(size=20)
        return [
            {
                "k": 1,
                "task": tasks[0],
                "t": t,
                "mean": t + 0.1,
                "var_ens": np.ones(20),
                "std": np.ones(20),
            }
        ]

    shipped = evaluate(0, (0,)) + evaluate(1, (1,))
    calls.clear()
    _, metrics, check = cross_fit(evaluate, shipped, ((0,), (1,)))
    assert calls == [(1, (1,)), (1, (0,)), (0, (0,)), (0, (1,))]
    assert check["held_out"] is not None and len(check["folds"]) == 2
    assert metrics["1-shot"]["episodes"] == 2


@pytest.mark.parametrize("n", [3, 4])
def test_meta_train_with_few_tasks_states_it_in_the_prior_and_in_show(n, tmp_path, capsys):
    prior = meta_train(bowl_family(n, 30, seed=3), model=SMALL_MODEL, maml=TINY_MAML, seed=0)
    splits = prior.info["splits"]
    assert splits["scheme"] == "single" and splits["degraded"] is True
    assert f"only {n} tasks" in splits["note"] and len(splits["held_out"]) == 1
    assert prior.info["calibration_check"]["held_out"] is None
    path = save_prior(prior, tmp_path / "few.safetensors")
    assert main(["prior", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count(f"warning: held-out tasks: only {n} tasks") == 1
    assert f"{n - 1} train, 1 held-out tasks (no cross-fit)" in out
    assert "not checked on other tasks (too few)" in out


def test_prior_show_prints_the_splits_and_the_calibration_check(bowl_prior, tmp_path, capsys):
    path = save_prior(bowl_prior, tmp_path / "p.safetensors")
    assert main(["prior", "show", str(path)]) == 0
    out = capsys.readouterr().out
    counts = bowl_prior.info["splits"]["counts"]
    folds = "/".join(str(len(f)) for f in bowl_prior.info["splits"]["folds"])
    assert (
        f"{counts['train']} train, {counts['held_out']} held-out tasks (cross-fitted {folds})"
        in out
    )
    assert "held-out tasks: " in out and "warning" not in out
    assert "validation on held-out studies, cross-fitted" in out
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
