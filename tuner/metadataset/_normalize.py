"""Per-task target normalisation.

Studies measure different metrics on different scales (a loss of 0.05 vs 2.3, accuracy in %
or in [0, 1]) and some maximise. Every model in mttune therefore sees a task's objective
through a *direction-aware Gaussian-copula (rank) transform*:

1. orient: ``v = value`` when minimising, ``v = -value`` when maximising (lower is better);
2. rank: average ranks ``r`` in ``1..n`` (ties share their mean rank);
3. ``z = Phi^-1((r - 0.5) / n)``, the standard-normal quantile of the mid-rank.

``z`` is lower-is-better, marginally ~N(0, 1) whatever the metric's scale, and bounded
(``|z| <= Phi^-1(1 - 0.5 / n)``), so a single diverged trial with a loss of 1e30 weighs no more
than any other worst trial. Only the order of the values matters, which is what tuning needs.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["orient", "rank_normalize"]


def orient(values: np.ndarray, direction: str) -> np.ndarray:
    """Values flipped so that lower is better (``direction`` is ``minimize``/``maximize``)."""
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    values = np.asarray(values, dtype=np.float64)
    return values if direction == "minimize" else -values


def rank_normalize(values: np.ndarray, direction: str = "minimize") -> np.ndarray:
    """The Gaussian-copula transform described in the module docstring.

    Args:
        values: Raw objective values of one task (finite).
        direction: The task's optimisation direction.

    Returns:
        ``z`` of the same shape, lower is better; an empty input gives an empty output.
    """
    v = orient(values, direction)
    if v.size == 0:
        return v.copy()
    if not np.all(np.isfinite(v)):
        raise ValueError("rank_normalize needs finite values")
    ranks = stats.rankdata(v, method="average")
    return stats.norm.ppf((ranks - 0.5) / v.size)
