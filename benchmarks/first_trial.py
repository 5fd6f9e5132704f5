"""Headroom at trial 1: could any first config rank better than the portfolio's?

At trial 1 no method has seen the new task, so each picks one fixed config per prior. This
script asks, after a run of :mod:`benchmarks.transfer`, what mttune's average rank at trial 1
would be with each past study's best config as its first trial (every other method's first
trial unchanged): how many of those candidates rank better than the portfolio's first config,
and which of them simple rules computed from the past studies pick.

Example::

    python -m benchmarks.transfer --suite yahpo:rbv2_xgboost --data ../shared/data/yahpo
    python -m benchmarks.first_trial --suite yahpo:rbv2_xgboost --data ../shared/data/yahpo

It reads the transfer benchmark's results folder (``raw/``: the split, the past studies, the
prior and the runs) and writes ``first_trial.md`` there.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.transfer import REPO


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", required=True, help="yahpo:<scenario> or table:<folder>")
    p.add_argument("--data", help="folder of the YAHPO scenarios (for yahpo suites)")
    p.add_argument("--out", type=Path, help="the transfer benchmark's results folder")
    return p.parse_args(argv)


def mttune_first_config(prior) -> dict[str, Any]:
    """The config of mttune's first trial on a fresh study (the prior's zero-shot best)."""
    import optuna

    from tuner.sampler import MetaPriorSampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction=prior.space.objective.direction, sampler=MetaPriorSampler(prior, seed=0)
    )
    trial = study.ask()
    return prior.space.suggest(trial)


def first_trial_headroom(suite, raw: Path) -> dict[str, Any]:
    """Rank at trial 1 of each candidate first config, and the configs rules pick.

    Returns:
        ``{"candidates": n, "better_than_portfolio": k, "rows": [(label, rank, regret)]}``.
    """
    from benchmarks.methods import greedy_portfolio
    from benchmarks.report import average_ranks, regret_curves
    from tuner.metadataset import build_metadataset
    from tuner.prior import load_prior

    split = json.loads((raw / "split.json").read_text())
    refs = json.loads((raw / "reference.json").read_text())
    direction = suite.space.objective.direction
    past = build_metadataset([str(raw / "past_studies.db")], suite.space)
    prior = load_prior(raw / "prior.safetensors")
    others = [
        {**r, "values": r["values"][:1]}
        for line in (raw / "runs.jsonl").read_text().splitlines()
        if (r := json.loads(line))["method"] != "mttune" and r["task"] in split["test"]
    ]
    seeds = sorted({r["seed"] for r in others})
    methods = sorted({r["method"] for r in others} | {"mttune"})

    def score(values: np.ndarray) -> tuple[float, float]:
        runs = others + [
            {"method": "mttune", "task": t, "seed": s, "values": [float(v)]}
            for t, v in zip(split["test"], values, strict=True)
            for s in seeds
        ]
        rank = average_ranks(runs, direction, methods, [1])["mttune"][0]
        regret = float(regret_curves(runs, refs, direction)["mttune"][:, 0].mean())
        return rank, regret

    def evaluate(configs: list[dict[str, Any]]) -> np.ndarray:
        """Values ``(configs, test tasks)``."""
        return np.stack([suite.evaluate(t, configs) for t in split["test"]], 1)

    cands = [task.best_configs(1)[0] for task in past.tasks]
    scored = [score(v) for v in evaluate(cands)]
    # each candidate's normalised value on each past study, read off the study's nearest trial
    x = past.features.encode(cands)
    z = np.stack([t.z[((x[:, None] - t.x[None]) ** 2).sum(-1).argmin(1)] for t in past.tasks], 1)
    picks = {
        "the portfolio's first (best mean over the past studies)": cands.index(
            greedy_portfolio(past, 1)[0]
        ),
        "best median over the past studies": int(np.argmin(np.median(z, 1))),
    }
    rows = [(label, *scored[i]) for label, i in picks.items()]
    first = evaluate([mttune_first_config(prior)])[0]
    rows.append(("mttune's first (the prior's zero-shot best)", *score(first)))
    best = int(np.argmin([s[0] for s in scored]))
    rows.append(("the best of the past studies' best configs, in hindsight", *scored[best]))
    portfolio_rank = rows[0][1]
    return {
        "candidates": len(cands),
        "better_than_portfolio": sum(s[0] < portfolio_rank - 1e-9 for s in scored),
        "rows": rows,
        "tasks": len(split["test"]),
        "seeds": len(seeds),
    }


def write(out: Path, suite_name: str, result: dict[str, Any]) -> Path:
    """``first_trial.md`` in ``out``."""
    lines = [
        f"# Headroom at trial 1: {suite_name}",
        "",
        f"mttune's average rank at trial 1 ({result['tasks']} held-out tasks x "
        f"{result['seeds']} seeds, every other method's first trial unchanged) with each "
        "first config:",
        "",
        "| first config | rank @1 | regret @1 |",
        "|---|---:|---:|",
    ]
    lines += [f"| {label} | {rank:.2f} | {regret:.3f} |" for label, rank, regret in result["rows"]]
    lines += [
        "",
        f"Of the {result['candidates']} past studies' best configs, "
        f"{result['better_than_portfolio']} would rank better at trial 1 than the portfolio's "
        "first config.",
    ]
    path = out / "first_trial.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    from benchmarks.suites import load_suite

    suite = load_suite(args.suite, args.data)
    out = args.out or REPO / "benchmarks" / "results" / suite.name.replace(":", "-").replace(
        "/", "-"
    )
    raw = out / "raw"
    if not (raw / "runs.jsonl").exists():
        print(
            f"no transfer benchmark runs in {raw}: run benchmarks.transfer first",
            file=sys.stderr,
        )
        return 1
    path = write(out, suite.name, first_trial_headroom(suite, raw))
    print(path.read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
