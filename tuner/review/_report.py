"""The review report: every section as plain JSON-ready data (``Review.to_dict()``).

The structure is documented in docs (``mttune review --json``) and versioned by ``format``;
fields are only ever added within a version.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from collections.abc import Sequence
from typing import Any

import numpy as np

from tuner.review._confidence import Analysis, Estimate, analyse, describe_method, why_different
from tuner.review._diagnostics import convergence, failures, importance, prior_diagnostics
from tuner.review._load import StudyData, read_study
from tuner.review._robustness import Robustness, robustness

__all__ = ["FORMAT", "Review", "build_review", "review_data"]

FORMAT = "mttune-review/1"


def fmt(value: float | None) -> str:
    """A number for sentences and tables (4 significant digits)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.4g}"


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars unwrapped, NaN and infinities as ``None``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclasses.dataclass
class Review:
    """A study's review.

    Attributes:
        report: The sections as JSON-ready data (see :meth:`to_dict`).
        analysis: The underlying estimates (for verify and the plots).
        robustness: Robustness of the recommended config (``None`` without one).
    """

    report: dict[str, Any]
    analysis: Analysis
    robustness: Robustness | None

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON types (the ``mttune review --json`` output)."""
        return self.report

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(self.report, indent=2, allow_nan=False)


def build_review(
    location: str, study: str, *, top_k: int = 5, perturb: float = 0.05, seed: int = 0
) -> Review:
    """Read a study (strictly read-only) and review it.

    Args:
        location: Storage URL, SQLite path or journal file.
        study: Study name.
        top_k: Candidates compared for ``P(best)``.
        perturb: The nudge of robustness, in unit-cube units.
        seed: Seed of the Monte-Carlo draws and subsamples (same seed, same report).
    """
    return review_data(read_study(location, study), top_k=top_k, perturb=perturb, seed=seed)


def estimate_dict(e: Estimate, analysis: Analysis, rank: int | None = None) -> dict[str, Any]:
    """One candidate config's estimate in objective units."""
    data = analysis.data
    s = data.sign
    h = e.half_width
    out = {
        "rank": rank,
        "number": e.group.representative(data),
        "params": e.group.params,
        "runs": e.group.n,
        "runs_used": e.n_used,
        "trials": e.group.numbers(data)[:20],
        "observed_best": s * e.observed_best,
        "mean": s * e.mean,
        "se": e.se,
        "interval": None if h is None else sorted([s * (e.mean - h), s * (e.mean + h)]),
        "bound": s * e.bound if h is not None else None,
        "method": e.method,
        "p_best": e.p_best,
        "sd": e.sd,
        "df": e.df,
    }
    return out


def robustness_dict(r: Robustness | None) -> dict[str, Any] | None:
    """Robustness in JSON form."""
    if r is None:
        return None
    return {
        "number": r.number,
        "perturb": r.perturb,
        "threshold": r.threshold,
        "threshold_rule": r.threshold_rule,
        "fragile": r.fragile,
        "better": r.better,
        "params": [dataclasses.asdict(p) for p in r.params],
        "skipped": r.skipped,
        "seeds": r.seeds,
    }


def verify_command(
    data: StudyData,
    numbers: Sequence[int],
    *,
    script: Sequence[str] = ("SCRIPT",),
    repeats: int | None = None,
) -> str:
    """The ``mttune verify`` command that measures the configs of trials ``numbers``.

    Args:
        data: The study.
        numbers: Trial numbers naming the configs.
        script: The training script and its extra arguments (``SCRIPT`` when unknown).
        repeats: ``--repeats`` (``None``: verify's default).
    """
    parts = ["mttune", "verify", data.storage, "--study", data.name, script[0]]
    parts += ["--trials", ",".join(str(n) for n in numbers), "--perturb", "0"]
    if repeats is not None:
        parts += ["--repeats", str(repeats)]
    if len(script) > 1:
        parts += ["--", *script[1:]]
    return shlex.join(parts)


def _promising(
    analysis: Analysis, script: Sequence[str], repeats: int | None
) -> list[dict[str, Any]]:
    """The promising single-run candidates, each with the command that measures it."""
    out = []
    for e in analysis.promising:
        d = estimate_dict(e, analysis)
        d["command"] = verify_command(analysis.data, [d["number"]], script=script, repeats=repeats)
        out.append(d)
    return out


def review_data(
    data: StudyData,
    *,
    top_k: int = 5,
    perturb: float = 0.05,
    seed: int = 0,
    script: Sequence[str] = ("SCRIPT",),
    repeats: int | None = None,
) -> Review:
    """Review a study already read (see :func:`build_review`).

    ``script`` (the training script and its arguments) and ``repeats`` complete the
    ``mttune verify`` commands the report suggests.
    """
    analysis = analyse(data, top_k=top_k, seed=seed)
    promising = _promising(analysis, script, repeats)
    fails = failures(data)
    rec = analysis.recommended
    best_obs = _best_observed(analysis)
    rob = robustness(analysis, rec, perturb) if rec is not None else None
    recommended = None
    if rec is not None:
        recommended = estimate_dict(rec, analysis, 1)
        recommended["method_text"] = describe_method(rec, analysis)
        recommended["level"] = analysis.level
    why = why_different(analysis, fmt)
    notes = _notes(analysis, fails)
    by_state = fails["by_state"]
    report = {
        "format": FORMAT,
        "study": data.name,
        "storage": data.storage,
        "direction": data.direction,
        "objective": data.objective,
        "trials": {
            "total": len(data),
            "search": sum(by_state.values()),
            "verification": sum(fails["verification"].values()),
            "complete": by_state.get("complete", 0),
        },
        "best_observed": best_obs,
        "recommended": recommended,
        "differs": why is not None,
        "why": why,
        "promising": promising,
        "verify_command": None
        if not promising
        else verify_command(
            data, [d["number"] for d in promising], script=script, repeats=repeats
        ),
        "confidence": _confidence(analysis),
        "robustness": robustness_dict(rob),
        "importance": importance(data, seed=seed),
        "convergence": convergence(data),
        "failures": fails,
        "prior": prior_diagnostics(data),
        "notes": notes,
    }
    return Review(jsonable(report), analysis, rob)


