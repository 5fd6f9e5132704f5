"""Built-in priors on real training (not the surrogates they learned from).

Two families, each on the bundled example of its kind (70/30 splits of scikit-learn's data
sets and generated ones, the family's search space in ``search_spaces/``):

* ``xgboost``: ``examples/xgboost_sklearn.py`` (``XGBClassifier``), validation log-loss,
  ``search_spaces/xgboost.yaml``; data sets wine, breast_cancer, synthetic3, digits;
* ``mlp``: ``examples/mlp_sklearn.py`` (a PyTorch MLP, 20 epochs, Adam by default), validation
  cross-entropy, ``search_spaces/mlp.yaml`` (its own names, mapped onto the prior's by alias);
  data sets wine, breast_cancer, synthetic-0, digits. Each seed is also the training seed
  (weights, batch order), so the objective is noisy.

Methods, each ``--seeds`` times:

* ``builtin``: ``MetaPriorSampler(FAMILY)`` (the built-in prior, nothing of the user's);
* ``tpe``, ``random``: Optuna's samplers;
* ``defaults+tpe``: the library's default config (XGBoost's; for the MLP the example's
  ``DEFAULTS``, the usual Adam settings) as trial 1, then TPE;
* ``flaml+tpe`` (xgboost only; FLAML has no MLP): FLAML's zero-shot config
  (``flaml.default.suggest_hyperparams``, estimator ``xgb_limitdepth``, computed from the
  training split) as trial 1, then TPE. Its exact config is trained; TPE is told it clipped
  into the space.

TPE runs ``--budget`` trials, the other methods ``--short-budget`` (default 20: the targets
are the regret at 1, 5, 10 and 20 trials and the built-in prior at 10 against TPE at 50).
A trial whose training diverges (NaN) fails and counts as no result.

Regret of a run at trial k: its best validation loss after k trials minus the best any run
found on that data set. Tables go to ``--out`` (default ``benchmarks/results/builtin_FAMILY``),
the raw runs to ``<out>/raw/runs.jsonl`` (reused by the next run; ``--report-only``: tables
of the runs done so far)::

    python -m benchmarks.builtin_priors --family xgboost --seeds 10 --budget 50 --workers 2
    python -m benchmarks.builtin_priors --family mlp --seeds 10 --budget 50 --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
METHODS = ("builtin", "tpe", "random", "defaults+tpe", "flaml+tpe")
BUDGETS = (1, 5, 10, 20, 50)


@dataclasses.dataclass(frozen=True)
class Bench:
    """One family's benchmark: its example script, space, objective and data sets."""

    example: str
    dataset_env: str
    space: str
    objective: str
    datasets: tuple[str, ...]  # the cheapest first
    methods: tuple[str, ...]
    title: str


BENCHES = {
    "xgboost": Bench(
        "xgboost_sklearn",
        "XGB_DATASET",
        "xgboost.yaml",
        "val_logloss",
        ("wine", "breast_cancer", "synthetic3", "digits"),
        METHODS,
        "Built-in xgboost prior on real XGBoost",
    ),
    "mlp": Bench(
        "mlp_sklearn",
        "MLP_DATASET",
        "mlp.yaml",
        "val_loss",
        ("wine", "breast_cancer", "synthetic-0", "digits"),
        ("builtin", "tpe", "random", "defaults+tpe"),
        "Built-in mlp prior on the bundled PyTorch MLP",
    ),
}


def _example(bench: Bench):
    sys.path.insert(0, str(REPO / "examples"))
    return __import__(bench.example)


def flaml_config(dataset: str) -> dict[str, Any]:
    """FLAML's zero-shot XGBoost (depth-limited) config for the data set's training split."""
    from flaml.default import suggest_hyperparams

    example = _example(BENCHES["xgboost"])
    x_tr, _, y_tr, _ = example.split(dataset)
    params, *_ = suggest_hyperparams("classification", x_tr, y_tr, "xgb_limitdepth")
    return {k: v for k, v in params.items() if k in example.DEFAULTS}


