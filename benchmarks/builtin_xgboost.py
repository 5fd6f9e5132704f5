"""Built-in ``xgboost`` prior on real XGBoost training (not the surrogates it learned from).

Data sets: scikit-learn's breast_cancer, digits, wine and a generated 3-class set
(``examples/xgboost_sklearn.py``: 70/30 stratified splits), validation log-loss, the 8-parameter
space ``search_spaces/xgboost.yaml``. Methods, each ``--seeds`` times, ``--budget`` trials:

* ``builtin``: ``MetaPriorSampler("xgboost")`` (the built-in prior, nothing of the user's);
* ``tpe``, ``random``: Optuna's samplers;
* ``defaults+tpe``: XGBoost's default config as trial 1, then TPE;
* ``flaml+tpe``: FLAML's zero-shot config (``flaml.default.suggest_hyperparams``, estimator
  ``xgb_limitdepth``, computed from the training split) as trial 1, then TPE. Its exact
  config is trained; TPE is told it clipped into the space.

TPE runs ``--budget`` trials, the other methods ``--short-budget`` (default 20: the targets
are the regret at 1, 5, 10 and 20 trials and the built-in prior at 10 against TPE at 50).

Regret of a run at trial k: its best validation log-loss after k trials minus the best any run
found on that data set. Tables go to ``--out`` (default ``benchmarks/results/builtin_xgboost``),
the raw runs to ``<out>/raw/runs.jsonl`` (reused by the next run; ``--report-only``: tables
of the runs done so far)::

    python -m benchmarks.builtin_xgboost --seeds 3 --budget 50 --short-budget 20 --workers 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("wine", "breast_cancer", "synthetic3", "digits")  # cheapest first
METHODS = ("builtin", "tpe", "random", "defaults+tpe", "flaml+tpe")
BUDGETS = (1, 5, 10, 20, 50)


def _example():
    sys.path.insert(0, str(REPO / "examples"))
    import xgboost_sklearn

    return xgboost_sklearn


def flaml_config(dataset: str) -> dict[str, Any]:
    """FLAML's zero-shot XGBoost (depth-limited) config for the data set's training split."""
    from flaml.default import suggest_hyperparams

    x_tr, _, y_tr, _ = _example().split(dataset)
    params, *_ = suggest_hyperparams("classification", x_tr, y_tr, "xgb_limitdepth")
    keep = _example().DEFAULTS
    return {k: v for k, v in params.items() if k in keep}


def _clip(config: dict[str, Any], space) -> dict[str, Any]:
    out = {}
    for name, p in space.params.items():
        d = p.distribution
        v = min(max(config[name], d.low), d.high)
        out[name] = round(v) if isinstance(d.low, int) and isinstance(d.high, int) else v
    return out


def run_one(job: tuple[str, str, int, int]) -> dict[str, Any]:
    """One method on one data set with one seed: the log-loss of every trial."""
    import optuna
    import torch

    from tuner.sampler import MetaPriorSampler
    from tuner.space import load_space

    torch.set_num_threads(1)
    method, dataset, seed, budget = job
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    os.environ["XGB_DATASET"] = dataset
    os.environ["MTTUNE_SEED"] = str(seed)
    example = _example()
    space = load_space(REPO / "search_spaces" / "xgboost.yaml")
    if method == "builtin":
        sampler: optuna.samplers.BaseSampler = MetaPriorSampler("xgboost", seed=seed)
    elif method == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    values: list[float] = []
    first = {"defaults+tpe": example.DEFAULTS, "flaml+tpe": None}.get(method, ())
    if first != ():
        config = dict(first) if first is not None else flaml_config(dataset)
        value = example.train(config)["val_logloss"]
        study.add_trial(
            optuna.trial.create_trial(
                params=_clip(config, space),
                distributions={n: p.distribution for n, p in space.params.items()},
                value=value,
            )
        )
        values.append(value)
    t0 = time.monotonic()
    while len(values) < budget:
        trial = study.ask()
        value = example.train(space.suggest(trial))["val_logloss"]
        study.tell(trial, value)
        values.append(value)
    return {
        "method": method,
        "dataset": dataset,
        "seed": seed,
        "values": values,
        "seconds": time.monotonic() - t0,
    }


def table(runs: Sequence[dict[str, Any]], budgets: Sequence[int]) -> str:
    """Markdown: mean regret (and mean best log-loss) per method at each budget."""
    present = {r["dataset"] for r in runs}
    best = {d: min(min(r["values"]) for r in runs if r["dataset"] == d) for d in present}
    methods = [m for m in METHODS if any(r["method"] == m for r in runs)]
    head = "| method | " + " | ".join(f"regret @{b}" for b in budgets) + " | log-loss @1 / @10 |"
    lines = [head, "|" + "---|" * (len(budgets) + 2)]
    for m in methods:
        mine = [r for r in runs if r["method"] == m]
        cells = []
        for b in budgets:
            regret = [min(r["values"][:b]) - best[r["dataset"]] for r in mine]
            ran = all(len(r["values"]) >= b for r in mine)
            cells.append(f"{np.mean(regret):.3f}" if ran else "-")
        ll = [np.mean([min(r["values"][:b]) for r in mine]) for b in (1, 10)]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {ll[0]:.3f} / {ll[1]:.3f} |")
    return "\n".join(lines)


def per_dataset(runs: Sequence[dict[str, Any]], budget: int) -> str:
    """Markdown: mean best log-loss per data set at one budget."""
    methods = [m for m in METHODS if any(r["method"] == m for r in runs)]
    lines = [
        f"| data set (best log-loss after {budget}) | " + " | ".join(methods) + " |",
        "|" + "---|" * (len(methods) + 1),
    ]
    for d in [d for d in DATASETS if any(r["dataset"] == d for r in runs)]:
        cells = []
        for m in methods:
            v = [min(r["values"][:budget]) for r in runs if r["method"] == m and r["dataset"] == d]
            cells.append(f"{np.mean(v):.3f}" if v else "-")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", type=int, default=50, help="trials of TPE")
    p.add_argument("--short-budget", type=int, default=20, help="trials of the others")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/builtin_xgboost")
    p.add_argument("--report-only", action="store_true", help="tables of the runs done so far")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    datasets = sorted(args.datasets.split(","), key=DATASETS.index)  # the cheap ones first
    jobs = [
        (m, d, s, args.budget if m == "tpe" else min(args.short_budget, args.budget))
        for d in datasets
        for s in range(args.seeds)
        for m in args.methods.split(",")
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / "raw" / "runs.jsonl"
    raw.parent.mkdir(exist_ok=True)
    done = _read(raw)
    todo = [j for j in jobs if j[:3] not in done or len(done[j[:3]]["values"]) < j[3]]
    if not args.report_only:
        _run(todo, done, raw, args.workers)
    text = report(done, jobs, args)
    (args.out / "results.md").write_text(text)
    print(text)
    return 0


def _read(raw: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    done = {}
    if raw.is_file():
        for line in raw.read_text().splitlines():
            r = json.loads(line)
            done[(r["method"], r["dataset"], r["seed"])] = r
    return done


def _run(todo, done, raw: Path, workers: int) -> None:
    t0 = time.monotonic()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool, open(raw, "a") as f:
        for i, r in enumerate(pool.imap(run_one, todo)):
            done[(r["method"], r["dataset"], r["seed"])] = r
            f.write(json.dumps(r) + "\n")
            f.flush()
            print(
                f"[{i + 1}/{len(todo)}] {r['method']} {r['dataset']} seed {r['seed']}: best "
                f"{min(r['values']):.4f} ({r['seconds']:.0f} s; {time.monotonic() - t0:.0f} s)",
                flush=True,
            )


def report(done, jobs, args: argparse.Namespace) -> str:
    """The tables over the (data set, seed) pairs every method finished."""
    pairs = sorted({(d, s) for _, d, s, _ in jobs}, key=lambda p: (DATASETS.index(p[0]), p[1]))
    full = [
        p
        for p in pairs
        if all(
            (m, *p) in done and len(done[(m, *p)]["values"]) >= b
            for m, d, s, b in jobs
            if (d, s) == p
        )
    ]
    runs = [done[(m, *p)] for p in full for m in args.methods.split(",")]
    seeds = {d: sum(1 for q in full if q[0] == d) for d in DATASETS}
    budgets = [b for b in BUDGETS if b <= args.budget]
    missing = [f"{d} seed {s}" for d, s in pairs if (d, s) not in full]
    return (
        "# Built-in xgboost prior on real XGBoost\n\n"
        + "Seeds per data set: "
        + ", ".join(f"{d} {n}" for d, n in seeds.items() if n)
        + (f" (not run: {', '.join(missing)})" if missing else "")
        + f". TPE {args.budget} trials, the others {args.short_budget}.\n\n"
        "Mean regret in validation log-loss (lower is better; 0 = the best any run found).\n\n"
        + table(runs, budgets)
        + "\n\n"
        + per_dataset(runs, 1)
        + "\n\n"
        + per_dataset(runs, min(10, args.budget))
        + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
