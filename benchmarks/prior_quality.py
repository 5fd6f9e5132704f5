"""Prior benchmark: meta-training time, and how well the prior ranks held-out tasks.

    python -m benchmarks.prior_quality --data ../shared/data/yahpo [--suite yahpo:rbv2_xgboost]

* Meta-training time of ``mttune``'s default settings on 100 tasks x 200 trials (goal: <= 60 s
  on 2 CPU cores).
* On held-out tasks (split by task id): Kendall tau between the prior's predictions and the
  true values, zero-shot and after 5 observations (5-shot), for MAML (second and first order)
  and for the ablation without MAML (a plain multi-task regression of the same network,
  fine-tuned on the 5 observations with the same number of steps at test time).

* ``--scale N``: heterogeneous meta-training at scale, as a user runs it: ``N`` past studies x
  ``--trials`` random trials, each study on its own perturbed space (``benchmarks.heterogeneous``:
  ranges cut and shifted, parameters fixed, a log flag dropped), in one Optuna journal file;
  then ``mttune meta-train --from JOURNAL`` without ``--space`` (the space is inferred), timed
  with its peak memory (goal for 1,000 x 200: <= 120 s and <= 2 GiB on 2 CPU cores).

Writes ``benchmarks/results/prior.md`` (``--scale``: ``benchmarks/results/prior_scale.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parents[1]


def random_tasks(suite, names, n, rng):
    """``(name, configs, values)`` per task: ``n`` random configs, their surrogate values."""
    from tuner.space import Encoder

    enc = Encoder(suite.space)
    out = []
    for name in names:
        configs = enc.decode_many(enc.sample(n, rng))
        out.append((name, configs, suite.evaluate(name, configs)))
    return out


def evaluate(prior, tasks, direction: str, shots=(0, 5), repeats: int = 5, seed: int = 0):
    """Mean Kendall tau of predictions vs truth on held-out tasks, per number of shots."""
    rng = np.random.default_rng(seed)
    sign = 1.0 if direction == "minimize" else -1.0
    out = {}
    for k in shots:
        taus = []
        for _, configs, values in tasks:
            for _ in range(repeats if k else 1):
                order = rng.permutation(len(configs))
                s, q = order[:k], order[k:]
                pred = prior.predict(
                    [configs[i] for i in q],
                    [(configs[i], values[i]) for i in s],
                    direction=direction,
                )
                taus.append(stats.kendalltau(pred.mean, sign * values[q]).statistic)
        out[k] = (float(np.mean(taus)), float(np.std(taus) / np.sqrt(len(taus))))
    return out


def _heterogeneous_journal(suite, tasks, n_studies: int, n_trials: int, path: Path) -> None:
    """``n_studies`` random-search studies on perturbed spaces (task ``i % len(tasks)``)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from benchmarks.heterogeneous import history_space, with_fixed
    from tuner.space import Encoder

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    direction = suite.space.objective.direction
    for i in range(n_studies):
        space, fixed = history_space(suite.space, i)
        enc = Encoder(space)
        configs = enc.decode_many(enc.sample(n_trials, np.random.default_rng(i)))
        full = [with_fixed(suite.space, c, fixed) for c in configs]
        values = suite.evaluate(tasks[i % len(tasks)], full)
        dists = space.distributions
        study = optuna.create_study(study_name=f"study-{i}", storage=storage, direction=direction)
        study.add_trials(
            [
                optuna.trial.create_trial(
                    params=c, distributions={k: dists[k] for k in c}, value=float(v)
                )
                for c, v in zip(configs, values, strict=True)
            ]
        )


