"""Tables and plots of the transfer benchmark."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

BUDGETS = (1, 5, 10, 20, 50, 100)
# the MAML ablation's budgets (issue 21's target is at 3, 5, 10 and 20 trials)
ABLATION_BUDGETS = (1, 3, 5, 10, 20, 50, 100)
# the ablation's rows: (method, what it is)
ABLATION = (
    ("mttune", "MAML, as shipped"),
    ("mttune-fomaml", "first-order MAML"),
    ("mttune-nomaml", "no MAML (`--inner-steps 0`)"),
    ("mttune-metasgd", "Meta-SGD step sizes (`--inner-lr-shape element`)"),
    ("mttune-support48", "support sets up to 48 trials (`--max-support 48`)"),
    ("mttune-cavia", "CAVIA, a context of 4 adapted alone (`--context 4`)"),
    ("mttune-cavia-lr01", "CAVIA, context step size from 0.1 (`--context 4 --context-lr 0.1`)"),
    ("mttune-cavia-lr03", "CAVIA, context step size from 0.3 (`--context 4 --context-lr 0.3`)"),
    ("mttune-nogp", "MAML adaptation, no residual GP"),
    ("gp-only", "the GP, no prior"),
)


def incumbent_curve(run: dict[str, Any], sign: float) -> np.ndarray:
    """The true value (oriented: lower is better) of the run's incumbent after each trial.

    The incumbent is the trial with the best *observed* value so far (the first of ties);
    on a deterministic run its true value is the best so far.
    """
    observed = sign * np.asarray(run["values"], dtype=float)
    true = sign * np.asarray(run.get("true", run["values"]), dtype=float)
    best = np.minimum.accumulate(observed)
    improved = np.r_[True, best[1:] < best[:-1]]
    incumbent = np.maximum.accumulate(np.where(improved, np.arange(len(observed)), 0))
    return true[incumbent]


def regret_curves(
    runs: list[dict[str, Any]], refs: dict[str, dict], direction: str
) -> dict[str, np.ndarray]:
    """Normalised regret of the incumbent's true value, per method: ``(n_runs, budget)``."""
    sign = 1.0 if direction == "minimize" else -1.0
    out: dict[str, list[np.ndarray]] = {}
    for r in runs:
        ref = refs[r["task"]]
        best, med = sign * ref["best"], sign * ref["median"]
        span = max(med - best, 1e-12)
        curve = incumbent_curve(r, sign)
        out.setdefault(r["method"], []).append(np.maximum(curve - best, 0.0) / span)
    return {m: np.array(c) for m, c in out.items()}


def _keyed(runs: list[dict[str, Any]], direction: str) -> dict[tuple[str, int], dict]:
    """Per (task, seed): each method's incumbent curve, for ranking."""
    sign = 1.0 if direction == "minimize" else -1.0
    table: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    for r in runs:
        table.setdefault((r["task"], r["seed"]), {})[r["method"]] = incumbent_curve(r, sign)
    return table


def average_ranks(runs, direction, methods: Sequence[str], budgets) -> dict[str, list]:
    """Mean rank (1 = best) per budget, over (task, seed) pairs every method ran on."""
    table = _keyed(runs, direction)
    ranks: dict[str, list[list[float]]] = {m: [[] for _ in budgets] for m in methods}
    for curves in table.values():
        present = [m for m in methods if m in curves]
        if len(present) < 2:
            continue
        for i, b in enumerate(budgets):
            vals = [curves[m][min(b, len(curves[m])) - 1] for m in present]
            for m, rk in zip(present, stats.rankdata(vals), strict=True):
                ranks[m][i].append(float(rk))
    return {m: [float(np.mean(x)) if x else float("nan") for x in ranks[m]] for m in methods}


