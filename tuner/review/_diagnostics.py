"""The descriptive sections of a review: importance, convergence, failures, the prior."""

from __future__ import annotations

import collections
import math
import warnings
from typing import Any

import numpy as np
import optuna
from optuna.trial import create_trial
from scipy import stats

from tuner.review._load import StudyData
from tuner.studies import StudyAttr, TrialAttr

__all__ = ["convergence", "failures", "importance", "prior_diagnostics", "search_rows"]

_IMPORTANCE_TRIALS = 200
_IMPORTANCE_TREES = 16
_HISTORY_POINTS = 2000
_TOP_REASONS = 5
_PRIOR_POINTS = 2000

SOURCE_ORDER = ("prior", "adapted-prior", "fallback")


def search_rows(data: StudyData) -> np.ndarray:
    """Indices of the trials made by the search (not by ``mttune verify``)."""
    return np.flatnonzero(~data.verification)


def _finite_complete(data: StudyData, rows: np.ndarray) -> np.ndarray:
    return rows[(data.states[rows] == "COMPLETE") & np.isfinite(data.values[rows])]


def importance(data: StudyData, seed: int = 0) -> dict[str, Any]:
    """Importance (fANOVA) of each hyperparameter (Optuna's evaluator) on the search trials.

    At most 200 trials are used (a random sample), which keeps it to about a second.
    Parameters missing from some trials (conditional) are not rated by fANOVA; they are listed.
    """
    rows = _finite_complete(data, search_rows(data))
    out: dict[str, Any] = {
        "method": f"fANOVA (optuna FanovaImportanceEvaluator, {_IMPORTANCE_TREES} trees)",
        "trials": 0,
        "values": {},
        "not_rated": {},
        "note": None,
    }
    if len(rows) < 3:
        out["note"] = f"{len(rows)} completed trial(s): too few to rate importance (need 3)."
        return out
    rng = np.random.default_rng(seed)
    if len(rows) > _IMPORTANCE_TRIALS:
        rows = np.sort(rng.choice(rows, _IMPORTANCE_TRIALS, replace=False))
    present = collections.Counter(k for i in rows for k in data.params[i])
    always = [k for k in data.distributions if present.get(k) == len(rows)]
    for k in data.distributions:
        if k not in always:
            out["not_rated"][k] = (
                f"set in {present.get(k, 0)} of {len(rows)} trials (conditional)"
                if present.get(k)
                else "not set in the trials rated"
            )
    if not always:
        out["note"] = "no hyperparameter is set in every trial; nothing to rate."
        return out
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line
    try:
        study = optuna.create_study(direction=data.direction)
    finally:
        optuna.logging.set_verbosity(verbosity)
    study.add_trials(
        [
            create_trial(
                params={k: data.params[i][k] for k in always},
                distributions={k: data.trial_distributions[i][k] for k in always},
                value=float(data.values[i]),
            )
            for i in rows
        ]
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(
                study,
                evaluator=optuna.importance.FanovaImportanceEvaluator(
                    n_trees=_IMPORTANCE_TREES, seed=seed
                ),
                params=always,
            )
    except (ValueError, RuntimeError) as e:
        out["note"] = f"importance not available: {e}"
        return out
    out["trials"] = len(rows)
    out["values"] = {k: float(v) for k, v in values.items() if math.isfinite(v)}
    return out


def convergence(data: StudyData) -> dict[str, Any]:
    """Best value against trial number for the search trials, and when it last improved."""
    rows = _finite_complete(data, search_rows(data))
    out: dict[str, Any] = {
        "trials": len(rows),
        "improvements": 0,
        "last_improvement": None,
        "trials_since_improvement": None,
        "points": [],
    }
    if not len(rows):
        return out
    y = data.sign * data.values[rows]
    best = np.minimum.accumulate(y)
    improved = np.flatnonzero(np.r_[True, best[1:] < best[:-1]])
    last = int(improved[-1])
    out["improvements"] = len(improved)
    out["last_improvement"] = {
        "number": int(data.numbers[rows[last]]),
        "value": float(data.values[rows[last]]),
    }
    out["trials_since_improvement"] = int(len(rows) - 1 - last)
    keep = np.arange(len(rows))
    if len(rows) > _HISTORY_POINTS:
        stride = np.arange(0, len(rows), math.ceil(len(rows) / _HISTORY_POINTS))
        keep = np.union1d(stride, improved)
    out["points"] = [
        [int(data.numbers[rows[j]]), float(data.values[rows[j]]), float(data.sign * best[j])]
        for j in keep
    ]
    return out


def failures(data: StudyData) -> dict[str, Any]:
    """Trial counts by state (search and verification apart) and the top failure reasons."""
    search = set(search_rows(data).tolist())
    by_state: dict[str, int] = collections.Counter()
    verification: dict[str, int] = collections.Counter()
    reasons: dict[str, list[int]] = {}
    nonfinite = 0
    for i in range(len(data)):
        state = str(data.states[i]).lower()
        attrs = data.attrs[i]
        if state == "fail" and TrialAttr.INTERRUPTED.get(attrs):
            state = "interrupted"
        if state == "complete" and not math.isfinite(data.values[i]):
            nonfinite += 1
        if i not in search:
            verification[state] += 1
            continue
        by_state[state] += 1
        if state == "fail":
            reason = TrialAttr.FAIL_REASON.get(attrs)
            reason = str(reason)[:300] if reason else "(no fail_reason recorded)"
            reasons.setdefault(reason, []).append(int(data.numbers[i]))
    top = sorted(reasons.items(), key=lambda kv: (-len(kv[1]), kv[1][0]))[:_TOP_REASONS]
    return {
        "by_state": dict(sorted(by_state.items())),
        "verification": dict(sorted(verification.items())),
        "non_finite": nonfinite,
        "top_reasons": [{"reason": r, "count": len(nums), "trials": nums[:5]} for r, nums in top],
        "distinct_reasons": len(reasons),
    }


def prior_diagnostics(data: StudyData) -> dict[str, Any] | None:
    """How the MetaPriorSampler's prior did on this study; ``None`` if it did not run it.

    The prior predicts in rank-based target units (lower is better, relative to the trials
    it was adapted to), so its predictions are compared with the observed values by rank
    correlation: Spearman's rho and Kendall's tau between the prediction and the
    direction-adjusted value (positive: the prior ordered the trials correctly).
    """
    rows = [i for i in range(len(data)) if TrialAttr.SOURCE.has(data.attrs[i])]
    info = StudyAttr.PRIOR.get(data.user_attrs)
    if not rows and info is None:
        return None
    idx = np.array(rows, dtype=np.int64)
    src = np.array([str(TrialAttr.SOURCE.get(data.attrs[i])) for i in rows], dtype=object)
    done = (data.states[idx] == "COMPLETE") & np.isfinite(data.values[idx])
    by_source = {}
    for name in sorted(set(src.tolist()), key=lambda s: (*SOURCE_ORDER, s).index(s)):
        mask = src == name
        vals = data.values[idx[mask & done]]
        by_source[name] = {
            "trials": int(mask.sum()),
            "complete": len(vals),
            "mean": float(vals.mean()) if len(vals) else None,
            "best": None if not len(vals) else float(vals.min() if data.sign > 0 else vals.max()),
        }
    pred_all = np.array(
        [_number_or_nan(TrialAttr.PRED_MEAN.get(data.attrs[i])) for i in rows], dtype=np.float64
    )
    scored = np.flatnonzero(done & np.isfinite(pred_all))
    pred = pred_all[scored]
    obs = data.sign * data.values[idx[scored]]
    corr: dict[str, Any] = {"n": len(scored), "spearman": None, "kendall": None}
    if len(scored) >= 3 and np.ptp(pred) > 0 and np.ptp(obs) > 0:
        corr["spearman"] = float(stats.spearmanr(pred, obs).statistic)
        corr["kendall"] = float(stats.kendalltau(pred, obs).statistic)
    shown = scored
    if len(scored) > _PRIOR_POINTS:  # the correlations use all; the plot a sample
        shown = np.sort(np.random.default_rng(0).choice(scored, _PRIOR_POINTS, replace=False))
    points = []
    for j in shown.tolist():
        i = rows[j]
        sd = TrialAttr.PRED_STD.get(data.attrs[i])
        points.append(
            {
                "number": int(data.numbers[i]),
                "pred_mean": float(pred_all[j]),
                "pred_std": float(sd) if isinstance(sd, int | float) else None,
                "value": float(data.values[i]),
                "source": str(src[j]),
            }
        )
    points_all = len(scored)
    guard = _guard(data, rows)
    conc = [
        float(c)
        for i in rows
        if isinstance(c := TrialAttr.CONCORDANCE.get(data.attrs[i]), int | float)
    ]
    return {
        "adaptation": _adaptation(data, rows),
        "sources": by_source,
        "proposed_by_prior": sum(
            e["trials"] for s, e in by_source.items() if s in ("prior", "adapted-prior")
        ),
        "fallback": by_source.get("fallback", {}).get("trials", 0),
        "poor_proposals": sum(TrialAttr.POOR.get(data.attrs[i]) is True for i in rows),
        "correlation": corr,
        "concordance": {"n": len(conc), "mean": float(np.mean(conc)) if conc else None},
        "guard": guard,
        "study_prior": info,
        "points": points,
        "points_total": points_all,
    }


def _adaptation(data: StudyData, rows: list[int]) -> dict[str, Any]:
    """What adapting to the study contributed: the adapted vs the zero-shot prior's concordance.

    On each trial with both recorded (prequential: both predicted it from the trials before
    it), the share of earlier trials it is ranked correctly against, 0.5 being chance.
    """
    pairs = [
        (float(a), float(z))
        for i in rows
        if isinstance(a := TrialAttr.CONCORDANCE.get(data.attrs[i]), int | float)
        and isinstance(z := TrialAttr.CONCORDANCE_ZERO_SHOT.get(data.attrs[i]), int | float)
    ]
    if not pairs:
        return {"n": 0, "adapted": None, "zero_shot": None}
    adapted, zero = np.mean(pairs, axis=0)
    return {"n": len(pairs), "adapted": float(adapted), "zero_shot": float(zero)}


def _number_or_nan(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return math.nan


def _guard(data: StudyData, rows: list[int]) -> dict[str, Any]:
    states = [
        (int(data.numbers[i]), g)
        for i in rows
        if isinstance(g := TrialAttr.GUARD.get(data.attrs[i]), dict)
    ]
    fired = [n for n, g in states if g.get("fired")]
    last = states[-1][1] if states else {}
    return {
        "fired": bool(fired),
        "fired_trials": len(fired),
        "first_fired": fired[0] if fired else None,
        "final": {
            "trust": last.get("trust"),
            "concordance": last.get("concordance"),
            "evidence": last.get("evidence"),
            "fired": last.get("fired"),
        }
        if last
        else None,
    }
