"""Transfer benchmark: does learning from past tuning pay on held-out tasks?

It follows the user's real flow:

1. for each meta-training task, an ordinary Optuna search (TPE by default) into SQLite;
2. ``mttune meta-train`` on those studies (and, for the guard check, on the same studies with
   the objective inverted: a deliberately misleading prior);
3. every method tunes each held-out task for ``--budget`` trials, ``--seeds`` times.

Example::

    python -m benchmarks.transfer --suite yahpo:rbv2_xgboost --data ../shared/data/yahpo \
        --test-tasks 20 --budget 100 --seeds 10 \
        --methods random,tpe,gp,cmaes,ws-cmaes,portfolio,prior-zero,mttune,mttune-misleading

Outputs in ``--out`` (default ``benchmarks/results/<suite>``): ``results.md`` (tables) and
``regret.png`` (regret vs trials); raw runs, studies and priors go to ``<out>/raw`` (ignored by
git). Re-running reuses the past studies, priors and reference optima found there.

Metric: per task, normalised regret ``(f* - f_inc) / (f* - f_median)`` (for maximisation;
mirrored for minimisation), where ``f_inc`` is the true value of the run's incumbent (the
trial with the best observed value so far), ``f*`` the best true value found by a large
random search refined locally on the surrogate (or the table's best) and ``f_median`` the
median true value of random configs: 0 is optimal, 1 is as good as a typical random config.
On a deterministic suite the true value is the observed one; on a noisy suite it is the
mean over the noise (``Suite.true_values``), so a lucky evaluation does not count as found.

A suite with very few tasks (``iaml_glmnet``) is split leave-one-task-out: each task in
turn is the held-out one, with the others as its past studies and priors meta-trained on
them (``<out>/raw/fold-<task>``); a few-tasks variant (``few7``) caps the past studies.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BUDGETS = (1, 5, 10, 20, 50, 100)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    from benchmarks.methods import ALL_METHODS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", required=True, help="yahpo:<scenario> or table:<folder>")
    p.add_argument("--data", help="folder of the YAHPO scenarios (for yahpo suites)")
    p.add_argument("--test-tasks", type=int, default=20)
    p.add_argument(
        "--train-tasks",
        type=int,
        default=100,
        help="meta-training tasks at most (from the tasks not held out)",
    )
    p.add_argument("--train-trials", type=int, default=100)
    p.add_argument("--train-sampler", default="tpe", choices=("tpe", "random"))
    p.add_argument("--budget", type=int, default=100)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument(
        "--slow-seeds", type=int, default=2, help="seeds for the slow methods (GP: ~0.5 s per ask)"
    )
    p.add_argument("--methods", default=",".join(ALL_METHODS))
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2)))
    p.add_argument("--meta-train-args", default="", help="extra args for mttune meta-train")
    p.add_argument(
        "--meta-learn-tpe",
        type=Path,
        default=REPO.parent / "shared" / "peers" / "meta_learn_tpe",
        help="folder of OptunaHub's meta_learn_tpe package (loaded from there at run time)",
    )
    p.add_argument("--retrain", action="store_true", help="meta-train again")
    p.add_argument("--out", type=Path)
    return p.parse_args(argv)


def split_tasks(
    tasks: Sequence[str], n_test: int, n_train: int, seed: int
) -> tuple[list[str], list[str]]:
    """Held-out test tasks and meta-training tasks, disjoint, by task id."""
    order = np.random.default_rng(seed).permutation(sorted(tasks))
    if n_test >= len(order):
        raise ValueError(f"--test-tasks {n_test} leaves no training task of {len(order)}")
    return sorted(order[:n_test].tolist()), sorted(order[n_test : n_test + n_train].tolist())


def folds(suite, args) -> list[tuple[list[str], list[str]]]:
    """The (held-out, past) task splits: one, or leave-one-task-out on a tiny suite."""
    if suite.leave_one_out:
        tasks = sorted(suite.tasks)
        return [([t], [o for o in tasks if o != t]) for t in tasks]
    n_train = min(args.train_tasks, suite.past_tasks or args.train_tasks)
    return [split_tasks(suite.tasks, args.test_tasks, n_train, args.split_seed)]


def build_past_studies(suite, tasks: Sequence[str], db: Path, n_trials: int, sampler: str) -> None:
    """One ordinary Optuna study per meta-training task (resumable: done studies are kept).

    On a noisy suite the past studies see noisy values too, as a user's would.
    """
    space = suite.space

    def make(i: int):
        import optuna

        return (
            optuna.samplers.TPESampler(seed=i)
            if sampler == "tpe"
            else optuna.samplers.RandomSampler(seed=i)
        )

    def run(i: int, task: str, study) -> None:
        rng = np.random.default_rng([i, 7])
        for _ in range(n_trials):
            trial = study.ask()
            study.tell(trial, float(suite.evaluate(task, [space.suggest(trial)], rng)[0]))

    persist_studies(db, tasks, space.objective.direction, make, run)


def persist_studies(db: Path, tasks: Sequence[str], direction: str, make_sampler, run) -> None:
    """Run each task's study in memory (``run(i, task, study)``) and store it in SQLite.

    An in-memory study asks as fast as Optuna can; the finished trials are then added to the
    ``task-<id>`` study in ``db`` in one go. Studies already in ``db`` are kept (resumable).
    ``db`` is an SQLite file, or an Optuna journal file if it ends in ``.log`` (much faster to
    write on a busy disk).
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if db.suffix == ".log":
        storage = optuna.storages.JournalStorage(JournalFileBackend(str(db)))
    else:
        storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    have = {s.study_name for s in storage.get_all_studies()}
    for i, task in enumerate(tasks):
        if f"task-{task}" in have:
            continue
        study = optuna.create_study(direction=direction, sampler=make_sampler(i))
        run(i, task, study)
        stored = optuna.create_study(
            study_name=f"task-{task}", storage=storage, direction=direction
        )
        stored.add_trials(study.trials)
        print(f"  past study {i + 1}/{len(tasks)}: task {task}", flush=True)


