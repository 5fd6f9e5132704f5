"""Hedging the first trials across past studies (pure NumPy, no Optuna).

Before a study's own trials say which past studies it resembles, the best bet is the
portfolio config that does well on the past studies *together*: the first trial takes the
config with the best mean estimated target over them (what a greedy zero-shot portfolio gets
right), and each later trial the config that most lowers the expected best target so far,
the expectation taken over the past studies weighted by how well each orders the study's
own trials. The coverage table (:class:`tuner.prior.PortfolioCoverage`) holds the estimates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tuner.prior import MEASURED_STRATEGIES

if TYPE_CHECKING:
    from tuner.prior import MetaPrior

__all__ = [
    "EARLY_STRATEGIES",
    "hedge_scores",
    "hedged_trials",
    "resolve_early_strategy",
    "study_weights",
]

EARLY_STRATEGIES = ("auto", *MEASURED_STRATEGIES)

# How often a past study that resembles the new one orders a pair of its trials the same
# way: each concordant pair multiplies the study's weight by (1 - e) / e.
_PAIR_ERROR = 0.3


def study_weights(tried: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weights over past studies from how each orders the study's trials.

    Args:
        tried: ``(n, S)`` coverage rows of the study's evaluated portfolio configs.
        y: ``(n,)`` their observed values, lower is better.

    Returns:
        ``(S,)`` weights summing to 1; uniform with fewer than two trials. A pair tied in
        either ``y`` or a study's estimates says nothing about that study.
    """
    n_studies = tried.shape[1]
    if len(y) < 2:
        return np.full(n_studies, 1.0 / n_studies)
    i, j = np.triu_indices(len(y), k=1)
    agree = np.sign(y[i] - y[j])[:, None] * np.sign(tried[i] - tried[j])  # (pairs, S)
    log_w = np.log((1 - _PAIR_ERROR) / _PAIR_ERROR) * agree.sum(0) / 2
    w = np.exp(log_w - log_w.max())
    return w / w.sum()


def hedge_scores(
    coverage: np.ndarray,
    tried: np.ndarray,
    y: np.ndarray,
    pending: np.ndarray | None = None,
) -> np.ndarray:
    """The expected best target after adding each portfolio config (lower is better).

    Args:
        coverage: ``(C, S)`` coverage rows of the candidate configs.
        tried: ``(n, S)`` coverage rows of the evaluated portfolio configs.
        y: ``(n,)`` their observed values, lower is better (only their order matters).
        pending: ``(m, S)`` coverage rows of configs proposed but not yet evaluated: they
            count toward the best so far, not toward the weights.

    Returns:
        ``(C,)`` scores: with nothing tried, each candidate's mean over the past studies.
    """
    w = study_weights(tried, y)
    taken = tried if pending is None else np.vstack([tried, pending])
    best = taken.min(axis=0) if len(taken) else np.full(coverage.shape[1], np.inf)
    return np.minimum(coverage, best[None, :]) @ w


def hedged_trials(strategy: str, portfolio_trials: int) -> int:
    """How many first trials ``strategy`` (one of :data:`MEASURED_STRATEGIES`) hedges.

    ``"model"``: none; ``"hedge-k"``: the first ``k``, then the model chooses the rest of the
    ``portfolio_trials``; ``"hedge"``: all of them.
    """
    if strategy == "model":
        return 0
    if strategy == "hedge":
        return portfolio_trials
    return min(int(strategy.removeprefix("hedge-")), portfolio_trials)


def resolve_early_strategy(strategy: str, prior: MetaPrior) -> str:
    """One of :data:`MEASURED_STRATEGIES` for ``strategy`` (one of :data:`EARLY_STRATEGIES`).

    ``"auto"`` takes the choice meta-training measured (``prior.info["early_strategy"]``),
    else ``"model"``.

    Raises:
        ValueError: for an unknown strategy, or a hedging one with a prior without coverage.
    """
    if strategy not in EARLY_STRATEGIES:
        raise ValueError(f"early_strategy must be one of {EARLY_STRATEGIES}, got {strategy!r}")
    if strategy == "auto":
        measured = prior.info.get("early_strategy")
        choice = measured.get("choice") if isinstance(measured, dict) else None
        hedged = choice in MEASURED_STRATEGIES and prior.coverage is not None
        return choice if hedged else "model"
    if strategy != "model" and prior.coverage is None:
        raise ValueError(
            f"early_strategy={strategy!r} needs a prior that records its portfolio's coverage of "
            "the past studies; this one does not (meta-trained by an older mttune). "
            "Meta-train it again, or use early_strategy='model'."
        )
    return strategy
