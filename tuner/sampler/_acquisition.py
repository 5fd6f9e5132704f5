"""Candidate generation and acquisition functions (targets: lower is better).

An acquisition function scores candidates from the surrogate's predictive ``mean`` and
``std`` and the best target observed so far; the sampler takes the candidate with the
*largest* score. Any callable with that signature can be passed to
:class:`~tuner.sampler.MetaPriorSampler` as ``acquisition``: the built-ins are
:func:`expected_improvement` (``"ei"``, the default) and :class:`LowerConfidenceBound`
(``"lcb"``, with a settable ``kappa``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy import special

from tuner._errors import MttuneError
from tuner.space import Encoder

__all__ = [
    "ACQUISITIONS",
    "Acquisition",
    "LowerConfidenceBound",
    "candidates",
    "expected_improvement",
    "lower_confidence_bound",
    "resolve_acquisition",
]

_SQRT_2PI = np.sqrt(2 * np.pi)  # as scipy.stats.norm has it

Acquisition = Callable[[np.ndarray, np.ndarray, float], np.ndarray]
"""``(mean, std, best) -> score``: larger is better; targets are lower-better."""


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """Expected improvement below ``best`` (larger is better)."""
    std = np.maximum(std, 1e-9)
    u = (best - mean) / std
    # scipy.stats.norm's cdf and pdf, without its per-call overhead (the same values)
    return (best - mean) * special.ndtr(u) + std * (np.exp(-(u**2) / 2.0) / _SQRT_2PI)


def lower_confidence_bound(
    mean: np.ndarray, std: np.ndarray, best: float, kappa: float = 1.5
) -> np.ndarray:
    """``-(mean - kappa * std)``: optimism under uncertainty (larger is better)."""
    return -(mean - kappa * std)


@dataclasses.dataclass(frozen=True)
class LowerConfidenceBound:
    """The lower-confidence-bound acquisition with a chosen ``kappa``.

    Args:
        kappa: Standard deviations of optimism (larger explores more); must be >= 0.
    """

    kappa: float = 1.5

    def __post_init__(self) -> None:
        if not self.kappa >= 0.0:
            raise MttuneError(f"LowerConfidenceBound: kappa must be >= 0, got {self.kappa!r}.")

    def __call__(self, mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
        """Score candidates (larger is better)."""
        return lower_confidence_bound(mean, std, best, self.kappa)


ACQUISITIONS: dict[str, Acquisition] = {
    "ei": expected_improvement,
    "lcb": LowerConfidenceBound(),
}


def resolve_acquisition(acquisition: str | Acquisition) -> Acquisition:
    """The acquisition function a name (``"ei"``, ``"lcb"``) or a callable stands for.

    Raises:
        MttuneError: if ``acquisition`` is neither a known name nor callable.
    """
    if isinstance(acquisition, str):
        if acquisition not in ACQUISITIONS:
            raise MttuneError(
                f"acquisition must be one of {sorted(ACQUISITIONS)} or a callable "
                f"(mean, std, best) -> score, got {acquisition!r}."
            )
        return ACQUISITIONS[acquisition]
    if not callable(acquisition):
        raise MttuneError(
            "acquisition must be one of "
            f"{sorted(ACQUISITIONS)} or a callable (mean, std, best) -> score, got "
            f"{acquisition!r}."
        )
    return acquisition


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
    several scales in the unit cube. On a finite space of at most ``n_random`` configs,
    every config takes the place of the random ones (no more candidates, none left out).
    ``fixed`` parameters (from ``enqueue_trial``) are imposed on all of them, and every point
    is snapped to the encoding of the config it decodes to (parameters switched on by a fixed
    parent keep their random coordinates). A local move that snaps back onto its
    incumbent's config (smaller than a grid step) moves one grid step in one discrete
    parameter instead.
    """
    grid = encoder.grid(n_random) if n_random else None
    random = grid if grid is not None else rng.random((n_random, encoder.dim))
    parts = [portfolio.reshape(-1, encoder.dim), random]
    incumbents = np.asarray(incumbents).reshape(-1, encoder.dim)
    for x in incumbents:
        for s in scales:
            parts.append(np.clip(x + rng.normal(0.0, s, size=(n_local, encoder.dim)), 0, 1))
    raw = np.vstack(parts)
    head = len(raw) - len(incumbents) * len(scales) * n_local
    own = incumbents
    if fixed:
        try:
            raw, own = encoder.fix(raw, fixed), encoder.fix(own, fixed)
        except ValueError as e:
            raise MttuneError(f"enqueued parameters do not fit the prior's space: {e}") from None
    out = encoder.canonicalize(raw)
    if encoder.discrete and len(own):
        # each local move's incumbent, snapped (row by row: snap, then repeat)
        own = np.repeat(encoder.canonicalize(own), len(scales) * n_local, axis=0)
        stuck = head + np.flatnonzero(np.abs(out[head:] - own).max(axis=1) < 1e-9)
        if len(stuck):
            out[stuck] = encoder.step(out[stuck], rng, frozen=tuple(fixed or ()))
    return out