def invert_studies(src: Path, dst: Path) -> None:
    """The same past trials with the objective inverted: a deliberately misleading source."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if dst.exists():
        return
    s_in = optuna.storages.RDBStorage(f"sqlite:///{src}")
    s_out = optuna.storages.RDBStorage(f"sqlite:///{dst}")
    for summary in s_in.get_all_studies():
        trials = s_in.get_all_trials(summary._study_id)
        direction = summary.directions[0].name.lower()
        study = optuna.create_study(
            study_name=summary.study_name, storage=s_out, direction=direction
        )
        study.add_trials(
            [
                optuna.trial.create_trial(
                    params=t.params, distributions=t.distributions, value=-t.value
                )
                for t in trials
                if t.value is not None
            ]
        )


def meta_train(space_file: Path | None, db: Path, out: Path, extra: str, retrain: bool) -> float:
    """``mttune meta-train`` as a user runs it; returns its wall-clock seconds.

    Without ``space_file`` it runs without ``--space`` (the space inferred from the studies).
    """
    if out.exists() and not retrain:
        meta = json.loads(out.with_suffix(".time.json").read_text())
        return float(meta["seconds"])
    cmd = [
        sys.executable,
        "-m",
        "tuner",
        "meta-train",
        *(["--space", str(space_file)] if space_file is not None else []),
        "--from",
        str(db),
        "-o",
        str(out),
        "--quiet",
        *extra.split(),
    ]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.monotonic() - t0
    out.with_suffix(".time.json").write_text(json.dumps({"seconds": seconds}))
    return seconds


def reference(suite, tasks: Sequence[str], cache: Path, seed: int = 0) -> dict[str, dict]:
    """Best true value (large random search + local refinement) and random median per task."""
    from tuner.space import Encoder

    refs = json.loads(cache.read_text()) if cache.exists() else {}
    enc = Encoder(suite.space)
    sign = 1.0 if suite.space.objective.direction == "minimize" else -1.0
    rng = np.random.default_rng(seed)
    for task in tasks:
        if task in refs:
            continue
        if hasattr(suite, "best_value"):
            x = enc.sample(2000, rng)
            v = suite.evaluate(task, enc.decode_many(x))
            refs[task] = {"best": suite.best_value(task), "median": float(np.median(v))}
            continue
        # a noisy suite's true value costs one evaluation per replication: a smaller search
        x = enc.sample(4000 if suite.noisy else 20000, rng)
        v = sign * suite.true_values(task, enc.decode_many(x))
        median = float(np.median(v))
        for scale in (0.1, 0.03, 0.01):
            top = x[np.argsort(v)[:20]]
            local = enc.canonicalize(
                np.clip(np.repeat(top, 100, 0) + rng.normal(0, scale, (2000, enc.dim)), 0, 1)
            )
            lv = sign * suite.true_values(task, enc.decode_many(local))
            x, v = np.vstack([x, local]), np.concatenate([v, lv])
        refs[task] = {"best": float(sign * v.min()), "median": float(sign * median)}
    cache.write_text(json.dumps(refs, indent=1))
    return refs


_WORKER: dict[str, Any] = {}


def _init_worker(suite_spec: str, data: str | None, ctx_path: str) -> None:
    import pickle

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from benchmarks.suites import load_suite

    _WORKER["suite"] = load_suite(suite_spec, data)
    with open(ctx_path, "rb") as f:
        _WORKER["ctx"] = pickle.load(f)  # our own file, written by this process


# the first trials whose distinct configs are counted
DISTINCT_WINDOW = 50


def _run_one(job: tuple[str, str, int, int]) -> dict[str, Any]:
    """One method on one task with one seed: observed and true values, distinct configs."""
    import optuna

    from benchmarks.methods import make_method

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    method, task, seed, budget = job
    suite, ctx = _WORKER["suite"], _WORKER["ctx"]
    space = suite.space
    sampler = make_method(method, ctx, seed, space.objective.direction, budget, space)
    study = optuna.create_study(direction=space.objective.direction, sampler=sampler)
    noise = np.random.default_rng([seed, sorted(suite.tasks).index(task), 11])
    values, configs, ask_s = [], [], []
    for _ in range(budget):
        t0 = time.perf_counter()
        trial = study.ask()
        cfg = space.suggest(trial)
        ask_s.append(time.perf_counter() - t0)
        value = float(suite.evaluate(task, [cfg], noise)[0])
        study.tell(trial, value)
        values.append(value)
        configs.append(cfg)
    true = [float(v) for v in suite.true_values(task, configs)] if suite.noisy else values
    window = {tuple(sorted(c.items())) for c in configs[:DISTINCT_WINDOW]}
    return {
        "method": method,
        "task": task,
        "seed": seed,
        "values": values,
        "true": true,
        "distinct": len(window),
        "ask_s": ask_s,
    }


def run_jobs(args, suite, ctx, methods, test_tasks, raw: Path) -> list[dict[str, Any]]:
    import pickle

    from benchmarks.methods import SLOW_METHODS

    results_file = raw / "runs.jsonl"
    done: dict[tuple, dict] = {}
    if results_file.exists():
        for line in results_file.read_text().splitlines():
            r = json.loads(line)
            if len(r["values"]) == args.budget:
                done[(r["method"], r["task"], r["seed"])] = r
    jobs = []
    for method in methods:
        n_seeds = min(args.seeds, args.slow_seeds) if method in SLOW_METHODS else args.seeds
        for task in test_tasks:
            for seed in range(n_seeds):
                if (method, task, seed) not in done:
                    jobs.append((method, task, seed, args.budget))
    ctx_path = raw / "context.pkl"
    with open(ctx_path, "wb") as f:
        pickle.dump(ctx, f)
    # slow methods first so that the pool stays busy to the end
    jobs.sort(key=lambda j: j[0] not in SLOW_METHODS)
    print(f"{len(jobs)} runs to do ({len(done)} reused)", flush=True)
    if jobs:
        mp = multiprocessing.get_context("spawn")
        with (
            mp.Pool(
                args.workers,
                initializer=_init_worker,
                initargs=(args.suite, args.data, str(ctx_path)),
            ) as pool,
            open(results_file, "a") as out,
        ):
            for i, r in enumerate(pool.imap_unordered(_run_one, jobs), 1):
                out.write(json.dumps(r) + "\n")
                out.flush()
                done[(r["method"], r["task"], r["seed"])] = r
                if i % 10 == 0 or i == len(jobs):
                    print(f"  {i}/{len(jobs)} runs", flush=True)
    return [r for (m, _, _), r in done.items() if m in methods]


def prepare_fold(args, suite, methods, test_tasks, train_tasks, raw: Path):
    """Past studies, priors and the methods' context for one split; meta-training seconds."""
    from benchmarks.methods import ABLATION_PRIORS, Context, greedy_portfolio
    from tuner.metadataset import build_metadataset
    from tuner.prior import load_prior

    raw.mkdir(parents=True, exist_ok=True)
    (raw / "split.json").write_text(json.dumps({"test": test_tasks, "train": train_tasks}))
    print(
        f"{suite.name}: {len(train_tasks)} meta-training tasks, {len(test_tasks)} held out",
        flush=True,
    )
    space_file = raw / "space.yaml"
    space_file.write_text(suite.space.to_yaml())
    db = raw / "past_studies.db"
    t0 = time.monotonic()
    build_past_studies(suite, train_tasks, db, args.train_trials, args.train_sampler)
    print(f"past studies ready ({time.monotonic() - t0:.0f}s)", flush=True)
    prior_file = raw / "prior.safetensors"
    seconds = {
        "mttune": meta_train(space_file, db, prior_file, args.meta_train_args, args.retrain)
    }
    print(f"meta-train: {seconds['mttune']:.1f}s", flush=True)
    ctx = Context(
        past=build_metadataset([str(db)], suite.space),
        prior=load_prior(prior_file),
        past_db=str(db),
        meta_learn_tpe=str(args.meta_learn_tpe),
    )
    ctx.portfolio = greedy_portfolio(ctx.past)
    trained: dict[str, float] = {}  # prior name -> seconds: methods may share a prior
    for method, (name, extra) in ABLATION_PRIORS.items():
        if method not in methods:
            continue
        if name not in trained:
            path = raw / f"prior-{name}.safetensors"
            trained[name] = meta_train(
                space_file, db, path, f"{args.meta_train_args} {extra}", args.retrain
            )
            ctx.ablation_priors[name] = load_prior(path)
            print(f"meta-train ({name}): {trained[name]:.1f}s", flush=True)
        seconds[method] = trained[name]
    if "mttune-misleading" in methods:
        inv = raw / "past_studies_inverted.db"
        invert_studies(db, inv)
        mis = raw / "prior-misleading.safetensors"
        meta_train(space_file, inv, mis, args.meta_train_args, args.retrain)
        ctx.misleading_prior = load_prior(mis)
    return ctx, seconds


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    from benchmarks.report import write_report
    from benchmarks.suites import load_suite

    suite = load_suite(args.suite, args.data)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    out = args.out or REPO / "benchmarks" / "results" / suite.name.replace(":", "-").replace(
        "/", "-"
    )
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    splits = folds(suite, args)
    runs, seconds, n_train, prior_info = [], {}, [], {}
    for test_tasks, train_tasks in splits:
        fold = raw / f"fold-{test_tasks[0]}" if len(splits) > 1 else raw
        ctx, fold_seconds = prepare_fold(args, suite, methods, test_tasks, train_tasks, fold)
        ref_tasks = suite.tasks if len(splits) > 1 else test_tasks
        refs = reference(suite, ref_tasks, raw / "reference.json")
        runs += run_jobs(args, suite, ctx, methods, test_tasks, fold)
        for k, v in fold_seconds.items():
            seconds.setdefault(k, []).append(v)
        n_train.append(len(train_tasks))
        prior_info = ctx.prior.info
    test_all = sorted({r["task"] for r in runs})
    write_report(
        out,
        suite,
        runs,
        refs,
        methods,
        budget=args.budget,
        meta_train_s={k: float(np.mean(v)) for k, v in seconds.items()},
        config=vars(args)
        | {
            "n_train": n_train[0],
            "n_test": len(test_all),
            "folds": len(splits),
        },
        prior_info=prior_info,
    )
    print(f"wrote {out / 'results.md'} and {out / 'regret.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
