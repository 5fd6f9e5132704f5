"""Trust benchmark: do review's intervals, recommendation and P(best) hold on real noise?

Studies are real searches of YAHPO ``rbv2_xgboost`` (accuracy, maximised) on held-out tasks,
each trial evaluated at one random ``repl`` replication of the 10 the surrogate models (real
resampling noise, sd about 0.005 accuracy); the *true* value of a config is the mean over the
10 replications. The ``heavy`` noise adds Student-t (df 3) noise of scale ``--heavy-scale`` on
top. Samplers: ``tpe``, ``random`` and ``mttune`` (``MetaPriorSampler`` with a prior
meta-trained, as ``mttune meta-train`` does, on TPE studies of other tasks). Each study is
stored in SQLite and reviewed as ``mttune review --json`` reviews it (:func:`build_review`).

Per cell (sampler x noise) it reports: how often the recommended config's 95 % and 68 %
intervals cover its true value, their mean width, how often the recommendation is truly
better / worse than the best observed trial (and both mean true regrets against the task's
best, found by a large search of true values), and the calibration of ``P(best)`` over the
top-k candidates (binned).

Example::

    python -m benchmarks.trust --data ../shared/data/yahpo --trials 40 --studies 20

Raw studies, the prior and per-study rows go to ``benchmarks/results/trust/raw`` (ignored by
git; a rerun reuses the studies and the prior there and reviews them again); the tables to
``--out`` (default ``benchmarks/results/trust.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
SAMPLERS = ("tpe", "random", "mttune")
NOISES = ("repl", "heavy")
REPLS = tuple(range(1, 11))
P_BINS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0 + 1e-9)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder of the YAHPO scenarios")
    p.add_argument("--trials", type=int, default=40, help="trials per study")
    p.add_argument("--studies", type=int, default=20, help="studies per cell")
    p.add_argument("--samplers", default=",".join(SAMPLERS))
    p.add_argument("--noises", default=",".join(NOISES))
    p.add_argument("--test-tasks", type=int, default=10, help="held-out tasks (cycled)")
    p.add_argument("--train-tasks", type=int, default=30, help="meta-training tasks (mttune)")
    p.add_argument("--train-trials", type=int, default=60, help="trials per past study")
    p.add_argument("--heavy-scale", type=float, default=0.01, help="scale of the t3 noise")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--meta-train-args", default="", help="extra args for mttune meta-train")
    p.add_argument("--raw", type=Path, default=REPO / "benchmarks/results/trust/raw")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/trust.md")
    return p.parse_args(argv)


class NoisyTask:
    """One task's noisy objective (a random replication, plus optional t3 noise) and truth."""

    def __init__(self, suite, task: str, noise: str, heavy_scale: float, seed: int) -> None:
        self.suite, self.task, self.noise = suite, task, noise
        self.heavy_scale = heavy_scale
        self.rng = np.random.default_rng(seed)

    def __call__(self, config: Mapping[str, Any]) -> float:
        repl = int(self.rng.choice(REPLS))
        value = float(self.suite.evaluate(self.task, [config], fidelity=[{"repl": repl}])[0])
        if self.noise == "heavy":
            value += self.heavy_scale * float(self.rng.standard_t(3))
        return value

    def truth(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Mean over the 10 replications of each config."""
        return true_values(self.suite, self.task, configs)


def true_values(suite, task: str, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The mean over the 10 replications of each config (the noise-free value)."""
    configs = list(configs)
    many = [c for c in configs for _ in REPLS]
    fid = [{"repl": r} for _ in configs for r in REPLS]
    return suite.evaluate(task, many, fidelity=fid).reshape(len(configs), len(REPLS)).mean(1)


def task_optimum(suite, task: str, seed: int = 0, n: int = 3000) -> float:
    """The best true value a random search refined locally finds (the regrets' zero)."""
    from tuner.space import Encoder

    enc = Encoder(suite.space)
    rng = np.random.default_rng(seed)
    x = enc.sample(n, rng)
    v = true_values(suite, task, enc.decode_many(x))
    for scale in (0.1, 0.03, 0.01):
        top = x[np.argsort(-v)[:10]]
        local = enc.canonicalize(
            np.clip(np.repeat(top, 30, 0) + rng.normal(0, scale, (300, enc.dim)), 0, 1)
        )
        lv = true_values(suite, task, enc.decode_many(local))
        x, v = np.vstack([x, local]), np.concatenate([v, lv])
    return float(v.max())


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


def run_study(space, objective: NoisyTask, sampler, n_trials: int, storage, name: str) -> None:
    """``n_trials`` of a search in memory, then stored as study ``name``."""
    import optuna

    study = optuna.create_study(direction=space.objective.direction, sampler=sampler)
    for _ in range(n_trials):
        trial = study.ask()
        study.tell(trial, objective(space.suggest(trial)))
    stored = optuna.create_study(
        study_name=name, storage=storage, direction=space.objective.direction
    )
    stored.add_trials(study.trials)


def _interval(d: Mapping[str, Any], level: float) -> tuple[float, float] | None:
    """The estimate's interval at ``level`` (normal, or Student t with its df)."""
    if d["se"] is None:
        return None
    q = 0.5 + level / 2
    half = d["se"] * (stats.t.ppf(q, d["df"]) if d["df"] else stats.norm.ppf(q))
    return d["mean"] - half, d["mean"] + half


def assess(db: Path, name: str, objective: NoisyTask, optimum: float, top_k: int) -> dict:
    """Review one study as ``mttune review --json`` does and score it against the truth."""
    from tuner.review import build_review

    report = build_review(str(db), name, top_k=top_k).to_dict()
    rec, best = report["recommended"], report["best_observed"]
    top = report["confidence"]["top_k"]
    truth = objective.truth([rec["params"], best["params"], *(e["params"] for e in top)])
    row: dict[str, Any] = {
        "study": name,
        "task": objective.task,
        "method": rec["method"],
        "rec_true": float(truth[0]),
        "best_true": float(truth[1]),
        "optimum": optimum,
        "same": rec["number"] == best["number"],
    }
    for level in (0.95, 0.68):
        iv = _interval(rec, level)
        key = f"{round(100 * level)}"
        row[f"cover{key}"] = None if iv is None else bool(iv[0] <= truth[0] <= iv[1])
        row[f"width{key}"] = None if iv is None else float(iv[1] - iv[0])
    top_true = truth[2:]
    winner = int(np.argmax(top_true))  # accuracy: higher is better
    row["p_best"] = [
        [e["p_best"], j == winner] for j, e in enumerate(top) if e["p_best"] is not None
    ]
    return row


@dataclasses.dataclass
class Cell:
    """The summary of one sampler x noise cell."""

    sampler: str
    noise: str
    rows: list[dict]

    def line(self) -> dict[str, Any]:
        """The table row."""
        r = self.rows
        cov95 = [x["cover95"] for x in r if x["cover95"] is not None]
        cov68 = [x["cover68"] for x in r if x["cover68"] is not None]
        rec = np.array([x["rec_true"] for x in r])
        best = np.array([x["best_true"] for x in r])
        opt = np.array([x["optimum"] for x in r])
        return {
            "n": len(r),
            "cover95": float(np.mean(cov95)) if cov95 else None,
            "cover68": float(np.mean(cov68)) if cov68 else None,
            "n_intervals": len(cov95),
            "width95": _mean(x["width95"] for x in r),
            "width68": _mean(x["width68"] for x in r),
            "better": float(np.mean(rec > best + 1e-12)),
            "worse": float(np.mean(rec < best - 1e-12)),
            "differ": int(np.sum(np.abs(rec - best) > 1e-12)),
            "gain": _mean((rec - best)[np.abs(rec - best) > 1e-12].tolist()),
            "regret_rec": float(np.mean(opt - rec)),
            "regret_best": float(np.mean(opt - best)),
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


def build_prior(args: argparse.Namespace, suite, train: Sequence[str]) -> Path:
    """Past TPE studies of the training tasks and ``mttune meta-train`` on them (cached)."""
    from benchmarks.transfer import build_past_studies, meta_train

    space_file = args.raw / "space.yaml"
    space_file.write_text(suite.space.to_yaml())
    db = args.raw / "past_studies.db"
    build_past_studies(suite, train, db, args.train_trials, "tpe")
    prior = args.raw / "prior.safetensors"
    seconds = meta_train(space_file, db, prior, args.meta_train_args, retrain=False)
    print(f"prior: {len(train)} past studies, meta-train {seconds:.0f}s", flush=True)
    return prior


def run_cells(args: argparse.Namespace, suite, test: Sequence[str], prior) -> list[Cell]:
    """Every study of every cell, reviewed (studies already in ``raw`` are reused)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    optima = {t: task_optimum(suite, t) for t in test}
    (args.raw / "rows.jsonl").write_text("")
    cells = []
    for sampler in args.samplers.split(","):
        for noise in args.noises.split(","):
            db = args.raw / f"{sampler}-{noise}-{args.trials}.db"
            storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
            have = {s.study_name for s in storage.get_all_studies()}
            rows = []
            for i in range(args.studies):
                name = f"s{i}"
                task = test[i % len(test)]
                objective = NoisyTask(suite, task, noise, args.heavy_scale, seed=10_000 + i)
                if name not in have:
                    smp = make_sampler(sampler, i, prior)
                    run_study(suite.space, objective, smp, args.trials, storage, name)
                rows.append(assess(db, name, objective, optima[task], args.top_k))
            with open(args.raw / "rows.jsonl", "a") as f:
                f.writelines(
                    json.dumps({"sampler": sampler, "noise": noise, **r}) + "\n" for r in rows
                )
            cells.append(Cell(sampler, noise, rows))
            print(f"  {sampler}/{noise}: {len(rows)} studies", flush=True)
    return cells


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _signed(v: float | None) -> str:
    return "-" if v is None else f"{v:+.4f}"


def report(args: argparse.Namespace, cells: Sequence[Cell], seconds: float) -> str:
    """The markdown tables, each target marked met or missed."""
    lines = [
        "# Trust benchmark: YAHPO rbv2_xgboost with real replication noise",
        "",
        f"{args.studies} studies per cell of {args.trials} trials, held-out tasks cycled over "
        f"{args.test_tasks}; mttune's prior meta-trained on {args.train_tasks} other tasks "
        f"({args.train_trials} TPE trials each). Noise `repl`: each trial at one random "
        "replication of 10; `heavy`: plus Student-t (df 3) noise of scale "
        f"{args.heavy_scale:g}. True value: the mean over the 10 replications. Reviewed as "
        f"`mttune review --json` does; {seconds / 60:.0f} min on one core. Accuracy units "
        "(higher is better); regrets against the task's best true value. Generated by "
        f"`python -m benchmarks.trust --trials {args.trials} --studies {args.studies}`.",
        "",
        "| sampler | noise | studies | 95% covered | 68% covered | mean width 95% | "
        "rec truly better | rec truly worse | rec - best observed where they differ | "
        "regret rec | regret best observed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        s = c.line()
        lines.append(
            f"| {c.sampler} | {c.noise} | {s['n']} | {_pct(s['cover95'])} | "
            f"{_pct(s['cover68'])} | {_num(s['width95'])} | {_pct(s['better'])} | "
            f"{_pct(s['worse'])} | {_signed(s['gain'])} ({s['differ']}) | "
            f"{_num(s['regret_rec'])} | {_num(s['regret_best'])} |"
        )
    lines += ["", "Targets:", ""]
    cov_ok = [c for c in cells if c.line()["cover95"] is not None]
    cov_met = all(0.90 <= c.line()["cover95"] <= 0.97 for c in cov_ok) and len(cov_ok) == len(
        cells
    )
    rec_met = all(c.line()["better"] >= 2 * c.line()["worse"] for c in cells)
    lines.append(
        f"* 95% intervals cover 90-97% in every cell: **{'met' if cov_met else 'missed'}** ("
        + ", ".join(f"{c.sampler}/{c.noise} {_pct(c.line()['cover95'])}" for c in cells)
        + ")."
    )
    lines.append(
        "* recommendation truly better at least twice as often as worse, in every cell: "
        f"**{'met' if rec_met else 'missed'}** ("
        + ", ".join(
            f"{c.sampler}/{c.noise} {_pct(c.line()['better'])} vs {_pct(c.line()['worse'])}"
            for c in cells
        )
        + ")."
    )
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
    from benchmarks.suites import YahpoSuite
    from benchmarks.transfer import split_tasks
    from tuner.prior import load_prior

    t0 = time.monotonic()
    args.raw.mkdir(parents=True, exist_ok=True)
    suite = YahpoSuite("rbv2_xgboost", args.data)
    test, train = split_tasks(suite.tasks, args.test_tasks, args.train_tasks, seed=0)
    prior = None
    if "mttune" in args.samplers.split(","):
        prior = load_prior(build_prior(args, suite, train))
    cells = run_cells(args, suite, test, prior)
    text = report(args, cells, time.monotonic() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
