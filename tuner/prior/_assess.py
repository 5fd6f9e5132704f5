"""Held-out tasks for meta-training, and an honest account of what they say about the prior.

The tasks a prior does not train on (``val_tasks`` of them) pick the training step and fit
the calibration of the shipped prior, as they always have. Figures measured on those same
tasks would flatter it, so the metrics a prior reports are **cross-fitted**: the held-out
tasks are split in two halves; for each half, the training step is picked and the calibration
fitted on the *other* half, and the metrics are measured on this one. The reported figures
are thus those of the whole procedure (stop early, calibrate) on tasks that took no part in
it, while the shipped prior keeps every held-out task's evidence. ``calibration_check`` puts
the cross-fitted coverage next to the nominal level and to the in-sample coverage.

With a single held-out task no cross-fit is possible: the prior says so (``degraded``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import optimize, stats

from tuner.prior._config import MAMLConfig
from tuner.prior._prior import BUCKETS, Calibration, bucket_of

__all__ = ["TaskSplits", "cross_fit", "fit_calibration", "split_tasks", "summarize"]

# Nominal coverage of the intervals the metrics report: name -> (z, level).
LEVELS = {"coverage_68": (1.0, 0.68), "coverage_95": (1.96, 0.95)}


@dataclasses.dataclass(frozen=True)
class TaskSplits:
    """Task indices by role, and what was done.

    Attributes:
        train: Tasks meta-trained on.
        held_out: Tasks that stop the training and fit the shipped prior's calibration.
        folds: ``held_out`` in two halves for the cross-fitted metrics (one fold: none).
        note: What was done, in words (and why, when degraded).
    """

    train: tuple[int, ...]
    held_out: tuple[int, ...]
    folds: tuple[tuple[int, ...], ...]
    note: str

    @property
    def degraded(self) -> bool:
        """Whether the reported metrics are measured on the tasks that chose the prior."""
        return len(self.folds) < 2

    def to_dict(self, names: Sequence[str], seed: int) -> dict[str, Any]:
        """The prior's ``splits`` record: the task names per role, counts, folds, the note."""

        def named(idx: Sequence[int]) -> list[str]:
            return [names[i] for i in idx]

        return {
            "scheme": "single" if self.degraded else "cross-fitted",
            "degraded": self.degraded,
            "note": self.note,
            "seed": seed,
            "counts": {"train": len(self.train), "held_out": len(self.held_out)},
            "train": named(self.train),
            "held_out": named(self.held_out),
            "folds": [named(f) for f in self.folds],
        }


def split_tasks(n_tasks: int, maml: MAMLConfig, seed: int) -> TaskSplits:
    """Hold out ``maml.val_tasks`` of ``n_tasks`` (at least one), deterministically.

    The held-out tasks are the first of a permutation seeded by ``seed`` (the tasks held out
    before the cross-fit, so a prior trains on the same tasks as it did); the folds are the
    two halves of them in that order.
    """
    order = [int(i) for i in np.random.default_rng(seed).permutation(n_tasks)]
    n_held = max(1, round(maml.val_tasks * n_tasks))
    held, train = order[:n_held], order[n_held:]
    if n_held >= 2:
        half = (n_held + 1) // 2
        folds = (tuple(sorted(held[:half])), tuple(sorted(held[half:])))
        note = (
            f"{len(train)} tasks trained, {n_held} held out to stop the training and "
            "calibrate; the reported metrics are cross-fitted between two halves of them "
            f"({len(folds[0])} and {len(folds[1])}): on each half, with the training step "
            "and the calibration chosen on the other"
        )
    else:
        folds = (tuple(held),)
        note = (
            f"only {n_tasks} tasks: the 1 held-out task stops the training, fits the "
            "calibration and gives the reported metrics, so they are optimistic; "
            "meta-train on more studies (8 or more, with the default val_tasks) for "
            "cross-fitted figures"
        )
    return TaskSplits(tuple(sorted(train)), tuple(sorted(held)), folds, note)


def fold_losses(losses: Sequence[float], tasks: Sequence[int], folds) -> list[float]:
    """The mean of per-episode ``losses`` over each fold's episodes (``tasks``: their task)."""
    out = []
    for fold in folds:
        sel = [v for v, t in zip(losses, tasks, strict=True) if t in fold]
        out.append(float(np.mean(sel)) if sel else float("nan"))
    return out


def cross_fit(
    evaluate: Callable[[int, Sequence[int]], list[dict[str, Any]]],
    shipped: list[dict[str, Any]],
    folds: Sequence[Sequence[int]],
) -> tuple[Calibration, dict[str, Any], dict[str, Any]]:
    """The shipped calibration, the reported metrics and the calibration check.

    Args:
        evaluate: ``evaluate(j, tasks)``: :func:`~tuner.prior._train.evaluate_episodes` of
            the prior stopped by fold ``j`` on the episodes of ``tasks``.
        shipped: The shipped prior's results on every held-out episode.
        folds: The held-out tasks in halves (one fold: no cross-fit is possible).

    Returns:
        The calibration fitted on every held-out result, the per-shot metrics (cross-fitted
        with two folds, else in-sample) and the ``calibration_check`` record.
    """
    calibration = fit_calibration(shipped)
    in_sample = _recalibrated(shipped, calibration)
    if len(folds) < 2:
        metrics = summarize(in_sample)
        return calibration, metrics, _check_record(None, in_sample, metrics, [])
    crossed, per_fold = [], []
    for i, check_on in enumerate(folds):
        j = 1 - i  # the other half stops and calibrates
        fit = fit_calibration(evaluate(j, folds[j]))
        checked = _recalibrated(evaluate(j, check_on), fit)
        crossed += checked
        per_fold.append(
            {"fit_tasks": len(folds[j]), "check_tasks": len(check_on), **_coverage(checked)}
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
