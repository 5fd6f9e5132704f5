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
    n_local: int = 64,
) -> np.ndarray:
    """Canonical candidate points: portfolio, uniform random, and local moves.

    Local candidates perturb each incumbent (best observed configs) with Gaussian noise of
    several scales in the unit cube. Every point is snapped to the encoding of the config it
    decodes to; ``fixed`` parameters (from ``enqueue_trial``) are imposed on all of them.
    """
    parts = [portfolio.reshape(-1, encoder.dim), rng.random((n_random, encoder.dim))]
    for x in np.asarray(incumbents).reshape(-1, encoder.dim):
        for s in scales:
            parts.append(np.clip(x + rng.normal(0.0, s, size=(n_local, encoder.dim)), 0, 1))
    raw = np.vstack(parts)
    configs = encoder.decode_many(raw)
    if fixed:
        for c in configs:
            c.update(fixed)
        active_sets = [encoder.space.active_params(c) for c in configs]
        configs = [
            {k: c[k] for k in a if k in c} for c, a in zip(configs, active_sets, strict=True)
        ]
        configs = _fill_missing(encoder, configs, rng)
    try:
        return encoder.encode_many(configs)
    except ValueError as e:
        raise MttuneError(f"enqueued parameters do not fit the prior's space: {e}") from None


def _fill_missing(encoder: Encoder, configs: list[dict], rng: np.random.Generator) -> list[dict]:
    """Give params switched on by a fixed parent a random value."""
    for c in configs:
        for _ in range(len(encoder.space)):  # a filled parent can switch on more children
            missing = [n for n in encoder.space.active_params(c) if n not in c]
            if not missing:
                break
            for name in missing:
                c[name] = encoder.random_value(name, rng)
    return configs
