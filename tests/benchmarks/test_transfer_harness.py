"""The transfer benchmark end to end on a small tabular suite (the format anyone can fill)."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from benchmarks.first_trial import main as first_trial_main
from benchmarks.report import collect
from benchmarks.suites import TableSuite
from benchmarks.transfer import main, split_tasks
from tuner.prior import load_prior


@pytest.fixture
def table_suite(tmp_path):
    folder = tmp_path / "bowls"
    folder.mkdir()
    (folder / "space.yaml").write_text(
        "objective: {name: loss, direction: minimize}\n"
        "params:\n  a: {type: float, low: 0, high: 1}\n  k: {type: int, low: 1, high: 4}\n"
    )
    rng = np.random.default_rng(0)
    for t in range(8):
        centre = 0.3 + 0.05 * t
        with open(folder / f"task{t}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["a", "k", "loss", "seed"])
            for _ in range(60):
                a, k = rng.random(), int(rng.integers(1, 5))
                for seed in range(2):  # repeated measurements
                    w.writerow([a, k, (a - centre) ** 2 + 0.01 * k + rng.normal(0, 0.01), seed])
    return folder


def test_table_suite_reads_the_format(table_suite):
    suite = TableSuite(table_suite)
    assert suite.tasks == [f"task{t}" for t in range(8)]
    v = suite.evaluate("task0", [{"a": 0.3, "k": 1}, {"a": 0.9, "k": 4}])
    assert v[0] < v[1]
    assert suite.best_value("task0") < 0.02


def test_split_is_by_task_and_reproducible():
    tasks = [str(i) for i in range(20)]
    test, train = split_tasks(tasks, 5, 100, seed=3)
    assert len(test) == 5 and len(train) == 15 and not set(test) & set(train)
    assert split_tasks(tasks, 5, 100, seed=3) == (test, train)


def test_harness_end_to_end(table_suite, tmp_path):
    out = tmp_path / "results"
    code = main(
        [
            "--suite",
            f"table:{table_suite}",
            "--test-tasks",
            "2",
            "--train-trials",
            "12",
            "--budget",
            "6",
            "--seeds",
            "1",
            "--workers",
            "1",
            "--methods",
            "random,tpe,portfolio,prior-zero,mttune,mttune-misleading",
            "--meta-train-args",
            "--max-steps 40",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    md = (out / "results.md").read_text()
    for method in ("random", "tpe", "portfolio", "prior-zero", "mttune", "mttune-misleading"):
        assert f"| {method} |" in md
    assert "Average rank per budget" in md and "Meta-training" in md
    assert (out / "regret.png").stat().st_size > 1000

    # the trial-1 headroom analysis reads the same results folder
    assert first_trial_main(["--suite", f"table:{table_suite}", "--out", str(out)]) == 0
    text = (out / "first_trial.md").read_text()
    ranks = {
        line.split(" | ")[0].lstrip("| "): float(line.split(" | ")[1])
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| first")
    }
    assert len(ranks) == 4 and all(1.0 <= r <= 6.0 for r in ranks.values())
    hindsight = ranks["the best of the past studies' best configs, in hindsight"]
    assert hindsight <= ranks["the portfolio's first (best mean over the past studies)"]
    assert "would rank better at trial 1" in text


def test_first_trial_needs_a_benchmark_run(table_suite, tmp_path, capsys):
    assert first_trial_main(["--suite", f"table:{table_suite}", "--out", str(tmp_path)]) == 1
    assert "run benchmarks.transfer first" in capsys.readouterr().err


def test_harness_runs_the_ablation_and_the_peer(table_suite, tmp_path):
    """The MAML ablation's methods and Meta-Learn TPE on the same seeds, one report."""
    from tests.benchmarks.test_methods import PEER

    methods = ["tpe", "mttune", "mttune-fomaml", "mttune-nomaml", "mttune-nogp", "gp-only"]
    if (PEER / "sampler.py").is_file():
        methods.append("meta-learn-tpe")
    out = tmp_path / "ablation"
    argv = [
        "--suite",
        f"table:{table_suite}",
        "--test-tasks",
        "2",
        "--train-trials",
        "12",
        "--budget",
        "12",
        "--seeds",
        "1",
        "--workers",
        "1",
        "--methods",
        ",".join(methods),
        "--meta-train-args",
        "--max-steps 40",
        "--meta-learn-tpe",
        str(PEER),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    md = (out / "results.md").read_text()
    for method in methods:
        assert f"| {method} |" in md
    assert (out / "raw" / "prior-fomaml.safetensors").is_file()
    assert (out / "raw" / "prior-nomaml.safetensors").is_file()
    assert "MAML ablation" in md and "| target: default vs no MAML |" in md
    assert "Distinct configs in the first 12 trials" in md
    # the table suite repeats measurements: regret is of the mean, each run records both
    runs = [json.loads(line) for line in (out / "raw" / "runs.jsonl").read_text().splitlines()]
    assert {r["method"] for r in runs} == set(methods)
    assert all(len(r["true"]) == 12 and 1 <= r["distinct"] <= 12 for r in runs)
    assert any(r["true"] != r["values"] for r in runs)
    # the page of every suite's results leads with the ablation's target row of each
    page = collect(tmp_path, "size: tiny")
    assert page.count("| target: default vs no MAML |") == 1
    assert "| ablation | " in page and "## ablation" in page and "size: tiny" in page


def test_an_ablation_of_mttune_variants_alone_reports_each_against_no_maml(table_suite, tmp_path):
    """Only prior variants, no other method (this crashed on the ranks), Meta-SGD among them.

    Two methods on one prior (no MAML, with each first-trial strategy) meta-train it once,
    even with ``--retrain``.
    """
    methods = ["mttune", "mttune-nomaml", "mttune-nomaml-model", "mttune-metasgd"]
    out = tmp_path / "variants"
    argv = ["--suite", f"table:{table_suite}", "--test-tasks", "2", "--train-trials", "12"]
    argv += ["--budget", "6", "--seeds", "1", "--workers", "1", "--methods", ",".join(methods)]
    argv += ["--meta-train-args", "--max-steps 20", "--retrain", "--out", str(out)]
    assert main(argv) == 0
    md = (out / "results.md").read_text()
    train = next(line for line in md.splitlines() if line.startswith("Meta-training"))
    seconds = dict(re.findall(r"(mttune-nomaml(?:-model)?) ([\d.]+) s", train))
    assert len(seconds) == 2 and seconds["mttune-nomaml"] == seconds["mttune-nomaml-model"]
    assert "| target: default vs no MAML |" in md
    assert "| target: `mttune-metasgd` vs no MAML |" in md
    assert load_prior(out / "raw" / "prior-metasgd.safetensors").maml.inner_lr_shape == "element"
    assert "best average rank" not in md  # no other method to rank against