def _clip(config: dict[str, Any], space) -> dict[str, Any]:
    out = {}
    for name, p in space.params.items():
        d = p.distribution
        if hasattr(d, "choices"):
            out[name] = config[name]
            continue
        v = min(max(config[name], d.low), d.high)
        out[name] = round(v) if isinstance(d.low, int) and isinstance(d.high, int) else v
    return out


def _sampler(method: str, family: str, seed: int):
    import optuna

    from tuner.sampler import MetaPriorSampler

    if method == "builtin":
        return MetaPriorSampler(family, seed=seed)
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _evaluate(example, bench: Bench, config: dict[str, Any]) -> float:
    value = float(example.train(config, lambda *a, **k: None)[bench.objective])
    return value if math.isfinite(value) else math.nan


def run_one(job: tuple[str, str, str, int, int]) -> dict[str, Any]:
    """One method on one data set with one seed: the validation loss of every trial."""
    import optuna
    import torch

    from tuner.space import load_space

    torch.set_num_threads(1)
    family, method, dataset, seed, budget = job
    bench = BENCHES[family]
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    os.environ[bench.dataset_env] = dataset
    os.environ["MTTUNE_SEED"] = str(seed)
    example = _example(bench)
    space = load_space(REPO / "search_spaces" / bench.space)
    study = optuna.create_study(direction="minimize", sampler=_sampler(method, family, seed))
    values: list[float] = []
    if method in ("defaults+tpe", "flaml+tpe"):
        config = dict(example.DEFAULTS) if method == "defaults+tpe" else flaml_config(dataset)
        value = _evaluate(example, bench, config)
        study.add_trial(
            optuna.trial.create_trial(
                params=_clip(config, space),
                distributions={n: p.distribution for n, p in space.params.items()},
                value=value if math.isfinite(value) else None,
                state=optuna.trial.TrialState.COMPLETE
                if math.isfinite(value)
                else optuna.trial.TrialState.FAIL,
            )
        )
        values.append(value)
    t0 = time.monotonic()
    while len(values) < budget:
        trial = study.ask()
        value = _evaluate(example, bench, space.suggest(trial))
        if math.isfinite(value):
            study.tell(trial, value)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        values.append(value)
    return {
        "method": method,
        "dataset": dataset,
        "seed": seed,
        "values": [v if math.isfinite(v) else None for v in values],
        "seconds": time.monotonic() - t0,
    }


def _best(values: Sequence[float | None], k: int) -> float:
    """Best value of the first ``k`` trials (failed ones count as no result)."""
    done = [v for v in values[:k] if v is not None]
    return min(done) if done else math.inf


def _cell(x: Sequence[float]) -> str:
    return f"{np.mean(x):.3f}" if np.all(np.isfinite(x)) else "inf"


def table(runs: Sequence[dict[str, Any]], budgets: Sequence[int], methods: Sequence[str]) -> str:
    """Markdown: mean regret (and mean best loss) per method at each budget."""
    present = {r["dataset"] for r in runs}
    best = {d: min(_best(r["values"], 10**9) for r in runs if r["dataset"] == d) for d in present}
    methods = [m for m in methods if any(r["method"] == m for r in runs)]
    head = "| method | " + " | ".join(f"regret @{b}" for b in budgets) + " | loss @1 / @10 |"
    lines = [head, "|" + "---|" * (len(budgets) + 2)]
    for m in methods:
        mine = [r for r in runs if r["method"] == m]
        cells = []
        for b in budgets:
            regret = [_best(r["values"], b) - best[r["dataset"]] for r in mine]
            ran = all(len(r["values"]) >= b for r in mine)
            cells.append(_cell(regret) if ran else "-")
        ll = [_cell([_best(r["values"], b) for r in mine]) for b in (1, 10)]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {ll[0]} / {ll[1]} |")
    return "\n".join(lines)


