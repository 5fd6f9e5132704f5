"""The sampler's numerical core: one proposal from observations, a prior and a seeded RNG.

Nothing here knows Optuna. Arrays go in (the study's finished trials, in the study's own
coordinates and in the prior's, and what else the study holds: running trials, pruned
configs, fixed values), a :class:`Proposal` comes out (the config, its prediction and why it
was chosen). Candidates are points of the study's space (:class:`~._mapping.StudyMapping`),
so every proposal is valid there; the prior sees them through the mapping.
:class:`~tuner.sampler.MetaPriorSampler` is the thin adapter that turns Optuna trials into
these arrays and the proposal into parameters, as ``GPSampler`` is over ``optuna._gp``.

The surrogate of a study is ``weight * adapted_prior(x) + g(x)``: the prior adapted to the
study's observations (MAML inner steps) and a GP ``g`` on what it leaves unexplained
(:class:`PriorGP`). Anything with ``predict(x) -> (mean, std)`` and an ``incumbent`` can
stand in for it (:class:`Surrogate`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from tuner.prior import AdaptedPrior, MetaPrior, diverse_top, observation_targets
from tuner.sampler._acquisition import Acquisition, candidates
from tuner.sampler._gp import GPParams, ResidualGP, fit_gp
from tuner.sampler._guard import concordance
from tuner.sampler._hedge import hedge_scores
from tuner.sampler._mapping import StudyMapping
from tuner.space import Encoder

__all__ = [
    "WHY_ACQUISITION",
    "WHY_HEDGE",
    "WHY_MEAN",
    "WHY_REPEAT",
    "WHY_ZERO_SHOT",
    "Observations",
    "PriorGP",
    "Proposal",
    "ProposalSettings",
    "StudyContext",
    "Surrogate",
    "TrialEvidence",
    "adapt_to",
    "build_surrogate",
    "distinct",
    "fit_gp_params",
    "portfolio_rows",
    "propose",
    "refit_point",
    "score_trial",
    "subset",
]

# Zero-shot proposals keep this RMS distance (unit cube) from the configs already taken.
_ZERO_SHOT_SPACING = 0.15
# Of a large portfolio, only the prior's zero-shot best configs are candidates.
_PORTFOLIO_CANDIDATES = 128
# A candidate closer than this to an evaluated config is a re-proposal.
_DUPLICATE_DISTANCE = 1e-3
# Acquisition proposals keep this distance from running trials and pending proposals.
_RUNNING_SPACING = 0.05
# A prior proposal worse than this quantile of the trials before it was a poor proposal.
_POOR_QUANTILE = 0.75
# The GP's hyperparameters are refitted when the number of observations reaches one of these
# (then reused until the next): cheap asks, and deterministic, since each fit depends only on
# the first ``n`` observations.
_GP_REFIT_AT = (2, 4, 6, 9, 13, 19, 28, 42, 63, 95, 142, 213)

WHY_ZERO_SHOT = "zero-shot"  # the prior's best guess, adapted to nothing
WHY_ACQUISITION = "acquisition"  # the best acquisition value under the surrogate
WHY_MEAN = "mean"  # no candidate had a finite acquisition value: the best predicted mean
WHY_REPEAT = "repeat"  # every candidate had been evaluated: the best predicted one again
WHY_HEDGE = "hedge"  # the portfolio config with the best expected value over past studies


@dataclasses.dataclass(frozen=True)
class Observations:
    """A study's finished trials, oldest first.

    Attributes:
        numbers: Trial numbers, one per row.
        x: Configs in the study's coordinates ``(n, D)`` (the GP's and the candidates').
        f: Configs in the prior's coordinates ``(n, F)`` (what the network sees).
        y: Values oriented so that lower is better; failed trials count as worse than every
            completed one.
        failed: Which rows failed.
    """

    numbers: tuple[int, ...]
    x: np.ndarray
    f: np.ndarray
    y: np.ndarray
    failed: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def first(self, n: int) -> Observations:
        """The first ``n`` observations."""
        return Observations(self.numbers[:n], self.x[:n], self.f[:n], self.y[:n], self.failed[:n])


@dataclasses.dataclass(frozen=True)
class ProposalSettings:
    """How a proposal is searched for.

    Attributes:
        n_candidates: Uniform random candidates per proposal (plus portfolio and local moves).
        portfolio_trials: While the study has fewer trials, candidates are the portfolio only.
        max_observations: Observations the surrogate uses at most.
        acquisition: Scores candidates (see :mod:`tuner.sampler._acquisition`).
        hedge_trials: The first trials (at most ``portfolio_trials``) are chosen by the
            expected value over the past studies (:mod:`tuner.sampler._hedge`) instead of
            the acquisition, where the prior has coverage; 0: none.
    """

    n_candidates: int
    portfolio_trials: int
    max_observations: int
    acquisition: Acquisition
    hedge_trials: int = 0


@dataclasses.dataclass(frozen=True)
class StudyContext:
    """What the study holds besides its observations.

    Attributes:
        fixed: Values every candidate takes (enqueued or pinned parameters).
        others: Encoded configs of running trials and pending proposals.
        pruned: Encoded configs of pruned trials (not observations, but not worth repeating).
        used_rows: Portfolio rows already proposed in the study.
        observed_rows: The portfolio row of each observation, ``-1`` where it is none
            (empty: unknown, no hedging).
    """

    fixed: Mapping[str, Any]
    others: np.ndarray
    pruned: np.ndarray
    used_rows: np.ndarray
    observed_rows: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )


@dataclasses.dataclass(frozen=True)
class Proposal:
    """The config the core proposes, with the prediction it was chosen on.

    Attributes:
        config: The config (the study's covered parameters).
        mean: Its predicted target (lower is better, in the prior's target units).
        std: The prediction's standard deviation.
        portfolio_row: Its row in the prior's portfolio, if it is a portfolio config.
        why: :data:`WHY_ZERO_SHOT`, :data:`WHY_ACQUISITION`, :data:`WHY_HEDGE`,
            :data:`WHY_MEAN` or :data:`WHY_REPEAT`.
        adapted: The prior as adapted for this proposal (reused to score the trial).
    """

    config: dict[str, Any]
    mean: float
    std: float
    portfolio_row: int | None
    why: str
    adapted: AdaptedPrior


class Surrogate(Protocol):
    """A model of the study's targets: predictions and the best target seen."""

    adapted: AdaptedPrior
    incumbent: float

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and standard deviation at encoded configs ``x``."""
        ...


@dataclasses.dataclass
class PriorGP:
    """The study's surrogate: ``weight * adapted_prior(x) + g(x)``, ``g`` a GP on residuals.

    ``weight`` is the guard's trust: a prior that mispredicts the study is shrunk towards an
    uninformative constant mean, and the model becomes a plain GP. The GP works in the
    study's coordinates, the prior in its own (through ``mapping``).
    """

    adapted: AdaptedPrior
    gp: ResidualGP | None
    incumbent: float
    mapping: StudyMapping
    weight: float = 1.0

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and standard deviation: the prior's and the GP's, combined."""
        f, extra = self.mapping.to_prior(x)
        pred = self.adapted.predict(f)
        if self.gp is None:
            return pred.mean, np.sqrt(pred.std**2 + extra)
        gm, gv = self.gp.predict(x)
        cal = self.adapted.prior.calibration
        i = cal.bucket(self.adapted.k)
        ens_var = (cal.a[i] * pred.members.var(axis=0) + extra) * self.weight**2
        return self.weight * pred.mean + gm, np.sqrt(gv + ens_var)


# ---------------------------------------------------------------------- the surrogate
def subset(obs: Observations, max_observations: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the observations used: all, or the best half and a random rest."""
    idx = np.arange(len(obs.y))
    if len(idx) <= max_observations:
        return idx
    half = max_observations // 2
    best = np.argsort(obs.y, kind="stable")[:half]
    rest = rng.choice(np.setdiff1d(idx, best), max_observations - half, replace=False)
    return np.sort(np.concatenate([best, rest]))


def _adapt(
    prior: MetaPrior, obs: Observations, idx: np.ndarray
) -> tuple[AdaptedPrior, np.ndarray]:
    """The prior adapted to the observations ``idx``, and their targets."""
    t = observation_targets(obs.y[idx], "minimize")  # obs.y is already oriented
    # failures all share the worst rank; give each the worst target, not their mid-rank
    t = np.where(obs.failed[idx], t.max(initial=0.0), t)
    return prior.adapt(obs.f[idx], t), t


def refit_point(n: int) -> int:
    """The number of observations the GP hyperparameters are fitted on at ``n``."""
    if n >= _GP_REFIT_AT[-1]:
        return _GP_REFIT_AT[-1] + (n - _GP_REFIT_AT[-1]) // 100 * 100
    return max(b for b in _GP_REFIT_AT if b <= n)


def fit_gp_params(prior: MetaPrior, first: Observations, max_observations: int) -> GPParams:
    """GP hyperparameters for the residuals of the prior adapted to ``first``.

    Deterministic in ``first``: the subset of a large ``first`` is drawn with its size as
    the seed, so a cache keyed by the observations is exact.
    """
    idx = subset(first, max_observations, np.random.default_rng(len(first)))
    adapted, t = _adapt(prior, first, idx)
    residual = t - adapted.predict(first.f[idx]).mean
    cal = prior.calibration
    amplitude = cal.b[cal.bucket(len(idx))]
    return fit_gp(first.x[idx], residual, amplitude=amplitude)


def build_surrogate(
    prior: MetaPrior,
    mapping: StudyMapping,
    obs: Observations,
    rng: np.random.Generator,
    *,
    weight: float,
    max_observations: int,
    gp_params: Callable[[Observations], GPParams],
    residual_gp: bool = True,
) -> PriorGP:
    """The prior adapted to ``obs`` plus a residual GP (from two observations on).

    Args:
        prior: The prior.
        mapping: The study's space and its map onto the prior.
        obs: The study's observations (at least one).
        rng: Draws the subset of a large study.
        weight: How much of the adapted prior's mean is kept (the guard's trust).
        max_observations: Observations used at most.
        gp_params: The GP hyperparameters for the observations (the caller caches
            :func:`fit_gp_params` of ``obs.first(refit_point(len(obs)))``).
        residual_gp: ``False`` leaves the GP out: the surrogate is the adapted prior alone
            (its calibrated spread is the uncertainty).
    """
    idx = subset(obs, max_observations, rng)
    adapted, t = _adapt(prior, obs, idx)
    gp = None
    if residual_gp and len(idx) >= _GP_REFIT_AT[0]:
        residual = t - weight * adapted.predict(obs.f[idx]).mean
        gp = ResidualGP(obs.x[idx], residual, gp_params(obs))
    return PriorGP(adapted, gp, float(t.min()), mapping, weight)


def portfolio_rows(prior: MetaPrior) -> np.ndarray:
    """Rows of the source studies' best configs the sampler considers: the zero-shot best 128."""
    configs = prior.portfolio
    rows = np.arange(len(configs))
    if len(configs) > _PORTFOLIO_CANDIDATES:
        mean = prior.adapt().predict(configs).mean
        rows = np.argsort(mean, kind="stable")[:_PORTFOLIO_CANDIDATES]
    return rows


# ---------------------------------------------------------------------- the proposal
def propose(
    prior: MetaPrior,
    mapping: StudyMapping,
    obs: Observations,
    context: StudyContext,
    settings: ProposalSettings,
    rng: np.random.Generator,
    *,
    surrogate: Surrogate | None,
    portfolio_configs: tuple[np.ndarray, np.ndarray],
) -> Proposal:
    """The next config to evaluate.

    With no ``surrogate`` the proposal is zero-shot: the prior's best predicted candidate,
    kept apart from the configs already taken. Otherwise it is the candidate with the best
    acquisition value, away from running trials. While the study has fewer than
    ``settings.portfolio_trials`` trials, candidates are the portfolio's configs (proven
    configs first), unless none is left. ``portfolio_configs`` are the portfolio as points
    of the study's space, with their rows (:meth:`StudyMapping.portfolio`).
    """
    encoder = mapping.encoder
    incumbents = obs.x[np.argsort(obs.y, kind="stable")[:3]]
    started = len(obs.y) + len(context.others)
    early = started < settings.portfolio_trials
    configs, rows = portfolio_configs
    used = np.isin(rows, context.used_rows)
    taken = np.vstack([obs.x, context.others, context.pruned])
    restricted = False
    for restricted in (True, False) if early else (False,):
        cands = candidates(
            encoder,
            rng,
            n_random=0 if restricted else settings.n_candidates,
            portfolio=configs,
            incumbents=incumbents[:0] if restricted else incumbents,
            fixed=context.fixed,
        )
        fresh = _min_distance(cands, taken) >= _DUPLICATE_DISTANCE
        fresh[: len(configs)] &= ~used
        if fresh.any():
            break
    if surrogate is None:
        adapted = prior.adapt()
        idx, mean, std, why = _zero_shot_pick(adapted, mapping, cands, fresh, taken)
    else:
        adapted = surrogate.adapted
        idx, mean, std, why = _acquisition_pick(surrogate, settings, cands, fresh, context)
    hedging = restricted and fresh.any() and len(context.observed_rows) == len(obs)
    if hedging and started < settings.hedge_trials and prior.coverage is not None:
        idx, why = _hedge_pick(prior.coverage.values, rows, fresh, obs, context), WHY_HEDGE
    return Proposal(
        config=encoder.decode(cands[idx]),
        mean=float(mean[idx]),
        std=float(std[idx]),
        portfolio_row=int(rows[idx]) if idx < len(configs) else None,
        why=why,
        adapted=adapted,
    )


def _zero_shot_pick(
    adapted: AdaptedPrior,
    mapping: StudyMapping,
    cands: np.ndarray,
    fresh: np.ndarray,
    taken: np.ndarray,
) -> tuple[int, np.ndarray, np.ndarray, str]:
    f, extra = mapping.to_prior(cands)
    pred = adapted.predict(f)
    std = np.sqrt(pred.std**2 + extra)
    if not fresh.any():  # every candidate has been evaluated: repeat the best predicted
        return int(np.argmin(pred.mean)), pred.mean, std, WHY_REPEAT
    idx = diverse_top(
        cands,
        np.where(fresh, pred.mean, np.inf),
        1,
        _ZERO_SHOT_SPACING,
        taken=taken if len(taken) else None,
    )[0]
    return idx, pred.mean, std, WHY_ZERO_SHOT


def _hedge_pick(
    coverage: np.ndarray,
    rows: np.ndarray,
    fresh: np.ndarray,
    obs: Observations,
    context: StudyContext,
) -> int:
    """The fresh portfolio candidate with the best hedged score (candidates = ``rows``)."""
    seen = context.observed_rows >= 0
    tried = context.observed_rows[seen]
    pending = np.setdiff1d(context.used_rows, tried)
    scores = hedge_scores(coverage[rows], coverage[tried], obs.y[seen], coverage[pending])
    return int(np.argmin(np.where(fresh, scores, np.inf)))


def _acquisition_pick(
    surrogate: Surrogate,
    settings: ProposalSettings,
    cands: np.ndarray,
    fresh: np.ndarray,
    context: StudyContext,
) -> tuple[int, np.ndarray, np.ndarray, str]:
    mean, std = surrogate.predict(cands)
    score = settings.acquisition(mean, std, surrogate.incumbent)
    score = np.where(fresh, score, -np.inf)
    score = np.where(_min_distance(cands, context.others) < _RUNNING_SPACING, -np.inf, score)
    why = WHY_ACQUISITION
    if not np.isfinite(score).any():
        score = np.where(fresh, -mean, -np.inf)
        why = WHY_MEAN
    if not fresh.any():  # every candidate has been evaluated: repeat the best predicted
        score, why = -mean, WHY_REPEAT
    return int(np.argmax(score)), mean, std, why


def distinct(
    encoder: Encoder,
    x: np.ndarray,
    taken: np.ndarray,
    rng: np.random.Generator,
    *,
    n_candidates: int,
    fixed: Mapping[str, Any],
) -> np.ndarray | None:
    """A canonical config ``x`` (another sampler's), moved off the configs already ``taken``.

    ``x`` itself when nothing taken is at it; else the nearest config none is at, among
    every config of a small finite space, or random ones and grid steps around ``x``
    (ties drawn at random); ``None`` when every candidate is taken.
    """
    if _min_distance(x[None], taken)[0] >= _DUPLICATE_DISTANCE:
        return x
    cands = candidates(
        encoder,
        rng,
        n_random=n_candidates,
        portfolio=np.zeros((0, encoder.dim)),
        incumbents=x[None],
        fixed=fixed,
    )
    cands = cands[_min_distance(cands, taken) >= _DUPLICATE_DISTANCE]
    if not len(cands):
        return None
    d = _min_distance(cands, x[None])
    nearest = np.flatnonzero(d <= d.min() + 1e-12)
    return cands[nearest[int(rng.integers(len(nearest)))]]


def _min_distance(cands: np.ndarray, points: np.ndarray) -> np.ndarray:
    """RMS distance of each candidate to its nearest point (``inf`` without points)."""
    if len(points) == 0:
        return np.full(len(cands), np.inf)
    d2 = (cands**2).sum(1)[:, None] + (points**2).sum(1)[None, :]
    d2 -= 2 * cands @ points.T  # in place: the same values, one new array less
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0) / cands.shape[1])


