"""Terminal rendering of a review and of the study list (rich tables)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tuner.review._load import StudyInfo

__all__ = ["fmt_value", "print_review", "print_studies"]


def fmt_value(value: Any) -> str:
    """A number (4 significant digits), or the value as text."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def poor_proposals_sentence(prior: dict[str, Any]) -> str | None:
    """How many of the prior's proposals were poor, in words (``None`` when none were)."""
    if not prior.get("poor_proposals"):
        return None
    return (
        f"{prior['poor_proposals']} of the prior's {prior['proposed_by_prior']} proposals "
        "landed among the study's worst quarter so far (counted against the prior by the guard)"
    )


def adaptation_sentence(prior: dict[str, Any]) -> str | None:
    """What adapting the prior to the study contributed, in words (``None`` without data)."""
    a = prior.get("adaptation") or {}
    if not a.get("n"):
        return None
    gain = a["adapted"] - a["zero_shot"]
    verdict = "helped" if gain > 0.02 else "hurt" if gain < -0.02 else "changed little"
    return (
        f"adapting the prior to this study {verdict}: over {a['n']} trials it ranked each new "
        f"trial against the earlier ones correctly {a['adapted']:.2f} of the time, the "
        f"zero-shot prior {a['zero_shot']:.2f} (0.5 = chance)"
    )


def guard_verdict(prior: dict[str, Any]) -> tuple[bool, str] | None:
    """Whether the negative-transfer guard fired, and the details in words.

    ``None`` when no trial recorded the guard's state.
    """
    g = prior["guard"]
    final = g["final"] or {}
    trust = f"final trust {fmt_value(final.get('trust'))}"
    if g["fired"]:
        return True, f"on {g['fired_trials']} trial(s), first at #{g['first_fired']}; {trust}"
    return (False, trust) if final else None


def worse_by(side: dict[str, Any], fmt: Any) -> str:
    """A robustness side's degradation, or that its neighbour runs failed."""
    failed = side.get("failed_runs", 0)
    if failed and not side["runs"]:
        return f"failed ({failed} run{'s' if failed > 1 else ''})"
    text = fmt(side["degradation"])
    return f"{text} ({failed} failed)" if failed else text


