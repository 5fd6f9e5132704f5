"""Heterogeneous history: does a prior learned from past studies whose spaces drifted still pay?

Real tuning histories are untidy: a range narrowed between studies, a parameter fixed in some,
a log flag forgotten. This benchmark builds two histories on the same meta-training tasks of a
YAHPO suite and compares the priors ``mttune meta-train`` makes from each:

* **same-space**: every past study runs TPE on the suite's full space (the transfer benchmark's
  setting);
* **heterogeneous**: each past study runs TPE on its own perturbed space (``perturb``: each
  numeric range cut to a random 40-100 % of its width on its own axis and shifted, one or two
  parameters fixed at a default value, the log flag dropped on one parameter); its studies are
  plain Optuna studies (no ``mttune.space`` attribute), so ``meta-train`` runs *without*
  ``--space`` and infers the space from the trials' distributions.

Held-out tasks are tuned on the full space and on a differently perturbed one (one parameter
fixed, every range cut), by TPE, the zero-shot portfolio of the same-space history, mttune with
the same-space prior and mttune with the heterogeneous prior (``MetaPriorSampler`` as shipped,
define-by-run: it maps each study's space onto the prior's features). Regret is normalised
against the full space's reference optimum, as in the transfer benchmark.

Example::

    python -m benchmarks.heterogeneous --suite yahpo:rbv2_xgboost --data ../shared/data/yahpo \
        --test-tasks 10 --seeds 10 --workers 2

Writes ``<out>/heterogeneous.md`` (default ``benchmarks/results/<suite>``); raw studies, priors
and runs go to ``<out>/raw`` and are reused by a re-run.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import BUDGETS, regret_curves
from benchmarks.transfer import (
    REPO,
    build_past_studies,
    meta_train,
    persist_studies,
    reference,
    split_tasks,
)

METHODS = ("tpe", "portfolio", "mttune-same", "mttune-het")
TARGETS = ("full", "perturbed")
LABELS = {
    "tpe": "TPE",
    "portfolio": "zero-shot portfolio (same-space history)",
    "mttune-same": "mttune, same-space history",
    "mttune-het": "mttune, heterogeneous history",
}


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", required=True, help="yahpo:<scenario>")
    p.add_argument("--data", help="folder of the YAHPO scenarios")
    p.add_argument("--test-tasks", type=int, default=10)
    p.add_argument("--train-tasks", type=int, default=100)
    p.add_argument("--train-trials", type=int, default=100)
    p.add_argument(
        "--train-sampler", default="tpe", choices=("tpe", "random"), help="of both histories"
    )
    p.add_argument("--budget", type=int, default=100)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2)))
    p.add_argument("--out", type=Path)
    return p.parse_args(argv)


# ---------------------------------------------------------------------- perturbed spaces
def _axis(spec: Mapping[str, Any]) -> tuple[Any, Any]:
    if spec.get("log"):
        return math.log, math.exp
    return (lambda v: v), (lambda v: v)


def _default(spec: Mapping[str, Any]) -> Any:
    """A parameter's fixed value: the middle of its range on its own axis."""
    fwd, inv = _axis(spec)
    mid = inv((fwd(spec["low"]) + fwd(spec["high"])) / 2)
    return round(mid) if spec["type"] == "int" else float(mid)


def _cut(spec: dict[str, Any], rng: np.random.Generator, low_frac: float) -> None:
    """Cut a numeric range to a random ``low_frac``-100 % of its width and shift it inside."""
    fwd, inv = _axis(spec)
    lo, hi = fwd(spec["low"]), fwd(spec["high"])
    width = (hi - lo) * rng.uniform(low_frac, 1.0)
    start = lo + rng.uniform() * (hi - lo - width)
    new_lo, new_hi = inv(start), inv(start + width)
    if spec["type"] == "int":
        new_lo, new_hi = math.ceil(new_lo - 1e-9), math.floor(new_hi + 1e-9)
        if new_hi <= new_lo:
            new_lo, new_hi = (new_lo - 1, new_lo) if new_lo > spec["low"] else (new_lo, new_lo + 1)
    spec["low"], spec["high"] = max(new_lo, spec["low"]), min(new_hi, spec["high"])


