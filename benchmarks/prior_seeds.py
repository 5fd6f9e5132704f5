"""The MAML ablation over meta-training seeds: is MAML's lead larger than a reseeded prior's?

    python -m benchmarks.prior_seeds --suite yahpo:lcbench --data ../shared/data/yahpo \\
        OUT_SEED0 OUT_SEED1 OUT_SEED2 -o table.md

Each folder is a transfer-benchmark ``--out`` of the same suite, tasks and seeds, with
``--methods mttune,mttune-nomaml`` and priors meta-trained with a different
``--meta-train-args "--seed S"`` (a copy of one folder's ``raw/past_studies.db``,
``reference.json``, ``space.yaml`` and ``split.json`` makes the others reuse its past
studies). One prior per method is one draw: the network's initialisation and the
meta-training split decide the first trials as much as the method does. ``--pair model``
compares the runs of ``--methods mttune-model,mttune-nomaml-model`` instead: both priors
choosing the first trials by their model, like for like. ``--pair measured`` compares each
prior by the first-trial strategy its meta-training measured (what ``early_strategy="auto"``
takes), from the runs of the strategy methods (``mttune-model``, ``mttune-hedge-1``, ...,
``mttune-nomaml-hedge``): per fold, the runs of the strategy that fold's prior chose.
The table gives each seed's mean regret, the mean over seeds with the standard deviation
of the per-seed means, and issue 21's target on the pooled runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.report import ABLATION_BUDGETS, regret_curves, target_cells

# the pairs compared: as shipped (each prior's measured first-trial strategy), like for like
# (both priors' first trials by their model; the hedge's ignore the network), and as measured
# (the strategy runs of what each prior measured: "{}" is filled in per fold)
PAIRS = {
    "shipped": (("mttune", "MAML (default)"), ("mttune-nomaml", "no MAML")),
    "model": (
        ("mttune-model", "MAML, first trials by the model"),
        ("mttune-nomaml-model", "no MAML, first trials by the model"),
    ),
    "measured": (
        ("mttune-{}", "MAML, its measured first trials"),
        ("mttune-nomaml-{}", "no MAML, its measured first trials"),
    ),
}
# the prior file behind each of a pair's methods, in a run's folder or fold folder
_PRIOR_FILES = ("prior.safetensors", "prior-nomaml.safetensors")


def _curves(folder: Path, direction: str, methods) -> dict[str, np.ndarray]:
    raw = folder / "raw"
    refs = json.loads(next(raw.rglob("reference.json")).read_text())
    if any("{}" in m for m, _ in methods):
        return _measured_curves(raw, refs, direction, methods)
    names = {m for m, _ in methods}
    runs = [
        r
        for f in sorted(raw.rglob("runs.jsonl"))
        for line in f.read_text().splitlines()
        if (r := json.loads(line))["method"] in names
    ]
    return _checked(folder, regret_curves(runs, refs, direction), methods)


def _measured_curves(raw: Path, refs: dict, direction: str, methods) -> dict[str, np.ndarray]:
    """Per fold, the runs of the strategy each of the fold's two priors measured."""
    from tuner.prior import MEASURED_STRATEGIES, load_prior
    from tuner.sampler import MetaPriorSampler

    runs, missing = [], []
    for fold in sorted({f.parent for f in raw.rglob("runs.jsonl")}):
        rows = [json.loads(line) for line in (fold / "runs.jsonl").read_text().splitlines()]
        for (pattern, _), name in zip(methods, _PRIOR_FILES, strict=True):
            if not (fold / name).is_file():
                missing.append(f"{pattern.format('model')} (no {fold / name})")
                continue
            wanted = pattern.format(MetaPriorSampler(load_prior(fold / name)).early_strategy)
            picked = [r | {"method": pattern} for r in rows if r["method"] == wanted]
            runs += picked
            missing += [] if picked else [wanted]
    if missing or not runs:
        strategies = ",".join(p.format(s) for p, _ in methods for s in MEASURED_STRATEGIES)
        raise SystemExit(
            f"{raw.parent} has no runs of {', '.join(missing) or 'the strategy methods'}: run "
            f"the transfer benchmark there with --methods {strategies}"
        )
    return regret_curves(runs, refs, direction)


def _checked(folder: Path, curves: dict[str, np.ndarray], methods) -> dict[str, np.ndarray]:
    """``curves``, or a clear exit naming the methods to run when one has no runs."""
    missing = [m for m, _ in methods if m not in curves]
    if missing:
        raise SystemExit(
            f"{folder} has no runs of {', '.join(missing)}: run the transfer benchmark there "
            f"with --methods {','.join(m for m, _ in methods)}"
        )
    return curves


def table(folders: Sequence[Path], direction: str, pair: str = "shipped") -> list[str]:
    """Markdown rows: per seed, the mean over seeds, and the target on the pooled runs."""
    methods = PAIRS[pair]
    per_seed = [_curves(f, direction, methods) for f in folders]
    n = min(c[m].shape[1] for c in per_seed for m, _ in methods)
    budgets = [b for b in ABLATION_BUDGETS if b <= n]
    lines = [
        "| prior | run (folder) | " + " | ".join(f"@{b}" for b in budgets) + " |",
        "|---|---|" + "---:|" * len(budgets),
    ]
    for m, what in methods:
        for folder, c in zip(folders, per_seed, strict=True):
            cells = " | ".join(f"{c[m][:, b - 1].mean():.3f}" for b in budgets)
            lines.append(f"| {what} | {folder.name} | {cells} |")
        if len(per_seed) < 2:
            continue
        means = np.array([[c[m][:, b - 1].mean() for b in budgets] for c in per_seed])
        cells = " | ".join(
            f"{mu:.3f} ± {sd:.3f}"
            for mu, sd in zip(means.mean(0), means.std(0, ddof=1), strict=True)
        )
        lines.append(f"| {what} | mean ± sd | {cells} |")
    (maml, _), (plain, _) = methods
    pooled = {m: np.vstack([c[m] for c in per_seed]) for m in (maml, plain)}
    cells = target_cells(pooled[maml], pooled[plain], budgets)
    lines.append("| target: MAML vs no MAML | pooled | " + " | ".join(cells) + " |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", type=Path, nargs="+", help="transfer --out folders, one a seed")
    p.add_argument("--suite", required=True, help="the suite the folders ran (its direction)")
    p.add_argument("--data", help="folder of the YAHPO scenarios (for yahpo suites)")
    p.add_argument("--pair", choices=tuple(PAIRS), default="shipped", help="which runs")
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args(argv)
    from benchmarks.suites import load_suite

    direction = load_suite(args.suite, args.data).space.objective.direction
    lines = [
        f"### {args.suite}: {len(args.folders)} meta-training seeds, {args.pair}",
        "",
        *table(args.folders, direction, args.pair),
    ]
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