def write_report(
    out: Path,
    suite,
    runs,
    refs,
    methods: Sequence[str],
    *,
    budget: int,
    meta_train_s: float | dict[str, float],
    config: dict,
    prior_info: dict,
) -> None:
    """``results.md`` and ``regret.png`` in ``out``."""
    direction = suite.space.objective.direction
    budgets = [b for b in BUDGETS if b <= budget]
    curves = regret_curves(runs, refs, direction)
    ranks = average_ranks(runs, direction, methods, budgets)
    shown = [m for m in methods if m in curves]
    lines = [f"# Transfer benchmark: {suite.name}", "", _setup(suite, config, budget), ""]
    lines += [
        "Normalised regret of the incumbent's true value (0 = best value found by a large "
        "search, 1 = median random config), mean ± standard error over tasks and seeds:",
        "",
        *regret_table(curves, shown, budgets),
        "",
        "Average rank per budget (1 = best):",
        "",
        "| method | " + " | ".join(f"@{b}" for b in budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    lines += [f"| {m} | " + " | ".join(f"{r:.2f}" for r in ranks[m]) + " |" for m in shown]
    lines += _distinct(runs, shown, budget)
    lines += _asks(runs, shown)
    lines += _meta_train(meta_train_s, prior_info)
    lines += ablation_table(curves)
    lines += _targets(curves, ranks, budgets)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    _plot(out / "regret.png", curves, methods, budget, suite.name)


def _setup(suite, config: dict, budget: int) -> str:
    """The run's size in one paragraph."""
    split = (
        f"leave-one-task-out over {config['n_test']} tasks ({config['n_train']} past studies each)"
        if config.get("folds", 1) > 1
        else f"{config['n_train']} past studies, {config['n_test']} held-out tasks"
    )
    noise = (
        " Noisy suite: each evaluation is one noisy draw, regret is of the true (mean) value."
        if getattr(suite, "noisy", False)
        else ""
    )
    return (
        f"{split} ({config['train_trials']} {config['train_sampler'].upper()} trials per past "
        f"study), {config['seeds']} seeds ({config['slow_seeds']} for GP), budget {budget}."
        f"{noise} Generated {datetime.date.today().isoformat()} by `python -m "
        f"benchmarks.transfer --suite {config['suite']} ...`."
    )


def regret_table(curves, methods: Sequence[str], budgets: Sequence[int]) -> list[str]:
    """Mean ± standard error of the regret per method and budget."""
    lines = [
        "| method | " + " | ".join(f"@{b}" for b in budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    for m in methods:
        c = curves[m]
        cells = []
        for b in budgets:
            col = c[:, b - 1]
            cells.append(
                f"{col.mean():.3f} ± {col.std(ddof=1) / np.sqrt(len(col)):.3f}"
                if len(col) > 1
                else f"{col.mean():.3f}"
            )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def _distinct(runs, methods: Sequence[str], budget: int) -> list[str]:
    window = min(budget, 50)
    lines = [
        "",
        f"Distinct configs in the first {window} trials (mean ± standard error over runs):",
        "",
        "| method | distinct |",
        "|---|---:|",
    ]
    for m in methods:
        d = np.array([r["distinct"] for r in runs if r["method"] == m and "distinct" in r])
        if len(d):
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
            lines.append(f"| {m} | {d.mean():.1f} ± {se:.1f} |")
    return lines


def _asks(runs, methods: Sequence[str]) -> list[str]:
    lines = [
        "",
        "Seconds per `ask()` (median / 90th percentile, with suggest calls):",
        "",
        "| method | median | p90 |",
        "|---|---:|---:|",
    ]
    for m in methods:
        a = np.asarray([t for r in runs if r["method"] == m for t in r["ask_s"]])
        if len(a):
            lines.append(f"| {m} | {np.median(a):.4f} | {np.quantile(a, 0.9):.4f} |")
    return lines


def _meta_train(meta_train_s: float | dict[str, float], prior_info: dict) -> list[str]:
    seconds = meta_train_s if isinstance(meta_train_s, dict) else {"mttune": meta_train_s}
    lines = [
        "",
        "Meta-training (`mttune meta-train`, wall clock per prior): "
        + ", ".join(f"{m} {v:.1f} s" for m, v in seconds.items())
        + ".",
    ]
    val = prior_info.get("validation", {})
    if val:
        lines += [
            "",
            "Prior validation on held-out meta-training studies (Kendall tau):",
            "",
            "| shots | " + " | ".join(val) + " |",
            "|---|" + "---:|" * len(val),
            "| tau | " + " | ".join(_fmt(v.get("kendall_tau")) for v in val.values()) + " |",
        ]
    return lines


def ablation_table(curves) -> list[str]:
    """The MAML ablation's regret, and issue 21's target: each MAML variant against no MAML.

    Met at 3, 5, 10 and 20 trials when the default's mean regret is at least 10 % lower
    than no-MAML's; at 1 and 50 (and 100) trials when it is no higher at the table's
    precision (3 decimals: 0.0002 and 0.0001 are both 0.000, a tie, not a loss).
    """
    rows = [(m, what) for m, what in ABLATION if m in curves]
    if len(rows) < 2:
        return []
    n = min(curves[m].shape[1] for m, _ in rows)
    budgets = [b for b in ABLATION_BUDGETS if b <= n]
    lines = [
        "",
        "MAML ablation: mean regret on the same tasks and seeds:",
        "",
        "| variant | " + " | ".join(f"@{b}" for b in budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    for m, what in rows:
        cells = " | ".join(f"{curves[m][:, b - 1].mean():.3f}" for b in budgets)
        lines.append(f"| {what} (`{m}`) | {cells} |")
    if "mttune" in curves and "mttune-nomaml" in curves:
        for m, _ in rows:
            if m in ("mttune-nomaml", "mttune-nogp", "gp-only"):
                continue
            who = "default" if m == "mttune" else f"`{m}`"
            cells = target_cells(curves[m], curves["mttune-nomaml"], budgets)
            lines.append(f"| target: {who} vs no MAML | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Target (issue 21): the default's regret at least 10 % lower than no-MAML's at 3, "
            "5, 10 and 20 trials and no higher at 1 and 50-100 (at the table's precision); in "
            "brackets, how much lower it is.",
        ]
    return lines


def target_cells(curve: np.ndarray, nomaml: np.ndarray, budgets: list[int]) -> list[str]:
    """Issue 21's target per budget: met or missed, and how much lower the regret is."""
    cells = []
    for b in budgets:
        a, z = curve[:, b - 1].mean(), nomaml[:, b - 1].mean()
        change = (z - a) / z if z > 0 else 0.0
        ok = change >= 0.10 if b in (3, 5, 10, 20) else round(a, 3) <= round(z, 3)
        cells.append(f"{'met' if ok else 'missed'} ({100 * change:+.0f} %)")
    return cells


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _targets(curves, ranks, budgets) -> list[str]:
    out = ["", "Targets:", ""]
    if "mttune" in curves and len(curves) > 1:
        others = [m for m in curves if m != "mttune" and not m.startswith("mttune-")]
        lost = [
            f"@{b} ({m})"
            for b in budgets
            for m in others
            if curves[m][:, b - 1].mean() < curves["mttune"][:, b - 1].mean()
        ]
        out.append(
            "- mttune the best mean regret at every budget: "
            + ("met" if not lost else "missed: beaten " + ", ".join(lost))
        )
    if "mttune" in curves and "tpe" in curves and curves["tpe"].shape[1] >= 100:
        a, b = curves["mttune"][:, 9].mean(), curves["tpe"][:, 99].mean()
        out.append(
            f"- mttune regret @10 ({a:.3f}) no worse than TPE @100 ({b:.3f}): "
            f"{'met' if a <= b else 'missed'}"
        )
    if "mttune" in ranks and any(not m.startswith("mttune") for m in ranks):
        best = all(
            ranks["mttune"][i]
            <= min(r[i] for m, r in ranks.items() if m != "mttune" and not m.startswith("mttune-"))
            for i in range(len(budgets))
        )
        out.append(
            f"- mttune best average rank at every budget: {'met' if best else 'missed'}"
            f" (ranks {', '.join(f'{r:.2f}' for r in ranks['mttune'])})"
        )
    if "mttune-misleading" in curves and "tpe" in curves and curves["tpe"].shape[1] >= 50:
        a, b = curves["mttune-misleading"][:, 49].mean(), curves["tpe"][:, 49].mean()
        ok = a <= 1.1 * b
        out.append(
            f"- misleading prior regret @50 ({a:.3f}) within 10% of TPE's ({b:.3f}): "
            f"{'met' if ok else 'missed'}"
        )
    return out


def _plot(path: Path, curves, methods, budget: int, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    xs = np.arange(1, budget + 1)
    for m in methods:
        if m not in curves:
            continue
        c = curves[m]
        mean = c.mean(axis=0)
        se = c.std(axis=0, ddof=1) / np.sqrt(len(c)) if len(c) > 1 else np.zeros_like(mean)
        style = "-" if m.startswith("mttune") else "--"
        width = 2.2 if m == "mttune" else 1.2
        ax.plot(xs, mean, style, lw=width, label=m)
        ax.fill_between(xs, np.maximum(mean - se, 1e-4), mean + se, alpha=0.15)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("trials")
    ax.set_ylabel("normalised regret (log)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def collect(folder: Path, size: str) -> str:
    """One page of every suite's ``results.md`` under ``folder``, the ablation targets first.

    ``size`` says how the runs were sized (it heads the page).
    """
    pages = sorted(p for p in folder.glob("*/results.md"))
    lines = [
        "# Transfer benchmark: the issue-17/21 suites",
        "",
        size,
        "",
        "The MAML ablation's target per suite (issue 21: the default prior's regret at least "
        "10 % lower than no-MAML's at 3, 5, 10 and 20 trials, no higher at 1 and 50; in "
        "brackets how much lower it is):",
        "",
        "| suite | @1 | @3 | @5 | @10 | @20 | @50 |",
        "|---|---|---|---|---|---|---|",
    ]
    for page in pages:
        for row in page.read_text().splitlines():
            if row.startswith("| target: default vs no MAML |"):
                lines.append(f"| {page.parent.name} |" + row.split("|", 2)[2])
    for page in pages:
        body = page.read_text().splitlines()
        lines += ["", f"## {page.parent.name}", "", *body[2:]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.report --collect FOLDER --size TEXT -o FILE``."""
    import argparse

    p = argparse.ArgumentParser(description="collect the suites' results into one page")
    p.add_argument("--collect", type=Path, required=True, help="folder of suite folders")
    p.add_argument("--size", required=True, help="how the runs were sized (heads the page)")
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args(argv)
    args.output.write_text(collect(args.collect, args.size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