def perturb(space, rng: np.random.Generator, *, n_fixed: tuple[int, int], drop_log: bool):
    """A perturbed copy of ``space`` and the values of the parameters it fixes.

    Returns:
        ``(SearchSpace, fixed)``: ``fixed`` maps each removed parameter to its default value,
        which the objective receives whenever the parameter's condition holds.
    """
    from tuner.space import SearchSpace

    data = space.to_dict()
    params: dict[str, dict[str, Any]] = data["params"]
    parents = {p["condition"]["param"] for p in params.values() if "condition" in p}
    numeric = [n for n, p in params.items() if p["type"] != "categorical"]
    fixable = [n for n in numeric if n not in parents]
    k = int(rng.integers(n_fixed[0], n_fixed[1] + 1))
    fixed = {str(n): _default(params[n]) for n in rng.choice(fixable, size=k, replace=False)}
    for name in fixed:
        del params[name]
    for name in numeric:
        if name in params:
            _cut(params[name], rng, 0.4)
    logs = [n for n, p in params.items() if p.get("log")]
    if drop_log and logs:
        params[str(rng.choice(logs))].pop("log")
    return SearchSpace.from_dict(data, source="<perturbed>"), fixed


def with_fixed(space, config: dict[str, Any], fixed: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` plus the fixed values whose condition (in the full ``space``) holds."""
    full = dict(config)
    for name, value in fixed.items():
        cond = space.params[name].condition
        if cond is None or cond.is_active(full):
            full[name] = value
    return full


def history_space(space, i: int):
    return perturb(space, np.random.default_rng(1000 + i), n_fixed=(1, 2), drop_log=True)


def target_space(space, task_index: int, target: str):
    if target == "full":
        return space, {}
    rng = np.random.default_rng(50_000 + task_index)
    return perturb(space, rng, n_fixed=(1, 1), drop_log=False)


# ---------------------------------------------------------------------- the two histories
def build_heterogeneous_studies(
    suite, tasks: Sequence[str], db: Path, n_trials: int, sampler: str
) -> None:
    """One plain Optuna study per task, each on its own perturbed space (resumable)."""
    import optuna

    def run(i: int, task: str, study) -> None:
        space, fixed = history_space(suite.space, i)
        for _ in range(n_trials):
            trial = study.ask()
            cfg = with_fixed(suite.space, space.suggest(trial), fixed)
            study.tell(trial, float(suite.evaluate(task, [cfg])[0]))

    direction = suite.space.objective.direction
    kind = optuna.samplers.TPESampler if sampler == "tpe" else optuna.samplers.RandomSampler
    persist_studies(db, tasks, direction, lambda i: kind(seed=i), run)


# ---------------------------------------------------------------------- the runs
_WORKER: dict[str, Any] = {}


def _init_worker(suite_spec: str, data: str | None, raw: str, tasks: list[str]) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from benchmarks.methods import greedy_portfolio
    from benchmarks.suites import load_suite
    from tuner.metadataset import build_metadataset
    from tuner.prior import load_prior

    suite = load_suite(suite_spec, data)
    past = build_metadataset([str(Path(raw) / "past_studies.log")], suite.space)
    _WORKER.update(
        suite=suite,
        tasks=tasks,
        portfolio=greedy_portfolio(past),
        priors={
            "mttune-same": load_prior(Path(raw) / "prior.safetensors"),
            "mttune-het": load_prior(Path(raw) / "prior-heterogeneous.safetensors"),
        },
    )


def _sampler(method: str, seed: int):
    import optuna

    from benchmarks.methods import FixedSequenceSampler
    from tuner.sampler import MetaPriorSampler

    if method == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if method == "portfolio":
        return FixedSequenceSampler(_WORKER["portfolio"], optuna.samplers.RandomSampler(seed=seed))
    return MetaPriorSampler(_WORKER["priors"][method], seed=seed)


def _run_one(job: tuple[str, str, str, int, int]) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    method, target, task, seed, budget = job
    suite = _WORKER["suite"]
    space, fixed = target_space(suite.space, _WORKER["tasks"].index(task), target)
    study = optuna.create_study(
        direction=suite.space.objective.direction, sampler=_sampler(method, seed)
    )
    values = []
    for _ in range(budget):
        trial = study.ask()
        cfg = with_fixed(suite.space, space.suggest(trial), fixed)
        value = float(suite.evaluate(task, [cfg])[0])
        study.tell(trial, value)
        values.append(value)
    return {"method": method, "target": target, "task": task, "seed": seed, "values": values}


def run_jobs(args, tasks: list[str], raw: Path) -> list[dict[str, Any]]:
    results = raw / "heterogeneous_runs.jsonl"
    done = {}
    if results.exists():
        for line in results.read_text().splitlines():
            r = json.loads(line)
            done[(r["method"], r["target"], r["task"], r["seed"])] = r
    jobs = [
        (m, t, task, s, args.budget)
        for m in METHODS
        for t in TARGETS
        for task in tasks
        for s in range(args.seeds)
        if (m, t, task, s) not in done
    ]
    print(f"{len(jobs)} runs to do ({len(done)} reused)", flush=True)
    if jobs:
        mp = multiprocessing.get_context("spawn")
        init = (args.suite, args.data, str(raw), tasks)
        with mp.Pool(args.workers, _init_worker, init) as pool, open(results, "a") as out:
            for i, r in enumerate(pool.imap_unordered(_run_one, jobs), 1):
                out.write(json.dumps(r) + "\n")
                out.flush()
                done[(r["method"], r["target"], r["task"], r["seed"])] = r
                if i % 20 == 0 or i == len(jobs):
                    print(f"  {i}/{len(jobs)} runs", flush=True)
    return list(done.values())


# ---------------------------------------------------------------------- the report
def _table(curves: dict[str, np.ndarray], budgets: Sequence[int]) -> list[str]:
    head = "| method | " + " | ".join(f"@{b}" for b in budgets) + " |"
    lines = [head, "|---|" + "---:|" * len(budgets)]
    for m in METHODS:
        c = curves.get(m)
        if c is None:
            continue
        cells = []
        for b in budgets:
            col = c[:, b - 1]
            cells.append(f"{col.mean():.3f} ± {col.std(ddof=1) / np.sqrt(len(col)):.3f}")
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    return lines


def _checks(by_target: dict[str, dict[str, np.ndarray]], budget: int) -> list[str]:
    lines = ["| target | full space | perturbed space |", "|---|---|---|"]
    rows = {
        "heterogeneous within 10 % of same-space @10": ("mttune-het", "mttune-same", 10, 1.10),
        "heterogeneous within 10 % of same-space @50": ("mttune-het", "mttune-same", 50, 1.10),
        "mttune (heterogeneous) @10 <= TPE @100": ("mttune-het", "tpe", (10, 100), 1.0),
    }
    for label, (a, b, at, factor) in rows.items():
        cells = []
        for target in TARGETS:
            ca, cb = by_target[target][a], by_target[target][b]
            ia, ib = at if isinstance(at, tuple) else (at, at)
            if max(ia, ib) > budget:
                cells.append("- (budget too small)")
                continue
            va, vb = ca[:, ia - 1].mean(), cb[:, ib - 1].mean()
            verdict = "met" if va <= factor * vb + 1e-12 else "**missed**"
            cells.append(f"{verdict}: {va:.3f} vs {vb:.3f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def write_report(path: Path, suite, runs, refs, info: dict[str, Any]) -> None:
    direction = suite.space.objective.direction
    budgets = [b for b in BUDGETS if b <= info["budget"]]
    by_target = {
        t: regret_curves([r for r in runs if r["target"] == t], refs, direction) for t in TARGETS
    }
    lines = [f"# Heterogeneous history: {suite.name}", ""]
    lines += [
        f"{info['n_train']} meta-training tasks ({info['train_trials']} {info['train_sampler']} "
        "trials each), "
        f"{info['n_test']} held out, {info['seeds']} seeds; meta-train "
        f"{info['same_s']:.0f} s (same space, with --space) and {info['het_s']:.0f} s "
        "(heterogeneous, space inferred). Normalised regret, mean ± standard error.",
        "",
    ]
    for t in TARGETS:
        lines += [f"## Held-out tasks tuned on the {t} space", ""]
        lines += [*_table(by_target[t], budgets), ""]
    lines += ["## Targets", "", *_checks(by_target, info["budget"]), ""]
    path.write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    from benchmarks.suites import load_suite

    suite = load_suite(args.suite, args.data)
    out = args.out or REPO / "benchmarks" / "results" / suite.name.replace(":", "-")
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    test, train = split_tasks(suite.tasks, args.test_tasks, args.train_tasks, args.split_seed)
    (raw / "space.yaml").write_text(suite.space.to_yaml())
    t0 = time.monotonic()
    build_past_studies(
        suite, train, raw / "past_studies.log", args.train_trials, args.train_sampler
    )
    het_db = raw / "past_studies_heterogeneous.log"
    build_heterogeneous_studies(suite, train, het_db, args.train_trials, args.train_sampler)
    print(f"past studies ready ({time.monotonic() - t0:.0f}s)", flush=True)
    same_s = meta_train(
        raw / "space.yaml", raw / "past_studies.log", raw / "prior.safetensors", "", False
    )
    het_s = meta_train(None, het_db, raw / "prior-heterogeneous.safetensors", "", False)
    print(f"meta-train: {same_s:.0f}s same space, {het_s:.0f}s heterogeneous", flush=True)
    refs = reference(suite, test, raw / "reference.json")
    runs = run_jobs(args, test, raw)
    info = vars(args) | {"n_train": len(train), "n_test": len(test)}
    write_report(
        out / "heterogeneous.md", suite, runs, refs, info | {"same_s": same_s, "het_s": het_s}
    )
    print(f"wrote {out / 'heterogeneous.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