def scale(args, suite, train) -> int:
    """Time ``mttune meta-train`` on ``args.scale`` heterogeneous studies; write the table."""
    import resource
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mtp-scale-") as tmp:
        journal = Path(tmp) / "past.log"
        t0 = time.monotonic()
        _heterogeneous_journal(suite, train, args.scale, args.trials, journal)
        made = time.monotonic() - t0
        cmd = [sys.executable, "-m", "tuner", "meta-train", "--from", str(journal)]
        t0 = time.monotonic()
        subprocess.run([*cmd, "-o", str(Path(tmp) / "p.safetensors"), "--quiet"], check=True)
        seconds = time.monotonic() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    ok = seconds <= 120 and peak_gib <= 2
    lines = [
        f"# Heterogeneous meta-training at scale: {suite.name}",
        "",
        f"{args.scale} past studies x {args.trials} random trials, each on its own perturbed "
        f"space, in one journal file (made in {made:.0f} s); `mttune meta-train --from "
        "JOURNAL` without `--space`, defaults, 2 CPU cores.",
        "",
        "| studies x trials | meta-train wall (s) | peak memory (GiB) |",
        "|---|---:|---:|",
        f"| {args.scale} x {args.trials} | {seconds:.1f} | {peak_gib:.2f} |",
        "",
        f"Goal: <= 120 s and <= 2 GiB: {'met' if ok else 'missed'}.",
    ]
    out = args.out.with_name("prior_scale.md")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="yahpo:rbv2_xgboost")
    p.add_argument("--data", required=True)
    p.add_argument("--train-tasks", type=int, default=100)
    p.add_argument("--test-tasks", type=int, default=19)
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=int, help="time heterogeneous meta-training of N studies")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "prior.md")
    args = p.parse_args(argv)

    import torch

    from benchmarks.suites import load_suite
    from benchmarks.transfer import split_tasks
    from tuner.metadataset import MetaDataset
    from tuner.prior import MAMLConfig, meta_train

    suite = load_suite(args.suite, args.data)
    test, train = split_tasks(suite.tasks, args.test_tasks, args.train_tasks, args.seed)
    if args.scale:
        return scale(args, suite, train)
    rng = np.random.default_rng(args.seed)
    train_data = MetaDataset.from_tasks(suite.space, random_tasks(suite, train, args.trials, rng))
    test_tasks = random_tasks(suite, test, args.trials, rng)
    direction = suite.space.objective.direction
    variants = {
        "MAML, second order (default)": MAMLConfig(),
        "MAML, first order": dataclasses.replace(MAMLConfig(), first_order=True),
        "no MAML (multi-task regression + fine-tuning)": dataclasses.replace(
            MAMLConfig(), inner_steps=0, adapt_steps=MAMLConfig().inner_steps
        ),
    }
    rows = []
    for name, cfg in variants.items():
        t0 = time.monotonic()
        prior = meta_train(train_data, maml=cfg, seed=args.seed)
        seconds = time.monotonic() - t0
        res = evaluate(prior, test_tasks, direction)
        rows.append((name, seconds, prior.info["training"]["steps"], res))
        print(name, f"{seconds:.1f}s", res, flush=True)
    lines = [
        f"# Prior benchmark: {suite.name}",
        "",
        f"{len(train)} meta-training tasks x {args.trials} random trials; {len(test)} held-out "
        f"tasks (split by task id, seed {args.seed}); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads. Kendall tau between predicted and true values on "
        "the held-out tasks' other trials (mean ± s.e.; 5-shot: 5 random observed trials, 5 "
        "draws per task).",
        "",
        "| prior | meta-train (s) | steps | tau 0-shot | tau 5-shot |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, seconds, steps, res in rows:
        lines.append(
            f"| {name} | {seconds:.1f} | {steps} | {res[0][0]:.3f} ± {res[0][1]:.3f} | "
            f"{res[5][0]:.3f} ± {res[5][1]:.3f} |"
        )
    default_s = rows[0][1]
    lines += [
        "",
        f"Goal: meta-training 100 tasks x 200 trials in <= 60 s on 2 CPU cores: "
        f"{default_s:.1f} s ({'met' if default_s <= 60 else 'missed'}).",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
