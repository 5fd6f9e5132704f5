"""Calibration of the surrogate's intervals against the study's own runs (leave-one-out).

The surrogate's intervals assume Gaussian noise. Whether the study's runs agree is checked
on the runs themselves: each conditioning run ``y_i`` is predicted from all the others
(same hyperparameters, closed form: :meth:`tuner._gp.GPPosterior.loo_residuals`), and its
standardised residual ``|r_i| / sd_i`` is a score that the model says is ``|N(0, 1)|``.
The jackknife (leave-one-out) conformal quantile of the ``n`` scores at ``level`` (the
``ceil((n + 1) * level)``-th smallest; the largest when there are fewer than
``level / (1 - level) - 1`` scores) is compared with the Gaussian quantile ``z_level``; when
it is larger, the intervals are widened by the ratio. They are never narrowed: a model that
predicts its own runs better than it claims keeps its intervals.

Pure NumPy/SciPy over a :class:`~tuner._gp.GPPosterior`: no other part of review is needed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats

from tuner._gp import GPPosterior, single_threaded

__all__ = ["Calibration", "calibrate", "conformal_factor", "normal_quantile"]


@dataclasses.dataclass(frozen=True)
class Calibration:
    """How much the surrogate's intervals are widened, and the evidence for it.

    Attributes:
        factor: The intervals' half-widths are multiplied by this (>= 1).
        residuals: Leave-one-out residuals (conditioning runs) the check rests on.
        level: The intervals' coverage the check is at.
        quantile: The conformal ``level``-quantile of the standardised residuals.
        gaussian_quantile: What the model expects of it: ``z_level``.
    """

    factor: float
    residuals: int
    level: float
    quantile: float
    gaussian_quantile: float

    @property
    def widened(self) -> bool:
        """Whether the intervals are wider than the model's own."""
        return self.factor > 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``confidence.surrogate.calibration`` of the review)."""
        return {
            "factor": self.factor,
            "residuals": self.residuals,
            "level": self.level,
            "widened": self.widened,
            "quantile": self.quantile,
            "gaussian_quantile": self.gaussian_quantile,
        }


def normal_quantile(level: float) -> float:
    """The two-sided standard normal quantile of ``level``: 1.96 at 0.95."""
    return float(stats.norm.ppf(0.5 + level / 2))


def conformal_factor(scores: np.ndarray, *, level: float) -> Calibration:
    """The widening factor of ``level`` intervals from standardised residuals ``scores``.

    Args:
        scores: ``|r_i| / sd_i`` of each run, ``(n,)``, ``n >= 1``, finite.
        level: Coverage of the intervals, in ``(0, 1)``.

    Returns:
        The calibration: ``factor = max(1, quantile / z_level)``.

    Raises:
        ValueError: ``level`` outside ``(0, 1)``, no scores, or a score that is negative or
            not finite.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("calibration needs at least one residual, got none")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        bad = float(s[~np.isfinite(s) | (s < 0)][0])
        raise ValueError(f"standardised residuals must be finite and >= 0, got {bad!r}")
    n = s.size
    rank = min(math.ceil((n + 1) * level), n)  # 1-based rank of the conformal quantile
    quantile = float(np.partition(s, rank - 1)[rank - 1])
    z = normal_quantile(level)
    return Calibration(
        factor=max(1.0, quantile / z),
        residuals=n,
        level=level,
        quantile=quantile,
        gaussian_quantile=z,
    )


@single_threaded
def calibrate(process: GPPosterior, *, level: float) -> Calibration:
    """Check ``level`` intervals of a fitted GP against its leave-one-out residuals.

    Args:
        process: The posterior (its conditioning runs are the evidence).
        level: Coverage of the intervals, in ``(0, 1)``.

    Returns:
        The calibration (see :func:`conformal_factor` and the module docstring).
    """
    residual, var = process.loo_residuals()
    return conformal_factor(np.abs(residual) / np.sqrt(var), level=level)
