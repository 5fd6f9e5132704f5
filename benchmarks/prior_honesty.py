"""Does a prior's self-reported coverage hold on tasks it has never seen?

    python -m benchmarks.prior_honesty --data ../shared/data/yahpo --label after

Meta-trains priors on YAHPO rbv2_xgboost (random configs per task, evaluated on the surrogate,
as ``benchmarks.prior_quality`` does) with several seeds, then compares the 95 % (and 68 %)
interval coverage the prior reports about itself (``info.validation``, what ``mttune prior
show`` prints) with its coverage on held-out tasks that meta-training never saw, on the same
kind of episodes (the same support sizes, query = the task's other trials).

It uses only ``meta_train`` and the episode helpers that exist before and after the task
splits, so the same script measures an older mttune: put that checkout first on the path::

    PYTHONPATH=/tmp/old-mttune python benchmarks/prior_honesty.py --data ... --label before

Appends one section per run to ``benchmarks/results/prior_honesty.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LEVELS = {"coverage_68": 1.0, "coverage_95": 1.96}


def held_out_coverage(prior, test_data, seed: int) -> dict[str, dict[str, float]]:
    """Per support size: the prior's interval coverage on the held-out tasks' episodes."""
    from tuner.prior._train import evaluate_episodes, validation_episodes

    results = evaluate_episodes(prior, validation_episodes(test_data, seed))
    out = {}
    for k in sorted({r["k"] for r in results}):
        z = np.concatenate([np.abs(r["mean"] - r["t"]) / r["std"] for r in results if r["k"] == k])
        out[f"{k}-shot"] = {name: float(np.mean(z <= q)) for name, q in LEVELS.items()}
    return out


def _mean_over_shots(per_shot: dict[str, dict], name: str, shots) -> float:
    return float(np.mean([per_shot[s][name] for s in shots]))


def run(args) -> list[dict]:
    """One row per seed: self-reported and held-out coverage, mean over the shots."""
    import torch

    import tuner
    from benchmarks.prior_quality import random_tasks
    from benchmarks.suites import load_suite
    from benchmarks.transfer import split_tasks
    from tuner.metadataset import MetaDataset
    from tuner.prior import MAMLConfig, meta_train

    torch.set_num_threads(1)
    print(f"tuner from {Path(tuner.__file__).parent}", flush=True)
    suite = load_suite(args.suite, args.data)
    test, train = split_tasks(suite.tasks, args.test_tasks, args.train_tasks, 0)
    rng = np.random.default_rng(0)
    train_data = MetaDataset.from_tasks(suite.space, random_tasks(suite, train, args.trials, rng))
    test_data = MetaDataset.from_tasks(suite.space, random_tasks(suite, test, args.trials, rng))
    rows = []
    for seed in args.seeds:
        t0 = time.monotonic()
        prior = meta_train(train_data, maml=MAMLConfig(max_steps=args.max_steps), seed=seed)
        reported = prior.info["validation"]
        held = held_out_coverage(prior, test_data, seed)
        shots = [s for s in reported if s in held]
        row = {"seed": seed, "seconds": time.monotonic() - t0, "shots": shots}
        for name in LEVELS:
            row[f"reported_{name}"] = _mean_over_shots(reported, name, shots)
            row[f"held_{name}"] = _mean_over_shots(held, name, shots)
        row["per_shot"] = {s: (reported[s]["coverage_95"], held[s]["coverage_95"]) for s in shots}
        check = prior.info.get("calibration_check")
        row["check_95"] = None if not check or not check["held_out"] else check["held_out"]
        rows.append(row)
        print(row, flush=True)
    return rows


def _table(args, rows: list[dict]) -> list[str]:
    gap = [r["reported_coverage_95"] - r["held_coverage_95"] for r in rows]
    lines = [
        f"## {args.label}: {args.suite}",
        "",
        f"{args.train_tasks} meta-training tasks x {args.trials} random trials, "
        f"max {args.max_steps} MAML steps, seeds {' '.join(map(str, args.seeds))}; "
        f"{args.test_tasks} held-out tasks never seen by meta-training. Coverage of the 95 % "
        "(68 %) intervals, mean over the support sizes 0, 1, 3, 5, 10, 20.",
        "",
        "| seed | reported 95 % | held-out 95 % | gap (points) | reported 68 % | held-out 68 % "
        "| check 95 % (not fitted on) | s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r, g in zip(rows, gap, strict=True):
        check = "-" if r["check_95"] is None else f"{r['check_95']['coverage_95']:.3f}"
        lines.append(
            f"| {r['seed']} | {r['reported_coverage_95']:.3f} | {r['held_coverage_95']:.3f} | "
            f"{100 * g:+.1f} | {r['reported_coverage_68']:.3f} | {r['held_coverage_68']:.3f} | "
            f"{check} | {r['seconds']:.0f} |"
        )
    worst = max(abs(g) for g in gap)
    lines += [
        "",
        "Per support size, 95 % reported / held-out: "
        + "; ".join(
            f"seed {r['seed']}: "
            + ", ".join(f"{s} {a:.2f}/{b:.2f}" for s, (a, b) in r["per_shot"].items())
            for r in rows
        ),
        "",
        f"Mean gap {100 * float(np.mean(gap)):+.1f} points, worst {100 * worst:.1f}; target "
        f"within 5 points: {'met' if worst <= 0.05 else 'missed'}.",
        "",
    ]
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="yahpo:rbv2_xgboost")
    p.add_argument("--data", required=True)
    p.add_argument("--label", required=True, help="the section's name (e.g. before, after)")
    p.add_argument("--train-tasks", type=int, default=60)
    p.add_argument("--test-tasks", type=int, default=30)
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "prior_honesty.md"
    )
    args = p.parse_args(argv)
    lines = _table(args, run(args))
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):  # run as a file: PYTHONPATH wins, then this repository
        sys.path.append(str(REPO))
    sys.exit(main())