def per_dataset(
    runs: Sequence[dict[str, Any]], budget: int, bench: Bench, methods: Sequence[str]
) -> str:
    """Markdown: mean best loss per data set at one budget."""
    methods = [m for m in methods if any(r["method"] == m for r in runs)]
    lines = [
        f"| data set (best loss after {budget}) | " + " | ".join(methods) + " |",
        "|" + "---|" * (len(methods) + 1),
    ]
    for d in [d for d in bench.datasets if any(r["dataset"] == d for r in runs)]:
        cells = []
        for m in methods:
            v = [
                _best(r["values"], budget) for r in runs if r["method"] == m and r["dataset"] == d
            ]
            cells.append(_cell(v) if v else "-")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=sorted(BENCHES), default="xgboost")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", type=int, default=50, help="trials of TPE")
    p.add_argument("--short-budget", type=int, default=20, help="trials of the others")
    p.add_argument("--methods", help="comma-separated (default: all of the family's)")
    p.add_argument("--datasets", help="comma-separated (default: all of the family's)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, help="default benchmarks/results/builtin_FAMILY")
    p.add_argument("--report-only", action="store_true", help="tables of the runs done so far")
    args = p.parse_args(argv)
    bench = BENCHES[args.family]
    args.methods = args.methods.split(",") if args.methods else list(bench.methods)
    args.datasets = args.datasets.split(",") if args.datasets else list(bench.datasets)
    for kind, given, known in (
        ("method", args.methods, bench.methods),
        ("data set", args.datasets, bench.datasets),
    ):
        bad = [x for x in given if x not in known]
        if bad:
            p.error(f"unknown {kind} {bad[0]!r} for {args.family}: use {', '.join(known)}")
    args.out = args.out or REPO / "benchmarks" / "results" / f"builtin_{args.family}"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    bench = BENCHES[args.family]
    datasets = sorted(args.datasets, key=bench.datasets.index)  # the cheap ones first
    jobs = [
        (args.family, m, d, s, args.budget if m == "tpe" else min(args.short_budget, args.budget))
        for d in datasets
        for s in range(args.seeds)
        for m in args.methods
    ]
    raw = args.out / "raw" / "runs.jsonl"
    raw.parent.mkdir(parents=True, exist_ok=True)
    done = _read(raw)
    todo = [j for j in jobs if j[1:4] not in done or len(done[j[1:4]]["values"]) < j[4]]
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
                f"{_best(r['values'], 10**9):.4f} ({r['seconds']:.0f} s; "
                f"{time.monotonic() - t0:.0f} s)",
                flush=True,
            )


def report(done, jobs, args: argparse.Namespace) -> str:
    """The tables over the (data set, seed) pairs every method finished."""
    bench = BENCHES[args.family]
    order = bench.datasets.index
    pairs = sorted({(d, s) for _, _, d, s, _ in jobs}, key=lambda p: (order(p[0]), p[1]))
    need = {p: [(m, b) for _, m, d, s, b in jobs if (d, s) == p] for p in pairs}
    full = [
        p
        for p in pairs
        if all((m, *p) in done and len(done[(m, *p)]["values"]) >= b for m, b in need[p])
    ]
    runs = [done[(m, *p)] for p in full for m in args.methods]
    seeds = {d: sum(1 for q in full if q[0] == d) for d in bench.datasets}
    budgets = [b for b in BUDGETS if b <= args.budget]
    missing = [f"{d} seed {s}" for d, s in pairs if (d, s) not in full]
    return (
        f"# {bench.title}\n\n"
        + "Seeds per data set: "
        + ", ".join(f"{d} {n}" for d, n in seeds.items() if n)
        + (f" (not run: {', '.join(missing)})" if missing else "")
        + f". TPE {args.budget} trials, the others {args.short_budget}.\n\n"
        f"Mean regret in validation loss ({bench.objective}; lower is better; 0 = the best "
        "any run found).\n\n"
        + table(runs, budgets, args.methods)
        + "\n\n"
        + per_dataset(runs, 1, bench, args.methods)
        + "\n\n"
        + per_dataset(runs, min(10, args.budget), bench, args.methods)
        + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