def _short(value: Any) -> str:
    """A number with 3 significant digits (for narrow table cells)."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return fmt_value(value)


def _interval(iv: Sequence[float] | None) -> str:
    return "-" if iv is None else f"[{fmt_value(iv[0])}, {fmt_value(iv[1])}]"


def _pct(p: float | None) -> str:
    return "-" if p is None else f"{100 * p:.0f}%"


def print_studies(studies: Sequence[StudyInfo], storage: str, console: Console) -> None:
    """The study list of a storage."""
    if not studies:
        console.print(f"{storage}: no studies.")
        return
    table = Table(title=f"studies in {storage}")
    for col, justify in (
        ("study", "left"),
        ("direction", "left"),
        ("trials", "right"),
        ("complete", "right"),
        ("pruned", "right"),
        ("failed", "right"),
        ("best value", "right"),
        ("last trial started", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for s in studies:
        table.add_row(
            s.name,
            ",".join(s.directions),
            str(s.n_trials),
            str(s.n_complete),
            str(s.n_pruned),
            str(s.n_failed),
            fmt_value(s.best_value),
            s.last_start or "-",
        )
    console.print(table)
    console.print("review one with: mttune review STORAGE --study NAME")


def print_review(report: dict[str, Any], console: Console) -> None:
    """All sections of a review (see :class:`tuner.review.Review`)."""
    t = report["trials"]
    fails = report["failures"]
    states = ", ".join(f"{n} {s}" for s, n in fails["by_state"].items()) or "no trials"
    console.print(
        Text.assemble(
            ("study ", ""),
            (report["study"], "bold"),
            f" ({report['direction']} {report['objective']}): {t['search']} search trials "
            f"({states})",
            f"; {t['verification']} verification runs" if t["verification"] else "",
        )
    )
    _print_choice(report, console)
    _print_confidence(report, console)
    _print_robustness(report, console)
    _print_importance(report, console)
    _print_convergence(report, console)
    _print_failures(report, console)
    _print_prior(report, console)
    for note in report["notes"]:
        console.print(f"note: {note}", style="dim")


def _print_choice(report: dict[str, Any], console: Console) -> None:
    best, rec = report["best_observed"], report["recommended"]
    if rec is None or best is None:
        console.print("no completed trial: nothing to recommend yet", style="red")
        return
    est = best.get("estimate") or {}
    table = Table(title="best observed vs recommended config")
    table.add_column("")
    table.add_column("best observed", justify="right")
    table.add_column("recommended", justify="right", style="bold")
    table.add_row("trial", f"#{best['number']}", f"#{rec['number']}")
    table.add_row("best single run", fmt_value(best["value"]), fmt_value(rec["observed_best"]))
    table.add_row("runs", str(est.get("runs", 1)), str(rec["runs"]))
    table.add_row("estimated true value", fmt_value(est.get("mean")), fmt_value(rec["mean"]))
    pct = f"{round(100 * rec['level'])}% interval"
    table.add_row(pct, _interval(est.get("interval")), _interval(rec["interval"]))
    table.add_row("method", est.get("method", "-"), rec["method"])
    table.add_row("P(best of top-k)", _pct(est.get("p_best")), _pct(rec["p_best"]))
    for name in sorted(set(best["params"]) | set(rec["params"])):
        table.add_row(
            f"  {name}",
            fmt_value(best["params"].get(name)),
            fmt_value(rec["params"].get(name)),
        )
    console.print(table)
    if report["why"]:
        console.print(f"why they differ: {report['why']}")
    else:
        console.print("the best observed config is also the recommended one.")
    print_promising(report, console)


def print_promising(report: dict[str, Any], console: Console) -> None:
    """The "promising, verify it" candidates and the command that measures them."""
    promising = report.get("promising") or []
    if not promising:
        return
    rec = report["recommended"]
    console.print(
        Text("promising, verify it: ", style="bold yellow"),
        f"{len(promising)} config(s) run once look better than the measured recommendation "
        f"(#{rec['number']}), on the strength of that one run:",
        sep="",
    )
    for d in promising:
        console.print(
            f"  trial #{d['number']}: {fmt_value(d['mean'])} {_interval(d['interval'])} "
            f"({d['method']}, 1 run)"
        )
    console.print(f"  measure them: {report['verify_command']}", soft_wrap=True)


def _print_confidence(report: dict[str, Any], console: Console) -> None:
    conf = report["confidence"]
    if not conf["top_k"]:
        return
    table = Table(title=f"confidence: the top {len(conf['top_k'])} candidates")
    for col in ("rank", "trial", "runs", "estimated value", "interval", "method", "P(best)"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for c in conf["top_k"]:
        table.add_row(
            str(c["rank"]),
            f"#{c['number']}",
            str(c["runs"]),
            fmt_value(c["mean"]),
            _interval(c["interval"]),
            c["method"],
            _pct(c["p_best"]),
        )
    console.print(table)
    console.print(f"method: {conf['method']}")
    if conf["noise_sd"] is not None:
        console.print(
            f"noise of one run: sd {fmt_value(conf['noise_sd'])} ({conf['noise_method']})"
        )


def _print_robustness(report: dict[str, Any], console: Console) -> None:
    rob = report["robustness"]
    if rob is None:
        return
    table = Table(
        title=f"robustness of trial #{rob['number']}'s config: each parameter moved by "
        f"±{rob['perturb']:g} of its range"
    )
    for col in ("parameter", "value", "moved to (-/+)", "worse by (-/+)", "± se", "from"):
        table.add_column(col, justify="left" if col in ("parameter", "from") else "right")
    table.add_column("fragile")
    for p in rob["params"]:
        sides = {s["sign"]: s for s in p["sides"]}
        moved = " / ".join(
            "-" if sides.get(sg) is None else _short(sides[sg]["value"]) for sg in (-1, 1)
        )
        worse = " / ".join(
            "-" if sides.get(sg) is None else worse_by(sides[sg], _short) for sg in (-1, 1)
        )
        table.add_row(
            p["name"],
            _short(p["value"]),
            moved,
            worse,
            _short(p["se"]),
            p["method"],
            Text("FRAGILE", style="bold red") if p["fragile"] else "ok",
        )
    if rob["params"]:
        console.print(table)
        console.print(
            "worse by: how much worse the objective gets at the moved value (positive = "
            f"worse; ± se of the worse side); fragile: significant and above "
            f"{fmt_value(rob['threshold'])} ({rob['threshold_rule']})"
        )
    for b in rob["better"]:
        console.print(
            Text.assemble(
                (
                    f"moving {b['param']} to {fmt_value(b['value'])} improves the objective by "
                    f"{fmt_value(b['gain'])}",
                    "yellow",
                ),
                f": the config is not at an optimum along {b['param']}",
            )
        )
    for name, reason in rob["skipped"].items():
        console.print(f"  {name}: not perturbed ({reason})", style="dim")
    seeds = rob["seeds"]
    if seeds:
        console.print(
            f"spread across seeds ({seeds['n']} {seeds['from']}): sd {fmt_value(seeds['sd'])}, "
            f"range [{fmt_value(seeds['min'])}, {fmt_value(seeds['max'])}]"
        )


def _print_importance(report: dict[str, Any], console: Console) -> None:
    imp = report["importance"]
    if not imp["values"]:
        if imp["note"]:
            console.print(f"importance: {imp['note']}")
        return
    table = Table(title=f"importance ({imp['method']}, {imp['trials']} trials)")
    table.add_column("parameter")
    table.add_column("importance", justify="right")
    table.add_column("")
    for name, v in imp["values"].items():
        table.add_row(name, f"{v:.3f}", "█" * max(0, round(30 * v)))
    console.print(table)
    for name, reason in imp["not_rated"].items():
        console.print(f"  {name}: not rated ({reason})", style="dim")


def _print_convergence(report: dict[str, Any], console: Console) -> None:
    c = report["convergence"]
    if not c["trials"]:
        return
    last = c["last_improvement"]
    console.print(
        f"convergence: {c['trials']} completed search trials; the best improved "
        f"{c['improvements']} times, last at trial #{last['number']} "
        f"({fmt_value(last['value'])}), {c['trials_since_improvement']} trials ago"
    )


def _print_failures(report: dict[str, Any], console: Console) -> None:
    f = report["failures"]
    if not f["top_reasons"]:
        return
    table = Table(title=f"top failure reasons ({f['distinct_reasons']} distinct)")
    table.add_column("count", justify="right")
    table.add_column("reason")
    table.add_column("trials", justify="right")
    for r in f["top_reasons"]:
        table.add_row(str(r["count"]), r["reason"], ", ".join(f"#{n}" for n in r["trials"]))
    console.print(table)


def _print_prior(report: dict[str, Any], console: Console) -> None:
    p = report["prior"]
    if p is None:
        return
    table = Table(title="prior diagnostics (MetaPriorSampler)")
    for col in ("source", "trials", "complete", "mean value", "best value"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for src, e in p["sources"].items():
        table.add_row(
            src, str(e["trials"]), str(e["complete"]), fmt_value(e["mean"]), fmt_value(e["best"])
        )
    if p["sources"]:
        console.print(table)
    corr = p["correlation"]
    if corr["spearman"] is not None:
        console.print(
            f"prior predicted vs observed over {corr['n']} trials: Spearman "
            f"{corr['spearman']:.2f}, Kendall {corr['kendall']:.2f} (1 = perfect order, 0 = none)"
        )
    for sentence in (adaptation_sentence(p), poor_proposals_sentence(p)):
        if sentence is not None:
            console.print(sentence)
    verdict = guard_verdict(p)
    if verdict is not None:
        fired, detail = verdict
        console.print(
            Text.assemble(("negative-transfer guard fired", "yellow"), f" {detail}")
            if fired
            else f"negative-transfer guard never fired; {detail}"
        )
    sp = p["study_prior"]
    if sp:
        sources = sp.get("sources") or []
        shown = ", ".join(str(s) for s in sources[:8]) + (" ..." if len(sources) > 8 else "")
        console.print(
            f"prior {sp.get('path') or '(no path)'} learned from {len(sources)} studies "
            f"({sp.get('source_trials', '?')} trials): {shown}"
        )
