"""Held-out tasks for meta-training: who stops, who calibrates, who reports, and the check.

The tasks a prior does not train on are split by role, so that what the prior says about
itself is measured on tasks that chose nothing about it:

* ``early_stopping`` tasks pick the training step;
* ``assessment`` tasks fit the calibration and give the reported metrics, cross-fitted: the
  calibration fitted on one half of them is checked on the other half, and vice versa, and the
  reported metrics are those cross-fitted predictions. The shipped calibration is fitted on all
  assessment tasks.

With too few tasks for three disjoint roles (fewer than 5 at the defaults) the held-out tasks
serve both early stopping and assessment, and the split record says so (``degraded``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize, stats

from tuner.prior._config import MAMLConfig
from tuner.prior._prior import BUCKETS, Calibration, bucket_of

__all__ = ["TaskSplits", "assess", "fit_calibration", "split_tasks", "summarize"]

# Nominal coverage of the intervals the metrics report: name -> (z, level).
LEVELS = {"coverage_68": (1.0, 0.68), "coverage_95": (1.96, 0.95)}
MIN_TRAIN = 2


@dataclasses.dataclass(frozen=True)
class TaskSplits:
    """Task indices by role (disjoint unless ``shared``), and what was done.

    Attributes:
        train: Tasks meta-trained on.
        early_stopping: Tasks whose validation loss picks the training step.
        assessment: Tasks that fit the calibration and give the reported metrics.
        folds: ``assessment`` in two halves for cross-fitting (one fold: no cross-fit).
        shared: Whether ``early_stopping`` and ``assessment`` are the same tasks.
        note: What was done, in words (why, when degraded).
    """

    train: tuple[int, ...]
    early_stopping: tuple[int, ...]
    assessment: tuple[int, ...]
    folds: tuple[tuple[int, ...], ...]
    shared: bool
    note: str

    @property
    def degraded(self) -> bool:
        """Whether the reported metrics are not fully independent of the choices they judge."""
        return self.shared or len(self.folds) < 2

    def to_dict(self, names: Sequence[str], seed: int) -> dict[str, Any]:
        """The prior's ``splits`` record: the task names per role, counts, folds, the note."""

        def named(idx: Sequence[int]) -> list[str]:
            return [names[i] for i in idx]

        return {
            "scheme": "shared" if self.shared else "separate",
            "degraded": self.degraded,
            "note": self.note,
            "seed": seed,
            "counts": {
                "train": len(self.train),
                "early_stopping": len(self.early_stopping),
                "assessment": len(self.assessment),
            },
            "train": named(self.train),
            "early_stopping": named(self.early_stopping),
            "assessment": named(self.assessment),
            "calibration_folds": [named(f) for f in self.folds],
        }


def split_tasks(n_tasks: int, maml: MAMLConfig, seed: int) -> TaskSplits:
    """Split ``n_tasks`` task indices by role, deterministically given ``seed``.

    ``maml.val_tasks`` of the tasks (at least 1) stop early, ``maml.assess_tasks`` (at least 2)
    assess, the rest (at least 2) train. When that does not fit, 1 and 2 tasks; with fewer
    than 5 tasks, ``n_tasks - 2`` held-out tasks do both (stated in the note).
    """
    order = [int(i) for i in np.random.default_rng(seed).permutation(n_tasks)]
    n_stop = max(1, round(maml.val_tasks * n_tasks))
    n_assess = max(2, round(maml.assess_tasks * n_tasks))
    if n_tasks - n_stop - n_assess < MIN_TRAIN:
        n_stop, n_assess = 1, 2
    if n_tasks - n_stop - n_assess >= MIN_TRAIN:
        stop, assess = order[:n_stop], order[n_stop : n_stop + n_assess]
        train = order[n_stop + n_assess :]
        note = (
            f"{len(train)} tasks trained, {n_stop} stopped early, {n_assess} calibrated and "
            "reported (cross-fitted in two halves): the reported metrics are on tasks that "
            "neither trained nor stopped the prior, with a calibration not fitted on them"
        )
        return TaskSplits(*_sorted(train, stop, assess), _folds(assess), False, note)
    held = order[: max(1, n_tasks - MIN_TRAIN)]
    train = order[len(held) :]
    if len(held) >= 2:
        how = "the calibration is cross-fitted between them"
    else:
        how = "the calibration is fitted and checked on the same task"
    note = (
        f"only {n_tasks} tasks, too few to split three ways (5 needed): the {len(held)} "
        f"held-out task(s) serve early stopping, calibration and the reported metrics, and "
        f"{how}, so the reported metrics are optimistic; meta-train on more studies for "
        "honest figures"
    )
    return TaskSplits(*_sorted(train, held, held), _folds(held), True, note)


def _sorted(*groups: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(sorted(g)) for g in groups)


