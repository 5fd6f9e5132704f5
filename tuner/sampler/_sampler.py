"""``MetaPriorSampler``: an Optuna sampler driven by a meta-learned prior."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState
from threadpoolctl import ThreadpoolController

from tuner._errors import MttuneError
from tuner.prior import AdaptedPrior, MetaPrior, diverse_top, load_prior, observation_targets
from tuner.sampler._acquisition import ACQUISITIONS, candidates
from tuner.sampler._gp import GPParams, ResidualGP, fit_gp
from tuner.sampler._guard import GuardState, NegativeTransferGuard, concordance
from tuner.space import SearchSpace
from tuner.studies import TrialAttr

__all__ = ["MetaPriorSampler"]

_logger = logging.getLogger(__name__)


SOURCE_ZERO_SHOT = "prior"
SOURCE_ADAPTED = "adapted-prior"
SOURCE_FALLBACK = "fallback"

# The models are small: multi-threaded BLAS only adds overhead (5x under load), so the
# sampler's numerics run single-threaded.
_BLAS = ThreadpoolController()

_ZERO_SHOT_SPACING = 0.15
_PORTFOLIO_CANDIDATES = 128
_DUPLICATE_DISTANCE = 1e-3
_RUNNING_SPACING = 0.05
# A prior proposal worse than this quantile of the trials before it was a poor proposal.
_POOR_QUANTILE = 0.75


@dataclasses.dataclass(frozen=True)
class _Decision:
    source: str
    guard: GuardState
    startup: bool = False  # a fallback trial sampled uniformly at random


@dataclasses.dataclass
class _Observations:
    numbers: tuple[int, ...]
    x: np.ndarray
    y: np.ndarray  # oriented: lower is better
    failed: np.ndarray  # failed trials: as bad as the worst observation
    trials: tuple[FrozenTrial, ...] = ()  # per row (for what only proposals need)
    pruned: tuple[FrozenTrial, ...] = ()  # pruned trials in the prior's space (not rows)


# The GP's hyperparameters are refitted when the number of observations reaches one of these
# (then reused until the next): cheap asks, and deterministic, since each fit depends only on
# the first ``n`` observations.
_GP_REFIT_AT = (2, 4, 6, 9, 13, 19, 28, 42, 63, 95, 142, 213)


def _refit_point(n: int) -> int:
    if n >= _GP_REFIT_AT[-1]:
        return _GP_REFIT_AT[-1] + (n - _GP_REFIT_AT[-1]) // 100 * 100
    return max(b for b in _GP_REFIT_AT if b <= n)


@dataclasses.dataclass
class _Model:
    """The study's surrogate: ``weight * adapted_prior(x) + g(x)``, ``g`` a GP on residuals.

    ``weight`` is the guard's trust: a prior that mispredicts the study is shrunk towards an
    uninformative constant mean, and the model becomes a plain GP.
    """

    adapted: AdaptedPrior
    gp: ResidualGP | None
    incumbent: float
    weight: float = 1.0

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pred = self.adapted.predict(x)
        if self.gp is None:
            return pred.mean, pred.std
        gm, gv = self.gp.predict(x)
        cal = self.adapted.prior.calibration
        i = cal.bucket(self.adapted.k)
        ens_var = cal.a[i] * pred.members.var(axis=0) * self.weight**2
        return self.weight * pred.mean + gm, np.sqrt(gv + ens_var)


class MetaPriorSampler(BaseSampler):
    """Sample from a meta-learned prior, adapted to the study, guarded against bad transfer.

    The first ``n_startup_trials`` trials are the prior's zero-shot proposals (diverse, best
    first). After that each trial adapts the prior to the study's finished trials (MAML inner
    steps), models what the adapted prior leaves unexplained with a Gaussian process, and
    takes the candidate with the best acquisition value under that model's uncertainty (the
    prior's calibrated spread plus the GP's). A :class:`NegativeTransferGuard` keeps measuring
    how well the prior predicts the study and whether its proposals pay; the less they do,
    the more trials go to the ``fallback`` sampler and the more the model shrinks the prior's
    mean towards a constant. The fallback's first ``fallback_startup_trials`` trials are
    uniformly random, as on a fresh study, so that a distrusted prior's proposals do not
    become the seed of the fallback's model.

    Parameters outside the prior's space, conditional parameters that are inactive in the
    proposal, and parameters with another distribution than the prior's go to ``fallback``,
    so any define-by-run objective works. Multi-objective studies are handed to ``fallback``
    entirely (with a warning): the prior models one objective.

    Every trial records, in its user attributes, where it came from (``mttune.source``:
    ``prior``, ``adapted-prior`` or ``fallback``), the prior's prediction and uncertainty for
    it (``mttune.pred_mean`` / ``mttune.pred_std``, in the prior's target units: rank-based,
    relative to the observations, lower is better), its concordance evidence
    (``mttune.concordance``), whether it was a poor proposal of the prior
    (``mttune.poor_proposal``: worse than three quarters of the trials before it), the
    guard's state (``mttune.guard``) and, for a source study's best config, its row in the
    prior's portfolio (``mttune.portfolio_index``).

    Args:
        prior: A :class:`~tuner.prior.MetaPrior`, or the path of a prior file.
        n_startup_trials: Zero-shot trials before adaptation starts.
        fallback: Sampler for everything the prior does not cover (default: TPE).
        fallback_startup_trials: The first trials handed to ``fallback`` are uniformly
            random instead (measured on held-out YAHPO tasks with a misleading prior:
            otherwise TPE starts modelling from the prior's poor proposals; lcbench regret
            at 50 trials 0.219 -> 0.198, 20 seeds; TPE 0.187). ``0`` hands them to ``fallback``.
        guard: The negative-transfer guard (default settings when ``None``).
        acquisition: ``"ei"`` (expected improvement) or ``"lcb"`` (lower confidence bound).
        n_candidates: Uniform random candidates per trial (plus the prior's portfolio and
            local moves around the best observed configs).
        portfolio_trials: For the first trials, candidates are only the source studies' best
            configs (the prior's portfolio), chosen by the adapted prior: proven configs
            first (measured on held-out YAHPO tasks: lower regret at 10 and 20 trials).
        max_observations: Trials used for adaptation at most (the best half and a random
            rest beyond that).
        seed: Seed; the same seed gives the same suggestions.
        space: When given, the prior must be for this search space.
    """

    def __init__(
        self,
        prior: MetaPrior | str | os.PathLike[str],
        *,
        n_startup_trials: int = 1,
        fallback: BaseSampler | None = None,
        fallback_startup_trials: int = 10,
        guard: NegativeTransferGuard | None = None,
        acquisition: str = "ei",
        n_candidates: int = 256,
        portfolio_trials: int = 10,
        max_observations: int = 256,
        seed: int | None = None,
        space: SearchSpace | None = None,
    ) -> None:
        if not isinstance(prior, MetaPrior):
            prior = load_prior(prior, space=space)
        elif space is not None and space.hash != prior.space.hash:
            raise MttuneError(
                "the prior was trained for another search space: "
                + "; ".join(prior.space.diff(space)[:8])
            )
        if n_startup_trials < 0:
            raise MttuneError(f"n_startup_trials must be >= 0, got {n_startup_trials!r}.")
        if acquisition not in ACQUISITIONS:
            raise MttuneError(
                f"acquisition must be one of {sorted(ACQUISITIONS)}, got {acquisition!r}."
            )
        if n_candidates < 1:
            raise MttuneError(f"n_candidates must be >= 1, got {n_candidates!r}.")
        if fallback_startup_trials < 0:
            raise MttuneError(
                f"fallback_startup_trials must be >= 0, got {fallback_startup_trials!r}."
            )
        if portfolio_trials < 0:
            raise MttuneError(f"portfolio_trials must be >= 0, got {portfolio_trials!r}.")
        if max_observations < 2:
            raise MttuneError(f"max_observations must be >= 2, got {max_observations!r}.")
        self._prior = prior
        self._space = prior.space
        self._encoder = prior.encoder
        self._n_startup_trials = n_startup_trials
        self._fallback = fallback or optuna.samplers.TPESampler(seed=seed)
        self._fallback_startup_trials = fallback_startup_trials
        self._guard = guard or NegativeTransferGuard()
        self._acquisition = acquisition
        self._n_candidates = n_candidates
        self._portfolio_trials = portfolio_trials
        self._max_observations = max_observations
        self._seed = seed
        self._base_seed: int | None = seed
        self._lock = threading.Lock()
        self._propose_lock = threading.Lock()
        self._decisions: dict[int, _Decision] = {}
        self._adapted: dict[int, tuple[tuple[int, ...], AdaptedPrior]] = {}
        self._gp_cache: dict[tuple[int, tuple[int, ...]], GPParams] = {}
        self._proposals: dict[int, dict[str, Any]] = {}
        self._startup: dict[int, BaseSampler] = {}
        self._encodings: dict[int, np.ndarray | None] = {}
        self._portfolio_cache: tuple[np.ndarray, np.ndarray] | None = None
        self._storage_ref: weakref.ref[Any] | None = None
        self._warned_multi = False
        self._warned_guard = False

    # ------------------------------------------------------------------ plumbing
    @property
    def prior(self) -> MetaPrior:
        """The prior this sampler uses."""
        return self._prior

    @property
    def fallback(self) -> BaseSampler:
        """The sampler used where the prior does not apply or is not trusted."""
        return self._fallback

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        del state["_propose_lock"]
        state["_decisions"] = {}
        state["_adapted"] = {}
        state["_gp_cache"] = {}
        state["_proposals"] = {}
        state["_startup"] = {}
        state["_encodings"] = {}
        state["_storage_ref"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._propose_lock = threading.Lock()

    def reseed_rng(self) -> None:
        """Draw a fresh random base seed (and reseed the fallback)."""
        self._base_seed = int(np.random.SeedSequence().entropy % (2**63))
        self._fallback.reseed_rng()

    def _rng(self, trial: FrozenTrial, salt: int = 0) -> np.random.Generator:
        with self._lock:
            if self._base_seed is None:
                self._base_seed = int(np.random.SeedSequence().entropy % (2**63))
            base = self._base_seed
        return np.random.default_rng([base, trial.number, salt])

    def _bind(self, study: Study) -> None:
        """Forget what was cached for another storage's trials.

        The caches are keyed by trial id, which is unique within a storage only: two
        in-memory studies both number their trials from 0.
        """
        storage = study._storage
        with self._lock:
            if self._storage_ref is not None and self._storage_ref() is storage:
                return
            for cache in (
                self._decisions,
                self._adapted,
                self._gp_cache,
                self._proposals,
                self._startup,
                self._encodings,
            ):
                cache.clear()
            self._storage_ref = weakref.ref(storage)

    def _set_attr(self, study: Study, trial: FrozenTrial, key: str, value: Any) -> None:
        study._storage.set_trial_user_attr(trial._trial_id, key, value)
        trial.user_attrs[key] = value

    # ------------------------------------------------------------------ decisions
    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._bind(study)
        self._fallback.before_trial(study, trial)
        self._decide(study, trial)

    def _decide(self, study: Study, trial: FrozenTrial) -> _Decision:
        with self._lock:
            cached = self._decisions.get(trial._trial_id)
        if cached is not None:
            return cached
        if study._is_multi_objective():
            if not self._warned_multi:
                _logger.warning(
                    "MetaPriorSampler: study %r is multi-objective; the prior models one "
                    "objective, so every trial goes to the fallback sampler.",
                    study.study_name,
                )
                self._warned_multi = True
            decision = _Decision(SOURCE_FALLBACK, GuardState(0.0, 0, None, None, False))
        else:
            trials = study.get_trials(deepcopy=False)
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            n_obs = sum(1 for t in complete if self._fits(t))
            # a proposal of the prior that landed in the study's worst quarter counts as no
            # evidence for the prior, however well the prior ranks it afterwards
            evidence = [
                0.0
                if t.user_attrs.get(TrialAttr.POOR.key)
                else t.user_attrs[TrialAttr.CONCORDANCE.key]
                for t in sorted(complete, key=lambda t: t.number)
                if isinstance(t.user_attrs.get(TrialAttr.CONCORDANCE.key), int | float)
            ]
            state = self._guard.assess(evidence)
            if n_obs < self._n_startup_trials:
                source = SOURCE_ZERO_SHOT
            elif self._rng(trial, salt=1).random() < state.trust:
                source = SOURCE_ADAPTED
            else:
                source = SOURCE_FALLBACK
            if state.fired and not self._warned_guard:
                _logger.warning(
                    "MetaPriorSampler: the prior does not rank this study's trials clearly "
                    "better than chance, or its proposals land among the study's worst (mean "
                    "evidence %.2f over %d trials, 0.5 is chance); trusting the fallback "
                    "sampler for %.0f%% of the next trials.",
                    state.concordance,
                    state.evidence,
                    100 * (1 - state.trust),
                )
                self._warned_guard = True
            startup = source == SOURCE_FALLBACK and self._in_fallback_startup(trials, trial)
            decision = _Decision(source, state, startup)
        with self._lock:
            self._decisions[trial._trial_id] = decision
        self._set_attr(study, trial, TrialAttr.SOURCE.key, decision.source)
        self._set_attr(study, trial, TrialAttr.GUARD.key, decision.guard.to_dict())
        return decision

    def _in_fallback_startup(self, trials: Sequence[FrozenTrial], trial: FrozenTrial) -> bool:
        """Whether fewer than ``fallback_startup_trials`` earlier trials went to the fallback."""
        left = self._fallback_startup_trials
        for t in trials:
            if left == 0:
                return False
            if (
                t.number < trial.number
                and t.user_attrs.get(TrialAttr.SOURCE.key) == SOURCE_FALLBACK
            ):
                left -= 1
        return left > 0

    def _fallback_for(self, trial: FrozenTrial, decision: _Decision) -> BaseSampler:
        """The fallback, or on its startup trials a random sampler seeded for the trial."""
        if not decision.startup:
            return self._fallback
        with self._lock:
            sampler = self._startup.get(trial._trial_id)
        if sampler is None:
            seed = int(self._rng(trial, salt=4).integers(2**31))
            sampler = optuna.samplers.RandomSampler(seed=seed)
            with self._lock:
                sampler = self._startup.setdefault(trial._trial_id, sampler)
        return sampler

    # ------------------------------------------------------------------ search space
    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        """The fallback's relative space on fallback trials; empty on prior trials.

        Prior trials take their values lazily in :meth:`sample_independent`, where the
        distribution the objective asks for is known: a parameter is taken from the prior
        only when it is asked with exactly the prior's distribution, so an objective that
        uses a name differently never conflicts with the prior.
        """
        self._bind(study)
        decision = self._decide(study, trial)
        if decision.source == SOURCE_FALLBACK:
            return self._fallback_for(trial, decision).infer_relative_search_space(study, trial)
        return {}

    def _fits(self, trial: FrozenTrial) -> bool:
        """Whether the trial's prior-space parameters are valid, with the prior's distributions."""
        return self._encoded(trial) is not None

    def _encoded(self, trial: FrozenTrial) -> np.ndarray | None:
        """The trial's config in the prior's encoding, or ``None`` when it does not fit.

        Finished trials never change, so their encodings are cached (this keeps ``ask()``
        cheap with thousands of trials).
        """
        key = trial._trial_id
        finished = trial.state.is_finished()
        if finished:
            with self._lock:
                if key in self._encodings:
                    return self._encodings[key]
        sub = {k: v for k, v in trial.params.items() if k in self._space.params}
        x = None
        if all(trial.distributions[k] == self._space.params[k].distribution for k in sub) and (
            self._space.contains(sub) is None
        ):
            x = self._encoder.encode(sub)
        if finished:
            with self._lock:
                if len(self._encodings) > 200_000:
                    self._encodings.clear()
                self._encodings[key] = x
        return x

    def _covers(self, name: str, distribution: BaseDistribution) -> bool:
        param = self._space.params.get(name)
        return param is not None and param.distribution == distribution

    # ------------------------------------------------------------------ sampling
    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """Values for ``search_space``.

        On fallback trials the fallback's; otherwise the prior's proposal for the parameters
        it covers and the fallback's values for the rest.
        """
        if not search_space:
            return {}
        self._bind(study)
        decision = self._decide(study, trial)
        fallback = self._fallback_for(trial, decision)
        if decision.source == SOURCE_FALLBACK:
            params = dict(fallback.sample_relative(study, trial, search_space))
        else:
            proposal = self._proposal(study, trial, decision)
            params = {
                n: proposal[n]
                for n, d in search_space.items()
                if n in proposal and self._covers(n, d)
            }
        for name, dist in search_space.items():
            if name not in params:
                params[name] = fallback.sample_independent(study, trial, name, dist)
        return params

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        """The prior's proposal where it covers the parameter, else the fallback's value."""
        self._bind(study)
        decision = self._decide(study, trial)
        if decision.source != SOURCE_FALLBACK and self._covers(param_name, param_distribution):
            proposal = self._proposal(study, trial, decision)
            if param_name in proposal:
                return proposal[param_name]
        return self._fallback_for(trial, decision).sample_independent(
            study, trial, param_name, param_distribution
        )

    def _proposal(self, study: Study, trial: FrozenTrial, decision: _Decision) -> dict[str, Any]:
        """The prior's joint config for this trial, computed once at its first parameter."""
        # One proposal at a time per process, so parallel trials see each other's pending
        # proposals and do not pick the same config.
        with self._propose_lock:
            with self._lock:
                cached = self._proposals.get(trial._trial_id)
            if cached is not None:
                return cached
            with _BLAS.limit(limits=1, user_api="blas"):
                proposal = self._sample_prior(study, trial, decision)
            with self._lock:
                self._proposals[trial._trial_id] = proposal
            return proposal

    def _observations(
        self,
        study: Study,
        *,
        before: FrozenTrial | None = None,
        exclude: int | None = None,
        failures: bool = True,
    ) -> _Observations:
        """Finished trials in the prior's space, oriented so that lower is better.

        Failed trials (a crash, a NaN) count as worse than every completed one, so the
        sampler learns to avoid the regions where the script fails; trials that failed only
        because their runner was interrupted (``interrupted`` attribute) do not count.
        """
        states = (TrialState.COMPLETE, TrialState.FAIL) if failures else (TrialState.COMPLETE,)
        every = study.get_trials(deepcopy=False, states=(*states, TrialState.PRUNED))
        if before is not None and before.datetime_start is not None:
            every = [
                t
                for t in every
                if t.datetime_complete is not None and t.datetime_complete <= before.datetime_start
            ]
        pruned = tuple(t for t in every if t.state == TrialState.PRUNED and self._fits(t))
        trials = [
            t
            for t in every
            if t.state in states
            and t.number != exclude
            and (t.value is not None or t.state == TrialState.FAIL)
            and not TrialAttr.INTERRUPTED.get(t.user_attrs)
            and self._fits(t)
        ]
        trials.sort(key=lambda t: t.number)
        sign = 1.0 if study.direction == StudyDirection.MINIMIZE else -1.0
        y = np.array([np.nan if t.value is None else sign * float(t.value) for t in trials])
        finite = y[np.isfinite(y)]
        worst = float(finite.max()) + 1.0 if len(finite) else 1.0
        failed = ~np.isfinite(y)
        y = np.where(failed, worst, y)
        x = (
            np.vstack([self._encoded(t) for t in trials])
            if trials
            else np.zeros((0, self._encoder.dim))
        )
        return _Observations(
            tuple(t.number for t in trials),
            x,
            y,
            failed,
            tuple(trials),
            pruned,
        )

    def _subset(self, obs: _Observations, rng: np.random.Generator) -> np.ndarray:
        """Indices of the observations used: all, or the best half and a random rest."""
        idx = np.arange(len(obs.y))
        if len(idx) <= self._max_observations:
            return idx
        half = self._max_observations // 2
        best = np.argsort(obs.y, kind="stable")[:half]
        rest = rng.choice(np.setdiff1d(idx, best), self._max_observations - half, replace=False)
        return np.sort(np.concatenate([best, rest]))

    def _adapt(self, obs: _Observations, idx: np.ndarray) -> tuple[AdaptedPrior, np.ndarray]:
        """The prior adapted to the observations ``idx``, and their targets."""
        t = observation_targets(obs.y[idx], "minimize")  # obs.y is already oriented
        # failures all share the worst rank; give each the worst target, not their mid-rank
        t = np.where(obs.failed[idx], t.max(initial=0.0), t)
        return self._prior.adapt(obs.x[idx], t), t

    def _model(
        self, study: Study, obs: _Observations, rng: np.random.Generator, weight: float
    ) -> _Model:
        idx = self._subset(obs, rng)
        adapted, t = self._adapt(obs, idx)
        gp = None
        if len(idx) >= _GP_REFIT_AT[0]:
            residual = t - weight * adapted.predict(obs.x[idx]).mean
            params = self._gp_params(study, obs, len(obs.y))
            gp = ResidualGP(obs.x[idx], residual, params)
        return _Model(adapted, gp, float(t.min()), weight)

    def _prior_weight(self, decision: _Decision) -> float:
        """How much of the prior's mean the model keeps.

        The guard's trust, rescaled so that a prior at the guard's ceiling is kept whole.
        """
        return float(np.clip(decision.guard.trust / self._guard.ceiling, 0.0, 1.0))

    def _gp_params(self, study: Study, obs: _Observations, n: int) -> GPParams:
        """Hyperparameters fitted on the first ``_refit_point(n)`` observations (cached)."""
        point = min(_refit_point(n), len(obs.y))
        key = (study._study_id, obs.numbers[:point])
        with self._lock:
            cached = self._gp_cache.get(key)
        if cached is not None:
            return cached
        first = _Observations(
            obs.numbers[:point], obs.x[:point], obs.y[:point], obs.failed[:point]
        )
        idx = self._subset(first, np.random.default_rng(point))
        adapted, t = self._adapt(first, idx)
        residual = t - adapted.predict(first.x[idx]).mean
        cal = self._prior.calibration
        amplitude = cal.b[cal.bucket(len(idx))]
        params = fit_gp(first.x[idx], residual, amplitude=amplitude)
        with self._lock:
            if len(self._gp_cache) > 64:
                self._gp_cache.clear()
            self._gp_cache[key] = params
        return params

    def _sample_prior(
        self,
        study: Study,
        trial: FrozenTrial,
        decision: _Decision,
    ) -> dict[str, Any]:
        rng = self._rng(trial, salt=2)
        obs = self._observations(study)
        # with n_startup_trials=0 the first trial has nothing to adapt to
        zero_shot = decision.source == SOURCE_ZERO_SHOT or len(obs.y) == 0
        fixed = self._pinned(obs)
        # enqueued values the prior's space cannot hold (the objective asks for the parameter
        # with another range) are not the prior's business: the fallback's, as documented
        fixed.update((k, v) for k, v in _enqueued(trial).items() if self._holds(k, v))
        incumbents = (
            obs.x[np.argsort(obs.y, kind="stable")[:3]]
            if len(obs.y)
            else np.zeros((0, self._encoder.dim))
        )
        others = self._other_configs(study, trial)
        # Early on, proposals come from the source studies' best configs only: proven
        # configs, chosen by the (adapted) prior; then from the whole space.
        early = len(obs.y) + len(others) < self._portfolio_trials
        model = None if zero_shot else self._model(study, obs, rng, self._prior_weight(decision))
        adapted = self._prior.adapt() if model is None else model.adapted
        portfolio, rows = self._portfolio()
        # Portfolio configs already proposed in this study, tracked by row: with parameters
        # fixed outside the sampler (PartialFixedSampler), a repeat is not a repeat in the
        # joint space, but it would be in the parameters this sampler sets.
        used = np.isin(
            rows,
            [
                row
                for t in study.get_trials(deepcopy=False)
                if t.number != trial.number
                and isinstance(row := t.user_attrs.get(TrialAttr.PORTFOLIO.key), int)
            ],
        )
        # pruned configs are not observations, but proposing them again would waste a trial
        taken = np.vstack([obs.x, others, *(self._encoded(t)[None] for t in obs.pruned)])
        for restricted in (True, False) if early else (False,):
            cands = candidates(
                self._encoder,
                rng,
                n_random=0 if restricted else self._n_candidates,
                portfolio=portfolio,
                incumbents=incumbents[:0] if restricted else incumbents,
                fixed=fixed,
            )
            fresh = _min_distance(cands, taken) >= _DUPLICATE_DISTANCE
            fresh[: len(portfolio)] &= ~used
            if fresh.any():
                break
        if model is None:
            pred = adapted.predict(cands)
            mean, std = pred.mean, pred.std
            idx = diverse_top(
                cands,
                np.where(fresh, mean, np.inf),
                1,
                _ZERO_SHOT_SPACING,
                taken=taken if len(taken) else None,
            )[0]
        else:
            mean, std = model.predict(cands)
            score = ACQUISITIONS[self._acquisition](mean, std, model.incumbent)
            score = np.where(fresh, score, -np.inf)
            score = np.where(_min_distance(cands, others) < _RUNNING_SPACING, -np.inf, score)
            if not np.isfinite(score).any():
                score = np.where(fresh, -mean, -np.inf)
            idx = int(np.argmax(score))
        config = self._encoder.decode(cands[idx])
        self._set_attr(study, trial, TrialAttr.PRED_MEAN.key, round(float(mean[idx]), 6))
        self._set_attr(study, trial, TrialAttr.PRED_STD.key, round(float(std[idx]), 6))
        if idx < len(portfolio):
            self._set_attr(study, trial, TrialAttr.PORTFOLIO.key, int(rows[idx]))
        with self._lock:
            self._adapted[trial._trial_id] = (obs.numbers, adapted)
        return config

    def _portfolio(self) -> tuple[np.ndarray, np.ndarray]:
        """The source studies' best configs, at most the zero-shot best 128 (computed once).

        Returns:
            The encoded configs and their row numbers in the prior's portfolio.
        """
        if self._portfolio_cache is None:
            portfolio = self._prior.portfolio
            rows = np.arange(len(portfolio))
            if len(portfolio) > _PORTFOLIO_CANDIDATES:
                mean = self._prior.adapt().predict(portfolio).mean
                rows = np.argsort(mean, kind="stable")[:_PORTFOLIO_CANDIDATES]
            self._portfolio_cache = (portfolio[rows], rows)
        return self._portfolio_cache

    def _holds(self, name: str, value: Any) -> bool:
        """Whether ``value`` is a valid value of the prior's parameter ``name``."""
        param = self._space.params.get(name)
        if param is None:
            return False
        try:
            return bool(param.distribution._contains(param.distribution.to_internal_repr(value)))
        except (ValueError, TypeError):
            return False

    def _pinned(self, obs: _Observations) -> dict[str, Any]:
        """Continuous parameters that took one value in every observed trial.

        Identical float values do not happen by chance: the user fixed them (for example with
        ``PartialFixedSampler``), so proposals are made at that value too. Only trials where
        the value was *not* enqueued count as evidence (3 or more): a few enqueued baselines
        at one value do not fix a parameter for the rest of the study.
        """
        if len(obs.y) < 3:
            return {}
        first = self._encoder.decode(obs.x[0])
        out = {}
        for name, cols in self._encoder.param_slices().items():
            dist = self._space.params[name].distribution
            if (
                isinstance(dist, FloatDistribution)
                and dist.step is None
                and name in first
                and np.ptp(obs.x[:, cols]) == 0.0
                and sum(name not in _enqueued(t) for t in obs.trials) >= 3
            ):
                out[name] = first[name]
        return out

    def _other_configs(self, study: Study, trial: FrozenTrial) -> np.ndarray:
        """Encoded configs of the other running trials and of pending proposals."""
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        rows = [
            x
            for t in running
            if t.number != trial.number and t.params and (x := self._encoded(t)) is not None
        ]
        with self._lock:
            pending = [c for tid, c in self._proposals.items() if tid != trial._trial_id]
        if pending:
            rows += list(self._encoder.encode_many(pending))
        return np.vstack(rows) if rows else np.zeros((0, self._encoder.dim))

    # ------------------------------------------------------------------ evidence
    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        """Record the prior's prequential evidence on the finished trial, then clean up."""
        self._bind(study)
        try:
            if (
                state == TrialState.COMPLETE
                and values is not None
                and len(values) == 1
                and not study._is_multi_objective()
                and self._fits(trial)
            ):
                with _BLAS.limit(limits=1, user_api="blas"):
                    self._record_evidence(study, trial, float(values[0]))
        finally:
            with self._lock:
                self._decisions.pop(trial._trial_id, None)
                self._adapted.pop(trial._trial_id, None)
                self._proposals.pop(trial._trial_id, None)
                self._startup.pop(trial._trial_id, None)
            self._fallback.after_trial(study, trial, state, values)

    def _record_evidence(self, study: Study, trial: FrozenTrial, value: float) -> None:
        obs = self._observations(study, before=trial, exclude=trial.number, failures=False)
        if len(obs.y) < 2:
            return
        with self._lock:
            cached = self._adapted.get(trial._trial_id)
        if cached is not None and cached[0] == obs.numbers:
            adapted = cached[1]
        else:
            adapted, _ = self._adapt(obs, self._subset(obs, self._rng(trial, salt=3)))
        x_new = self._encoded(trial)[None]
        pred = adapted.predict(np.vstack([x_new, obs.x]))
        sign = 1.0 if study.direction == StudyDirection.MINIMIZE else -1.0
        c = concordance(pred.mean[0], sign * value, pred.mean[1:], obs.y)
        if TrialAttr.PRED_MEAN.key not in trial.user_attrs:
            self._set_attr(study, trial, TrialAttr.PRED_MEAN.key, round(float(pred.mean[0]), 6))
            self._set_attr(study, trial, TrialAttr.PRED_STD.key, round(float(pred.std[0]), 6))
        if c is not None:
            self._set_attr(study, trial, TrialAttr.CONCORDANCE.key, round(c, 4))
        # Whether following the prior paid: a prediction can rank the study's trials well
        # while the proposals it leads to are poor (a misleading prior, once adapted).
        if trial.user_attrs.get(TrialAttr.SOURCE.key) in (SOURCE_ZERO_SHOT, SOURCE_ADAPTED) and (
            sign * value > float(np.quantile(obs.y, _POOR_QUANTILE))
        ):
            self._set_attr(study, trial, TrialAttr.POOR.key, True)


def _min_distance(cands: np.ndarray, points: np.ndarray) -> np.ndarray:
    """RMS distance of each candidate to its nearest point (``inf`` without points)."""
    if len(points) == 0:
        return np.full(len(cands), np.inf)
    d2 = (cands**2).sum(1)[:, None] + (points**2).sum(1)[None, :] - 2 * cands @ points.T
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0) / cands.shape[1])


def _enqueued(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters the user enqueued for the trial (``study.enqueue_trial``)."""
    return trial.system_attrs.get("fixed_params", {})
