"""Candidate generation and acquisition functions (targets: lower is better)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy import stats

from tuner._errors import MttuneError
from tuner.space import Encoder

__all__ = ["ACQUISITIONS", "candidates", "expected_improvement", "lower_confidence_bound"]


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """Expected improvement below ``best`` (larger is better)."""
    std = np.maximum(std, 1e-9)
    u = (best - mean) / std
    return (best - mean) * stats.norm.cdf(u) + std * stats.norm.pdf(u)


def lower_confidence_bound(
    mean: np.ndarray, std: np.ndarray, best: float, kappa: float = 1.5
) -> np.ndarray:
    """``-(mean - kappa * std)``: optimism under uncertainty (larger is better)."""
    return -(mean - kappa * std)


ACQUISITIONS: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "ei": expected_improvement,
    "lcb": lower_confidence_bound,
}


def candidates(
    encoder: Encoder,
    rng: np.random.Generator,
    *,
    n_random: int,
    portfolio: np.ndarray,
    incumbents: np.ndarray,
    fixed: Mapping[str, Any] | None = None,
    scales: tuple[float, ...] = (0.02, 0.06, 0.15),
    n_local: int = 24,
) -> np.ndarray:
    """Canonical candidate points: portfolio, uniform random, and local moves.

    Local candidates perturb each incumbent (best observed configs) with Gaussian noise of
    several scales in the unit cube. ``fixed`` parameters (from ``enqueue_trial``) are imposed
    on all of them, and every point is snapped to the encoding of the config it decodes to
    (parameters switched on by a fixed parent keep their random coordinates).
    """
    parts = [portfolio.reshape(-1, encoder.dim), rng.random((n_random, encoder.dim))]
    for x in np.asarray(incumbents).reshape(-1, encoder.dim):
        for s in scales:
            parts.append(np.clip(x + rng.normal(0.0, s, size=(n_local, encoder.dim)), 0, 1))
    raw = np.vstack(parts)
    if fixed:
        try:
            raw = encoder.fix(raw, fixed)
        except ValueError as e:
            raise MttuneError(f"enqueued parameters do not fit the prior's space: {e}") from None
    return encoder.canonicalize(raw)