def _folds(assess: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """Two halves (in the seeded order), or one fold when there is a single task."""
    if len(assess) < 2:
        return (tuple(sorted(assess)),)
    half = (len(assess) + 1) // 2
    return (tuple(sorted(assess[:half])), tuple(sorted(assess[half:])))


def assess(
    results: list[dict[str, Any]], folds: Sequence[Sequence[int]]
) -> tuple[Calibration, dict[str, Any], dict[str, Any]]:
    """The calibration, the reported metrics and the calibration check, from ``results``.

    Args:
        results: :func:`~tuner.prior._train.evaluate_episodes` output on the assessment
            tasks (``task`` is the index the folds use).
        folds: The assessment tasks in halves (one fold: no cross-fit is possible).

    Returns:
        The calibration fitted on every result, the per-shot metrics (cross-fitted when there
        are two folds) and the ``calibration_check`` record.
    """
    calibration = fit_calibration(results)
    in_sample = _recalibrated(results, calibration)
    if len(folds) < 2:
        metrics = summarize(in_sample)
        check = _check_record(None, in_sample, metrics, [])
        return calibration, metrics, check
    crossed, per_fold = [], []
    for i, check_on in enumerate(folds):
        fitted_on = [t for j, f in enumerate(folds) if j != i for t in f]
        fit = fit_calibration([r for r in results if r["task"] in fitted_on])
        checked = _recalibrated([r for r in results if r["task"] in check_on], fit)
        crossed += checked
        per_fold.append(
            {"fit_tasks": len(fitted_on), "check_tasks": len(check_on), **_coverage(checked)}
        )
    metrics = summarize(crossed)
    return calibration, metrics, _check_record(crossed, in_sample, metrics, per_fold)


def _recalibrated(results: list[dict[str, Any]], cal: Calibration) -> list[dict[str, Any]]:
    """``results`` with the predictive std of calibration ``cal``."""
    return [{**r, "std": np.sqrt(cal.variance(r["var_ens"], r["k"]))} for r in results]


def _coverage(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled interval coverage over every query point of ``results``."""
    z = np.concatenate([np.abs(r["mean"] - r["t"]) / r["std"] for r in results])
    return {name: round(float(np.mean(z <= q)), 3) for name, (q, _) in LEVELS.items()} | {
        "points": int(z.size)
    }


def _check_record(
    crossed: list[dict[str, Any]] | None,
    in_sample: list[dict[str, Any]],
    metrics: dict[str, Any],
    per_fold: list[dict[str, Any]],
) -> dict[str, Any]:
    """The ``calibration_check``: held-out coverage next to nominal, in-sample and reported."""
    reported = {
        name: round(
            float(
                sum(m[name] * m["points"] for m in metrics.values())
                / sum(m["points"] for m in metrics.values())
            ),
            3,
        )
        for name in LEVELS
    }
    return {
        "nominal": {name: level for name, (_, level) in LEVELS.items()},
        "held_out": None if crossed is None else _coverage(crossed),
        "in_sample": _coverage(in_sample),
        "reported": reported,
        "folds": per_fold,
    }


def fit_calibration(results: list[dict[str, Any]]) -> Calibration:
    """Fit ``var = a * var_ens + b`` per support-size bucket by Gaussian likelihood."""
    a_all, b_all = [], []
    global_fit = _fit_ab(results)
    for i in range(len(BUCKETS)):
        sel = [r for r in results if bucket_of(r["k"]) == i]
        a, b = _fit_ab(sel) if sel else global_fit
        a_all.append(a)
        b_all.append(b)
    return Calibration(tuple(a_all), tuple(b_all))


def _fit_ab(results: list[dict[str, Any]]) -> tuple[float, float]:
    if not results:
        return 1.0, 0.1
    err2 = np.concatenate([(r["mean"] - r["t"]) ** 2 for r in results])
    var = np.concatenate([r["var_ens"] for r in results])

    def nll(theta: np.ndarray) -> float:
        a, b = np.exp(theta)
        v = a * var + b
        return float(np.mean(np.log(v) + err2 / v))

    res = optimize.minimize(
        nll, x0=np.log([1.0, 0.1]), method="L-BFGS-B", bounds=[(-9.0, 9.0), (-9.0, 5.0)]
    )
    a, b = np.exp(res.x)
    return float(a), float(b)


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics per support size: MSE, Kendall tau, NLL, interval coverage, query points."""
    out: dict[str, Any] = {}
    for k in sorted({r["k"] for r in results}):
        sel = [r for r in results if r["k"] == k]
        taus = []
        for r in sel:
            if len(r["t"]) >= 3 and np.ptp(r["mean"]) > 0:
                taus.append(stats.kendalltau(r["mean"], r["t"]).statistic)
        t = np.concatenate([r["t"] for r in sel])
        mean = np.concatenate([r["mean"] for r in sel])
        std = np.concatenate([r["std"] for r in sel])
        zscore = np.abs(mean - t) / std
        out[f"{k}-shot"] = {
            "episodes": len(sel),
            "points": int(t.size),
            "kendall_tau": round(float(np.nanmean(taus)), 4) if taus else None,
            "mse": round(float(np.mean((mean - t) ** 2)), 4),
            "nll": round(float(np.mean(0.5 * np.log(2 * np.pi * std**2) + 0.5 * zscore**2)), 4),
            "coverage_68": round(float(np.mean(zscore <= 1.0)), 3),
            "coverage_95": round(float(np.mean(zscore <= 1.96)), 3),
        }
    return out
