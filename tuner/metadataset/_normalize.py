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

The prior then sees targets *relative to the support set* (the trials it adapts to):
``t = z - mean(z_support)``, and ``t = z`` without support (zero-shot). ``z`` is already on
a unit scale, so only the level is relative: dividing by the support's spread would blow up
when a few support points happen to be close. Meta-training (episodes of support and query
points, :mod:`tuner.prior`) and tuning (a new study's trials, :func:`observation_targets`)
use the same :func:`relative_to_support`, so training and use agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
from scipy import special, stats

__all__ = ["observation_targets", "orient", "rank_normalize", "relative_to_support"]

_A = TypeVar("_A")


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
    return special.ndtri((ranks - 0.5) / v.size)  # stats.norm.ppf, without its overhead


def relative_to_support(z: _A, support: _A) -> _A:
    """Targets relative to the support set: ``z`` minus its mean over the support points.

    Element-wise arithmetic and sums only, so that NumPy arrays and torch tensors (also
    under ``torch.func.vmap``, in meta-training) take the same path.

    Args:
        z: Targets ``(..., N)``.
        support: 0/1 mask ``(..., N)`` of the support points (floats, like ``z``).

    Returns:
        ``z`` shifted by the support's mean; unchanged where there is no support point.
    """
    k = support.sum(-1)[..., None]
    total = (z * support).sum(-1)[..., None]
    # without support points, total is a sum of zeros: divide by 1 and shift by nothing
    return z - total / (k + (k == 0))


def observation_targets(values: Sequence[float], direction: str) -> np.ndarray:
    """Targets of a study's observed trials: rank-normalised within them, then relative to them.

    The map the prior was meta-trained with, every trial in the support set.
    """
    z = rank_normalize(np.asarray(values, dtype=np.float64), direction)
    return relative_to_support(z, np.ones_like(z))