# ---------------------------------------------------------------------- evidence
@dataclasses.dataclass(frozen=True)
class TrialEvidence:
    """What a finished trial tells about the prior (prequential: predicted before it ran).

    Attributes:
        pred_mean: The adapted prior's prediction for the trial.
        pred_std: Its standard deviation.
        concordance: Share of earlier trials it ranks the new one correctly against.
        poor: Whether the trial landed among the worst quarter of the trials before it.
    """

    pred_mean: float
    pred_std: float
    concordance: float | None
    poor: bool


def score_trial(
    adapted: AdaptedPrior, f_new: np.ndarray, y_new: float, obs: Observations
) -> TrialEvidence:
    """Score a finished trial (prior coordinates, ``y_new`` oriented) against the earlier."""
    pred = adapted.predict(np.vstack([f_new.reshape(1, -1), obs.f]))
    c = concordance(pred.mean[0], y_new, pred.mean[1:], obs.y)
    poor = bool(y_new > float(np.quantile(obs.y, _POOR_QUANTILE)))
    return TrialEvidence(float(pred.mean[0]), float(pred.std[0]), c, poor)


def adapt_to(
    prior: MetaPrior, obs: Observations, max_observations: int, rng: np.random.Generator
) -> AdaptedPrior:
    """The prior adapted to (a subset of) the observations."""
    return _adapt(prior, obs, subset(obs, max_observations, rng))[0]
