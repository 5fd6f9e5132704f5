"""Trust benchmark: do review's intervals, recommendation and P(best) hold on real noise?

Two problems (:mod:`benchmarks.trust_problems`):

* ``--problem yahpo``: real searches of YAHPO ``rbv2_xgboost`` (accuracy, maximised) on
  held-out tasks, each trial at one random ``repl`` replication of the 10 the surrogate models
  (real resampling noise, sd about 0.005 accuracy); the ``heavy`` noise adds Student-t (df 3)
  noise of scale ``--heavy-scale`` on top. mttune's prior is meta-trained, as ``mttune
  meta-train`` does, on TPE studies of other tasks.
* ``--problem mlp``: the bundled PyTorch MLP (``examples/mlp_sklearn.py``, validation
  cross-entropy, minimised) on scikit-learn data sets, trained in-process, each trial with a
  fresh training seed; mttune uses the built-in ``mlp`` prior (learned on YAHPO lcbench, so
  these tasks are held out).

The *true* value of a config is the mean over 10 replications / training seeds. Samplers:
``tpe``, ``random`` and ``mttune`` (``MetaPriorSampler``). Each study is run once at the largest
``--trials`` and every shorter budget is its prefix (the samplers do not know the budget);
each is stored in SQLite and reviewed as ``mttune review --json`` reviews it
(:func:`build_review`).

Per cell (sampler x noise x trials) it reports: how often the recommended config's 95 % and
68 % intervals cover its true value, their mean width, how often the recommendation is truly
better / worse than the best observed trial (and both mean true regrets against the task's best
known true value), and the calibration of ``P(best)`` over the top-k candidates (binned).

Example::

    python -m benchmarks.trust --data ../shared/data/yahpo --trials 40 --studies 20
    python -m benchmarks.trust --problem mlp --trials 20,40 --studies 20

Raw studies, the prior, the MLP's true values and per-study rows go to
``benchmarks/results/trust/raw`` (``.../raw/mlp`` for the MLP; ignored by git; a rerun reuses
the studies, the prior and the true values there and reviews them again); the tables to
``--out`` (default ``benchmarks/results/trust.md`` / ``trust_mlp.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from benchmarks.trust_problems import MLP_DATASETS, MlpProblem, YahpoProblem

REPO = Path(__file__).resolve().parents[1]
SAMPLERS = ("tpe", "random", "mttune")
P_BINS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0 + 1e-9)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problem", choices=("yahpo", "mlp"), default="yahpo")
    p.add_argument("--data", help="folder of the YAHPO scenarios (--problem yahpo)")
    p.add_argument("--trials", default="40", help="trials per study, comma-separated budgets")
    p.add_argument("--studies", type=int, default=20, help="studies per cell")
    p.add_argument("--samplers", default=",".join(SAMPLERS))
    p.add_argument("--noises", help="yahpo: repl,heavy (default both); mlp: seed")
    p.add_argument("--datasets", default=",".join(MLP_DATASETS), help="mlp: data sets (cycled)")
    p.add_argument("--test-tasks", type=int, default=10, help="held-out tasks (cycled)")
    p.add_argument("--train-tasks", type=int, default=30, help="meta-training tasks (mttune)")
    p.add_argument("--train-trials", type=int, default=60, help="trials per past study")
    p.add_argument("--heavy-scale", type=float, default=0.01, help="scale of the t3 noise")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--meta-train-args", default="", help="extra args for mttune meta-train")
    p.add_argument("--raw", type=Path, help="default benchmarks/results/trust/raw[/mlp]")
    p.add_argument("--out", type=Path, help="default benchmarks/results/trust[_mlp].md")
    args = p.parse_args(argv)
    mlp = args.problem == "mlp"
    if not mlp and not args.data:
        p.error("--problem yahpo needs --data (the folder of the YAHPO scenarios)")
    args.budgets = sorted(int(t) for t in args.trials.split(","))
    args.noises = args.noises or ("seed" if mlp else "repl,heavy")
    results = REPO / "benchmarks/results"
    args.raw = args.raw or results / ("trust/raw/mlp" if mlp else "trust/raw")
    args.out = args.out or results / ("trust_mlp.md" if mlp else "trust.md")
    return args


def make_problem(args: argparse.Namespace) -> YahpoProblem | MlpProblem:
    """The problem ``--problem`` names."""
    if args.problem == "mlp":
        return MlpProblem(datasets=args.datasets.split(","), raw=args.raw)
    return YahpoProblem(
        data=args.data,
        test_tasks=args.test_tasks,
        train_tasks=args.train_tasks,
        heavy_scale=args.heavy_scale,
    )


def make_sampler(name: str, seed: int, prior):
    """The study's sampler."""
    import optuna

    from tuner.sampler import MetaPriorSampler

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "mttune":
        return MetaPriorSampler(prior, seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")


def run_study(space, objective: Callable[[Mapping[str, Any]], float], sampler, n_trials: int):
    """``n_trials`` of a search in memory (a non-finite value fails its trial); the trials."""
    import optuna

    study = optuna.create_study(direction=space.objective.direction, sampler=sampler)
    for _ in range(n_trials):
        trial = study.ask()
        value = objective(space.suggest(trial))
        if math.isfinite(value):
            study.tell(trial, value)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return study.trials


def store_study(trials, storage, name: str, direction: str) -> None:
    """Store ``trials`` as study ``name``."""
    import optuna

    stored = optuna.create_study(study_name=name, storage=storage, direction=direction)
    stored.add_trials(trials)


def _interval(d: Mapping[str, Any], level: float) -> tuple[float, float] | None:
    """The estimate's interval at ``level`` (normal, or Student t with its df)."""
    if d["se"] is None:
        return None
    q = 0.5 + level / 2
    half = d["se"] * (stats.t.ppf(q, d["df"]) if d["df"] else stats.norm.ppf(q))
    return d["mean"] - half, d["mean"] + half


def assess(problem, db: Path, name: str, task: str, top_k: int) -> dict:
    """Review one study as ``mttune review --json`` does and score it against the truth."""
    from tuner.review import build_review

    report = build_review(str(db), name, top_k=top_k).to_dict()
    rec, best = report["recommended"], report["best_observed"]
    top = report["confidence"]["top_k"]
    truth = problem.truth(task, [rec["params"], best["params"], *(e["params"] for e in top)])
    row: dict[str, Any] = {
        "study": name,
        "task": task,
        "method": rec["method"],
        "rec_true": float(truth[0]),
        "best_true": float(truth[1]),
        "same": rec["number"] == best["number"],
    }
    for level in (0.95, 0.68):
        iv = _interval(rec, level)
        key = f"{round(100 * level)}"
        row[f"cover{key}"] = None if iv is None else bool(iv[0] <= truth[0] <= iv[1])
        row[f"width{key}"] = None if iv is None else float(iv[1] - iv[0])
    sign = 1.0 if problem.direction == "maximize" else -1.0
    winner = int(np.argmax(sign * truth[2:]))
    row["p_best"] = [
        [e["p_best"], j == winner] for j, e in enumerate(top) if e["p_best"] is not None
    ]
    return row


@dataclasses.dataclass
class Cell:
    """The summary of one sampler x noise x trials cell.

    ``sign`` is +1 where the objective is maximised, -1 where minimised: better means a larger
    ``sign * value``, and regrets are ``sign * (optimum - value)`` (never negative).
    """

    sampler: str
    noise: str
    trials: int
    rows: list[dict]
    sign: float = 1.0

    def line(self) -> dict[str, Any]:
        """The table row."""
        r, s = self.rows, self.sign
        cov95 = [x["cover95"] for x in r if x["cover95"] is not None]
        cov68 = [x["cover68"] for x in r if x["cover68"] is not None]
        rec = np.array([x["rec_true"] for x in r])
        best = np.array([x["best_true"] for x in r])
        opt = np.array([x["optimum"] for x in r])
        gain = s * (rec - best)
        return {
            "n": len(r),
            "cover95": float(np.mean(cov95)) if cov95 else None,
            "cover68": float(np.mean(cov68)) if cov68 else None,
            "n_intervals": len(cov95),
            "width95": _mean(x["width95"] for x in r),
            "width68": _mean(x["width68"] for x in r),
            "better": float(np.mean(gain > 1e-12)),
            "worse": float(np.mean(gain < -1e-12)),
            "differ": int(np.sum(np.abs(rec - best) > 1e-12)),
            "gain": _mean((rec - best)[np.abs(rec - best) > 1e-12].tolist()),
            "regret_rec": float(np.mean(s * (opt - rec))),
            "regret_best": float(np.mean(s * (opt - best))),
        }


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def calibration(rows: Sequence[dict]) -> list[tuple[str, int, float, float]]:
    """P(best) bins: (bin, candidates, mean P(best), share truly best of the top-k)."""
    pairs = np.array([(p, w) for r in rows for p, w in r["p_best"]], dtype=float).reshape(-1, 2)
    out = []
    for lo, hi in itertools.pairwise(P_BINS):
        sel = (pairs[:, 0] >= lo) & (pairs[:, 0] < hi)
        if sel.any():
            label = f"[{lo:.1f}, {min(hi, 1.0):.1f}{']' if hi > 1 else ')'}"
            p, hit = pairs[sel].mean(0)
            out.append((label, int(sel.sum()), float(p), float(hit)))
    return out


@dataclasses.dataclass
class Store:
    """The SQLite files of one sampler x noise, one per budget, and the studies they hold."""

    dbs: dict[int, Path]
    storages: dict[int, Any]
    have: dict[int, set[str]]

    @classmethod
    def open(cls, raw: Path, sampler: str, noise: str, budgets: Sequence[int]) -> Store:
        """Open (or create) the files of ``sampler`` x ``noise``."""
        import optuna

        dbs = {n: raw / f"{sampler}-{noise}-{n}.db" for n in budgets}
        storages = {n: optuna.storages.RDBStorage(f"sqlite:///{db}") for n, db in dbs.items()}
        have = {n: {s.study_name for s in st.get_all_studies()} for n, st in storages.items()}
        return cls(dbs, storages, have)


def study_rows(
    args: argparse.Namespace, problem, store: Store, sampler: str, noise: str, i: int, prior
) -> dict[int, dict]:
    """Study ``i`` of one sampler x noise at every budget (run once unless stored), reviewed."""
    name, task = f"s{i}", problem.tasks[i % len(problem.tasks)]
    if any(name not in store.have[n] for n in args.budgets):
        objective = problem.objective(task, noise, seed=10_000 + i)
        smp = make_sampler(sampler, i, prior)
        trials = run_study(problem.space, objective, smp, max(args.budgets))
        for n in args.budgets:
            if name not in store.have[n]:
                store_study(trials[:n], store.storages[n], name, problem.space.objective.direction)
    return {n: assess(problem, store.dbs[n], name, task, args.top_k) for n in args.budgets}


def run_cells(args: argparse.Namespace, problem, prior) -> list[Cell]:
    """Every cell, study by study across the samplers (so a cut-short run is balanced); then
    each row's regret zero (the task's best known true value)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sign = 1.0 if problem.direction == "maximize" else -1.0
    pairs = [(s, noise) for s in args.samplers.split(",") for noise in args.noises.split(",")]
    stores = {p: Store.open(args.raw, *p, args.budgets) for p in pairs}
    cells = {(*p, n): Cell(*p, n, [], sign) for p in pairs for n in args.budgets}
    t0 = time.monotonic()
    for i in range(args.studies):
        for sampler, noise in pairs:
            rows = study_rows(args, problem, stores[sampler, noise], sampler, noise, i, prior)
            for n, row in rows.items():
                cells[sampler, noise, n].rows.append(row)
        print(f"  study {i + 1}/{args.studies} done ({time.monotonic() - t0:.0f}s)", flush=True)
    optima = {t: problem.optimum(t) for t in {r["task"] for c in cells.values() for r in c.rows}}
    with open(args.raw / "rows.jsonl", "w") as f:
        for c in cells.values():
            for r in c.rows:
                r["optimum"] = optima[r["task"]]
                head = {"sampler": c.sampler, "noise": c.noise, "trials": c.trials}
                f.write(json.dumps(head | r) + "\n")
    return list(cells.values())


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _signed(v: float | None) -> str:
    return "-" if v is None else f"{v:+.4f}"


def describe(args: argparse.Namespace, problem, seconds: float) -> list[str]:
    """The report's title and its paragraph on the set-up."""
    common = (
        f"{args.studies} studies per cell of {'/'.join(map(str, args.budgets))} trials (each "
        "shorter study is the prefix of the longest). Reviewed as `mttune review --json` does; "
        f"{seconds / 60:.0f} min on one core for this invocation (studies and true values "
        f"already in the raw folder are reused). {problem.units}; "
    )
    if args.problem == "mlp":
        return [
            "# Trust benchmark: the bundled PyTorch MLP with real training-seed noise",
            "",
            common + "data sets cycled over " + ", ".join(problem.tasks) + "; each trial "
            "trains `examples/mlp_sklearn.py` (20 epochs) once with a fresh seed (noise "
            "`seed`). True value: the mean over training seeds 0-9. mttune: the built-in `mlp` "
            "prior (learned on YAHPO lcbench). Regrets against the best true value of any "
            "config whose truth was computed on the data set. Generated by `python -m "
            f"benchmarks.trust --problem mlp --trials {args.trials} --studies {args.studies}`.",
        ]
    return [
        "# Trust benchmark: YAHPO rbv2_xgboost with real replication noise",
        "",
        common + f"held-out tasks cycled over {args.test_tasks}; mttune's prior meta-trained "
        f"on {args.train_tasks} other tasks ({args.train_trials} TPE trials each). Noise "
        "`repl`: each trial at one random replication of 10; `heavy`: plus Student-t (df 3) "
        f"noise of scale {args.heavy_scale:g}. True value: the mean over the 10 replications. "
        "Regrets against the task's best true value. Generated by `python -m benchmarks.trust "
        f"--trials {args.trials} --studies {args.studies}`.",
    ]


def targets(cells: Sequence[Cell]) -> list[str]:
    """The two targets, each marked met or missed, with every cell's number."""

    def label(c: Cell) -> str:
        return f"{c.sampler}/{c.noise}/{c.trials}"

    lines = [c.line() for c in cells]
    cov_met = all(s["cover95"] is not None and 0.90 <= s["cover95"] <= 0.97 for s in lines)
    rec_met = all(s["better"] >= 2 * s["worse"] for s in lines)
    return [
        f"* 95% intervals cover 90-97% in every cell: **{'met' if cov_met else 'missed'}** ("
        + ", ".join(f"{label(c)} {_pct(s['cover95'])}" for c, s in zip(cells, lines, strict=True))
        + ").",
        "* recommendation truly better at least twice as often as worse, in every cell: "
        f"**{'met' if rec_met else 'missed'}** ("
        + ", ".join(
            f"{label(c)} {_pct(s['better'])} vs {_pct(s['worse'])}"
            for c, s in zip(cells, lines, strict=True)
        )
        + ").",
    ]


def report(args: argparse.Namespace, problem, cells: Sequence[Cell], seconds: float) -> str:
    """The markdown tables, each target marked met or missed."""
    lines = [
        *describe(args, problem, seconds),
        "",
        "| sampler | noise | trials | studies | 95% covered | 68% covered | mean width 95% | "
        "rec truly better | rec truly worse | rec - best observed where they differ | "
        "regret rec | regret best observed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        s = c.line()
        lines.append(
            f"| {c.sampler} | {c.noise} | {c.trials} | {s['n']} | {_pct(s['cover95'])} | "
            f"{_pct(s['cover68'])} | {_num(s['width95'])} | {_pct(s['better'])} | "
            f"{_pct(s['worse'])} | {_signed(s['gain'])} ({s['differ']}) | "
            f"{_num(s['regret_rec'])} | {_num(s['regret_best'])} |"
        )
    lines += ["", "Targets:", "", *targets(cells)]
    rows = [r for c in cells for r in c.rows]
    lines += [
        "",
        f"`P(best)` calibration over the top-{args.top_k} candidates of every study (is the "
        "candidate truly the best of the top-k?):",
        "",
        "| P(best) bin | candidates | mean P(best) | truly best |",
        "|---|---:|---:|---:|",
    ]
    for label, n, p, hit in calibration(rows):
        lines.append(f"| {label} | {n} | {p:.2f} | {hit:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    t0 = time.monotonic()
    args.raw.mkdir(parents=True, exist_ok=True)
    problem = make_problem(args)
    prior = None
    if "mttune" in args.samplers.split(","):
        prior = problem.prior(args.raw, args.train_trials, args.meta_train_args)
    cells = run_cells(args, problem, prior)
    text = report(args, problem, cells, time.monotonic() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
