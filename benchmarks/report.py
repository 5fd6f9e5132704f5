"""Tables and plots of the transfer benchmark."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

BUDGETS = (1, 5, 10, 20, 50, 100)


def regret_curves(
    runs: list[dict[str, Any]], refs: dict[str, dict], direction: str
) -> dict[str, np.ndarray]:
    """Normalised regret of the best-so-far value, per method: ``(n_runs, budget)``."""
    sign = 1.0 if direction == "minimize" else -1.0
    out: dict[str, list[np.ndarray]] = {}
    for r in runs:
        ref = refs[r["task"]]
        best, med = sign * ref["best"], sign * ref["median"]
        so_far = np.minimum.accumulate(sign * np.asarray(r["values"], dtype=float))
        span = max(med - best, 1e-12)
        out.setdefault(r["method"], []).append(np.maximum(so_far - best, 0.0) / span)
    return {m: np.array(c) for m, c in out.items()}


def _keyed(runs: list[dict[str, Any]], direction: str) -> dict[tuple[str, int], dict]:
    """Per (task, seed): each method's best-so-far curve, for ranking."""
    sign = 1.0 if direction == "minimize" else -1.0
    table: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    for r in runs:
        table.setdefault((r["task"], r["seed"]), {})[r["method"]] = np.minimum.accumulate(
            sign * np.asarray(r["values"])
        )
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
    meta_train_s: float,
    config: dict,
    prior_info: dict,
) -> None:
    """``results.md`` and ``regret.png`` in ``out``."""
    direction = suite.space.objective.direction
    budgets = [b for b in BUDGETS if b <= budget]
    curves = regret_curves(runs, refs, direction)
    ranks = average_ranks(runs, direction, methods, budgets)
    asks = {m: [t for r in runs if r["method"] == m for t in r["ask_s"]] for m in methods}
    lines = [
        f"# Transfer benchmark: {suite.name}",
        "",
        f"{config['n_train']} meta-training tasks ({config['train_trials']} "
        f"{config['train_sampler'].upper()} trials each), {config['n_test']} held-out tasks, "
        f"{config['seeds']} seeds ({config['slow_seeds']} for GP), budget {budget}. "
        f"Generated {datetime.date.today().isoformat()} by `python -m benchmarks.transfer "
        f"--suite {config['suite']} ...`.",
        "",
        "Normalised regret (0 = best value found by a large search, 1 = median random config), "
        "mean ± standard error over tasks and seeds:",
        "",
        "| method | " + " | ".join(f"@{b}" for b in budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    for m in methods:
        if m not in curves:
            continue
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
    lines += [
        "",
        "Average rank per budget (1 = best):",
        "",
        "| method | " + " | ".join(f"@{b}" for b in budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    for m in methods:
        if m in curves:
            lines.append(f"| {m} | " + " | ".join(f"{r:.2f}" for r in ranks[m]) + " |")
    lines += [
        "",
        "Seconds per `ask()` (median / 90th percentile, with suggest calls):",
        "",
        "| method | median | p90 |",
        "|---|---:|---:|",
    ]
    for m in methods:
        if asks.get(m):
            a = np.asarray(asks[m])
            lines.append(f"| {m} | {np.median(a):.4f} | {np.quantile(a, 0.9):.4f} |")
    val = prior_info.get("validation", {})
    lines += ["", f"Meta-training (`mttune meta-train`): {meta_train_s:.1f} s wall clock."]
    if val:
        lines += [
            "",
            "Prior validation on held-out meta-training studies (Kendall tau):",
            "",
            "| shots | " + " | ".join(val) + " |",
            "|---|" + "---:|" * len(val),
            "| tau | " + " | ".join(_fmt(v.get("kendall_tau")) for v in val.values()) + " |",
        ]
    lines += _targets(curves, ranks, budgets)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    _plot(out / "regret.png", curves, methods, budget, suite.name)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _targets(curves, ranks, budgets) -> list[str]:
    out = ["", "Targets:", ""]
    if "mttune" in curves and "tpe" in curves and curves["tpe"].shape[1] >= 100:
        a, b = curves["mttune"][:, 9].mean(), curves["tpe"][:, 99].mean()
        out.append(
            f"- mttune regret @10 ({a:.3f}) no worse than TPE @100 ({b:.3f}): "
            f"{'met' if a <= b else 'missed'}"
        )
    if "mttune" in ranks:
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