def _best_observed(analysis: Analysis) -> dict[str, Any] | None:
    """The best observed trial, and the estimate of its config."""
    i = analysis.best_observed_row
    if i is None:
        return None
    data = analysis.data
    return {
        "number": int(data.numbers[i]),
        "value": float(data.values[i]),
        "params": data.params[i],
        "estimate": None
        if analysis.best_observed is None
        else estimate_dict(analysis.best_observed, analysis),
    }


def _notes(analysis: Analysis, fails: dict[str, Any]) -> list[str]:
    """What the reader should know about the data and the method."""
    notes: list[str] = []
    gp = analysis.gp
    if gp is not None and gp.capped:
        notes.append(
            f"{gp.capped} trial value(s) worse than Q3 + 3 IQR were capped for the surrogate "
            "fit (diverged runs)."
        )
    if fails["non_finite"]:
        notes.append(
            f"{fails['non_finite']} completed trial(s) have a non-finite value and are left out."
        )
    if len(analysis.complete) and len(analysis.complete) < 5:
        notes.append("fewer than 5 completed trials: no noise estimate; run more trials.")
    for name, reason in analysis.codec.skipped.items():
        notes.append(f"parameter {name!r} is not modelled: {reason}")
    rec = analysis.recommended
    failed = _failed_repeats(analysis)
    if failed:
        notes.append(
            f"mttune verify re-ran the recommended config {failed} time(s) with fresh seeds "
            "and every run failed: its value does not reproduce. Read the failure reasons "
            "before using it."
        )
    if rec is not None and rec.method == "surrogate":
        notes.append(
            "the intervals come from a model of the study, not from repeated runs; "
            "'mttune verify' measures them."
        )
    widened = _widened_sentence(analysis)
    if widened is not None:
        notes.append(widened)
    return notes


def _widened_sentence(analysis: Analysis) -> str | None:
    """The sentence on how much the surrogate's intervals were widened, and why.

    ``None`` when they were not widened, or when no candidate shown has a surrogate interval.
    """
    cal = analysis.calibration
    shown = [analysis.recommended, *analysis.candidates[: analysis.top_k]]
    if cal is None or not cal.widened or not any(e and e.method == "surrogate" for e in shown):
        return None
    pct = f"{round(100 * cal.level)}%"
    return (
        f"the surrogate's {pct} intervals were widened {cal.factor:.2f}x: predicted from "
        f"the other runs, {pct} of the {cal.residuals} runs it conditions on fell within "
        f"{cal.quantile:.2f} predicted standard deviations, where the model expects "
        f"{cal.gaussian_quantile:.2f} (heavy-tailed noise or outliers do this)."
    )


def _failed_repeats(analysis: Analysis) -> int:
    """Failed verify repeats of the recommended config when none of them completed, else 0."""
    rec, data = analysis.recommended, analysis.data
    if rec is None or rec.group.repeat_rows:
        return 0
    numbers = set(rec.group.numbers(data))
    return sum(
        1
        for i in np.flatnonzero(data.states == "FAIL").tolist()
        if data.tags.get(i, {}).get("kind") == "repeat" and data.tags[i].get("of") in numbers
    )


def _confidence(analysis: Analysis) -> dict[str, Any]:
    """The confidence section: the method, the noise, the surrogate and the top-k."""
    rec = analysis.recommended
    gp = analysis.gp
    return {
        "level": analysis.level,
        "method": None if rec is None else describe_method(rec, analysis),
        "noise_sd": analysis.noise_sd,
        "noise_method": analysis.noise_method,
        "pooled_repeats": None
        if analysis.pooled_sd is None
        else {"sd": analysis.pooled_sd[0], "df": analysis.pooled_sd[1]},
        "surrogate": None
        if gp is None
        else {
            "kind": "gaussian-process",
            "description": gp.describe(),
            "noise_sd": gp.noise_sd,
            "lengthscales": dict(
                zip(analysis.codec.dim_names, gp.lengthscales.tolist(), strict=True)
            ),
            "n_fit": gp.n_fit,
            "n_posterior": gp.n_posterior,
            "calibration": None
            if analysis.calibration is None
            else analysis.calibration.to_dict(),
        },
        "top_k": [
            estimate_dict(e, analysis, r + 1)
            for r, e in enumerate(analysis.candidates[: analysis.top_k])
        ],
        "p_best_method": "Monte Carlo over the top-k candidates' posteriors "
        "(joint Gaussian-process draws, widened by the calibration factor; Student-t draws "
        "for repeated configs)",
    }
