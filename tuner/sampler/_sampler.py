"""``MetaPriorSampler``: the Optuna adapter over the sampler core (:mod:`._core`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from tuner._errors import MttuneError
from tuner._gp import one_blas_thread
from tuner._logging import get_logger
from tuner.prior import MetaPrior, load_prior
from tuner.sampler import _core
from tuner.sampler._acquisition import Acquisition, resolve_acquisition
from tuner.sampler._gp import GPParams
from tuner.sampler._guard import GuardState, NegativeTransferGuard
from tuner.sampler._hedge import hedged_trials, resolve_early_strategy
from tuner.sampler._mapping import StudyMapping
from tuner.sampler._state import Decision, StudyState
from tuner.sampler._view import StudyView, sign
from tuner.space import SearchSpace
from tuner.studies import StudyAttr, TrialAttr

__all__ = ["MetaPriorSampler"]

_logger = get_logger("tuner.sampler")  # follows Optuna's verbosity (tuner/_logging.py)

SOURCE_ZERO_SHOT = "prior"
SOURCE_ADAPTED = "adapted-prior"
SOURCE_FALLBACK = "fallback"


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
    become the seed of the fallback's model; a late hand-over (the study has twice that many
    complete trials) starts with the fallback's own trials, modelled from the study's.

    The prior knows hyperparameters by name (and alias), not one search space: proposals are
    made in the study's own space, whatever ranges, steps or log flags it declares (a
    narrowed range, Ray Tune's exclusive bounds, an int asked as a float), and the prior
    sees them through its own coordinates; values outside what it was trained on are
    extrapolation, with wider uncertainty (see :mod:`tuner.sampler._mapping`). Parameters the
    prior does not know, and conditional parameters the proposal leaves inactive, go to
    ``fallback``, so any define-by-run objective works; the study records what the prior
    covers (:attr:`~tuner.studies.StudyAttr.COVERAGE`) and each trial which of its values
    came from the prior. Multi-objective studies are handed to ``fallback`` entirely (with a
    warning): the prior models one objective.

    Every trial records where it came from and what the prior predicted for it (see
    :class:`tuner.studies.TrialAttr` and ``docs/attributes.md``): its source (``prior``,
    ``adapted-prior`` or ``fallback``), the prior's prediction and uncertainty (in the prior's
    target units: rank-based, relative to the observations, lower is better), its concordance
    evidence, whether it was a poor proposal of the prior (worse than three quarters of the
    trials before it), the guard's state and, for a source study's best config, its row in
    the prior's portfolio.

    The numerics live in :mod:`tuner.sampler._core` (no Optuna there); this class turns the
    study's trials into arrays and the core's proposal into parameters.

    Args:
        prior: A :class:`~tuner.prior.MetaPrior`, the path of a prior file, or the name of a
            built-in prior (``"xgboost"``, ``"mlp"``, ...: ``mttune prior list``).
        n_startup_trials: Zero-shot trials before adaptation starts.
        fallback: Sampler for everything the prior does not cover (default: TPE).
        fallback_startup_trials: The first trials handed to ``fallback`` are uniformly
            random instead, so that the fallback does not start modelling from a distrusted
            prior's proposals (see ``benchmarks/README.md``), while the study has fewer than
            twice this many complete trials. ``0`` hands them to ``fallback``.
        guard: The negative-transfer guard (default settings when ``None``).
        acquisition: ``"ei"`` (expected improvement), ``"lcb"`` (lower confidence bound,
            ``kappa`` 1.5), or any callable ``(mean, std, best) -> score`` (larger is better,
            targets lower-better), e.g. ``LowerConfidenceBound(kappa=3.0)``.
        n_candidates: Uniform random candidates per trial (plus the prior's portfolio and
            local moves around the best observed configs).
        portfolio_trials: For the first trials, candidates are only the source studies' best
            configs (the prior's portfolio), chosen by the adapted prior: proven configs
            first.
        max_observations: Trials used for adaptation at most (the best half and a random
            rest beyond that).
        seed: Seed; the same seed gives the same suggestions.
        space: The study's search space, when known in advance (``mttune run --space``):
            its conditions are kept and what the prior covers is known from the first
            trial. Without it the space is read from the study's trials as they come.
        residual_gp: ``False`` models the study with the adapted prior alone, without the
            Gaussian process on its residuals: proposals come from the prior's adaptation
            (MAML inner steps) and its calibrated uncertainty only. An ablation, to measure
            what the GP adds (``benchmarks/README.md``); the default keeps it.
        early_strategy: How the portfolio trials are chosen. ``"model"``: by the adapted
            prior's acquisition. ``"hedge"``: by the expected value over the past studies,
            weighted by how each orders the study's trials (:mod:`tuner.sampler._hedge`;
            needs a prior with coverage). ``"hedge-1"``, ``"hedge-3"``: the first 1 or 3
            by hedging, the rest by the model. ``"auto"`` (default): what meta-training
            measured to be best for this prior on its held-out studies (``mttune prior
            show``), ``"model"`` for a prior that did not measure it.
    """

    def __init__(
        self,
        prior: MetaPrior | str | os.PathLike[str],
        *,
        n_startup_trials: int = 1,
        fallback: BaseSampler | None = None,
        fallback_startup_trials: int = 10,
        guard: NegativeTransferGuard | None = None,
        acquisition: str | Acquisition = "ei",
        n_candidates: int = 256,
        portfolio_trials: int = 10,
        max_observations: int = 256,
        seed: int | None = None,
        space: SearchSpace | None = None,
        residual_gp: bool = True,
        early_strategy: str = "auto",
    ) -> None:
        self._prior = prior if isinstance(prior, MetaPrior) else load_prior(prior)
        self._early_strategy = resolve_early_strategy(early_strategy, self._prior)
        self._space = space
        self._residual_gp = residual_gp
        _check_counts(
            n_startup_trials=n_startup_trials,
            n_candidates=n_candidates,
            fallback_startup_trials=fallback_startup_trials,
            portfolio_trials=portfolio_trials,
            max_observations=max_observations,
        )
        self._settings = _core.ProposalSettings(
            n_candidates=n_candidates,
            portfolio_trials=portfolio_trials,
            max_observations=max_observations,
            acquisition=resolve_acquisition(acquisition),
            hedge_trials=hedged_trials(self._early_strategy, portfolio_trials),
        )
        self._n_startup_trials = n_startup_trials
        self._fallback = fallback or optuna.samplers.TPESampler(seed=seed)
        self._fallback_startup_trials = fallback_startup_trials
        # a hand-over once the study has this many complete trials is late: no random start
        self._startup_until = 2 * fallback_startup_trials
        self._guard = guard or NegativeTransferGuard()
        self._base_seed: int | None = seed
        self._portfolio_rows: np.ndarray | None = None  # of the prior: computed once
        self._lock = threading.Lock()
        self._propose_lock = threading.Lock()
        self._state: StudyState | None = None

    # ------------------------------------------------------------------ plumbing
    @property
    def prior(self) -> MetaPrior:
        """The prior this sampler uses."""
        return self._prior

    @property
    def early_strategy(self) -> str:
        """How the portfolio trials are chosen (resolved: ``"auto"`` is never returned)."""
        return self._early_strategy

    @property
    def fallback(self) -> BaseSampler:
        """The sampler used where the prior does not apply or is not trusted."""
        return self._fallback

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"], state["_propose_lock"]
        state["_state"] = None  # per-study caches do not travel
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

    def _bind(self, study: Study) -> StudyState:
        """The caches of the study's storage: made here, and dropped for another storage."""
        storage = study._storage
        with self._lock:
            if self._state is None or not self._state.serves(storage):
                self._state = StudyState(storage)
            return self._state

    def _warn_once(self, state: StudyState, key: str, message: str, *args: Any) -> None:
        with self._lock:
            if key in state.warned:
                return
            state.warned.add(key)
        _logger.warning(message, *args)

    def _set_attr(self, study: Study, trial: FrozenTrial, key: str, value: Any) -> None:
        study._storage.set_trial_user_attr(trial._trial_id, key, value)
        trial.user_attrs[key] = value

    # ------------------------------------------------------------------ the study's space
    def _mapping(
        self,
        study: Study,
        state: StudyState,
        trial: FrozenTrial | None = None,
        asked: dict[str, BaseDistribution] | None = None,
    ) -> tuple[tuple, StudyMapping]:
        """The study's space mapped onto the prior (said once on the study).

        The space is the declared one, else the latest distributions of the study's trials
        (before any trial has set a parameter: the prior's own space), updated by the
        trial's own distributions and by the one being asked.
        """
        with self._lock:
            known = dict(state.known)
        if self._space is not None:
            dists = dict(self._space.distributions)
        else:
            dists = known or dict(self._prior.space.distributions)
        if trial is not None:
            dists.update(trial.distributions)
        dists.update(asked or {})
        key = tuple(dists.items())
        with self._lock:
            mapping = state.mapping(key, lambda: StudyMapping(self._prior, dists, self._space))
        self._say_coverage(study, state, mapping)
        return key, mapping

    def _learn_space(self, state: StudyState, trials: Sequence[FrozenTrial]) -> None:
        """Note the latest distribution of every parameter the study's trials set."""
        if self._space is not None:
            return
        latest: dict[str, BaseDistribution] = {}
        for t in sorted(trials, key=lambda t: t.number):
            latest.update(t.distributions)
        with self._lock:
            state.known.update(latest)

    def _say_coverage(self, study: Study, state: StudyState, mapping: StudyMapping) -> None:
        """Say once, in the log and on the study, what the prior covers of its space."""
        coverage = mapping.coverage
        if not coverage.covered and not coverage.fallback:
            return
        summary = coverage.summary()
        with self._lock:
            if "coverage:" + summary in state.warned:
                return
            state.warned.add("coverage:" + summary)
        if coverage.covered:
            _logger.info("MetaPriorSampler: %s.", summary)
        else:
            _logger.warning(
                "MetaPriorSampler: the prior covers none of study %r's parameters (%s); "
                "the fallback sampler tunes them all.",
                study.study_name,
                summary,
            )
        study._storage.set_study_user_attr(
            study._study_id, StudyAttr.COVERAGE.key, coverage.to_dict()
        )

    # ------------------------------------------------------------------ decisions
    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        state = self._bind(study)
        self._fallback.before_trial(study, trial)
        self._decide(study, trial, state)

    def _decide(self, study: Study, trial: FrozenTrial, state: StudyState) -> Decision:
        with self._lock:
            cached = state.decisions.get(trial._trial_id)
        if cached is not None:
            return cached
        if study._is_multi_objective():
            self._warn_once(
                state,
                "multi-objective",
                "MetaPriorSampler: study %r is multi-objective; the prior models one "
                "objective, so every trial goes to the fallback sampler.",
                study.study_name,
            )
            decision = Decision(SOURCE_FALLBACK, GuardState(0.0, 0, None, None, False))
        else:
            decision = self._choose_source(study, trial, state)
        with self._lock:
            state.decisions[trial._trial_id] = decision
        self._set_attr(study, trial, TrialAttr.SOURCE.key, decision.source)
        self._set_attr(study, trial, TrialAttr.GUARD.key, decision.guard.to_dict())
        return decision

    def _choose_source(self, study: Study, trial: FrozenTrial, state: StudyState) -> Decision:
        """Zero-shot while the study is young, then the prior as far as the guard trusts it."""
        trials = study.get_trials(deepcopy=False)
        self._learn_space(state, trials)
        key, mapping = self._mapping(study, state)
        view = StudyView(mapping, key, state, self._lock)
        complete = sorted(
            (t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.number
        )
        n_obs = sum(xf is not None for xf in view.coordinates_of(complete))
        guard = self._guard.assess(_evidence(complete))
        if mapping.coverage.fallback and not mapping.coverage.covered:
            source = SOURCE_FALLBACK  # the prior covers none of the study's parameters
        elif n_obs < self._n_startup_trials:
            source = SOURCE_ZERO_SHOT
        elif self._rng(trial, salt=1).random() < guard.trust:
            source = SOURCE_ADAPTED
        else:
            source = SOURCE_FALLBACK
        if guard.fired:
            self._warn_once(
                state,
                "guard",
                "MetaPriorSampler: the prior does not rank this study's trials clearly "
                "better than chance, or its proposals land among the study's worst (mean "
                "evidence %.2f over %d trials, 0.5 is chance); trusting the fallback "
                "sampler for %.0f%% of the next trials.",
                guard.concordance,
                guard.evidence,
                100 * (1 - guard.trust),
            )
        startup = (
            source == SOURCE_FALLBACK
            and len(complete) < self._startup_until
            and self._in_fallback_startup(trials, trial)
        )
        return Decision(source, guard, startup)

    def _in_fallback_startup(self, trials: Sequence[FrozenTrial], trial: FrozenTrial) -> bool:
        """Whether fewer than ``fallback_startup_trials`` earlier trials went to the fallback."""
        left = self._fallback_startup_trials
        for t in trials:
            if left == 0:
                return False
            if t.number < trial.number and TrialAttr.SOURCE.get(t.user_attrs) == SOURCE_FALLBACK:
                left -= 1
        return left > 0

    def _fallback_for(
        self, trial: FrozenTrial, decision: Decision, state: StudyState
    ) -> BaseSampler:
        """The fallback, or on its startup trials a random sampler seeded for the trial."""
        if not decision.startup:
            return self._fallback
        with self._lock:
            sampler = state.startup.get(trial._trial_id)
        if sampler is None:
            seed = int(self._rng(trial, salt=4).integers(2**31))
            sampler = optuna.samplers.RandomSampler(seed=seed)
            with self._lock:
                sampler = state.startup.setdefault(trial._trial_id, sampler)
        return sampler

    def _fallback_config(
        self,
        study: Study,
        trial: FrozenTrial,
        decision: Decision,
        state: StudyState,
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        """The fallback's whole config on a finite space, moved off the configs taken.

        Only where the prior covers every parameter of a finite space without conditions
        (else empty: the fallback answers each parameter as it is asked). The fallback gives
        every value at once (``search_space`` relatively, the rest independently); a config
        that an evaluated, pruned or running trial already has is moved to the nearest one
        none has, so that the fallback does not spend trials on repeats either.
        """
        with self._propose_lock:
            with self._lock:
                cached = state.proposals.get(trial._trial_id)
            if cached is not None:
                return cached[0]
            key, mapping = self._mapping(study, state)
            space = mapping.space
            if (
                study._is_multi_objective()
                or mapping.coverage.fallback
                or mapping.encoder.size is None
                or any(p.condition is not None for p in space)
            ):
                return {}
            fallback = self._fallback_for(trial, decision, state)
            view = StudyView(mapping, key, state, self._lock)
            obs, rows, pruned = view.observations(study)
            fixed = view.fixed(obs, rows, trial)
            config = dict(
                fallback.sample_relative(study, trial, search_space) if search_space else {}
            )
            for name, param in space.params.items():
                if name not in config and name not in fixed:
                    config[name] = fallback.sample_independent(
                        study, trial, name, param.distribution
                    )
            config.update(fixed)
            moved = _core.distinct(
                mapping.encoder,
                mapping.encoder.canonicalize(mapping.encode([config]))[0],
                np.vstack([obs.x, view.other_configs(study, trial), view.stack(pruned)[0]]),
                self._rng(trial, salt=5),
                n_candidates=self._settings.n_candidates,
                fixed=fixed,
            )
            if moved is not None:
                config = mapping.encoder.decode(moved)
            self._note_repeat(study, trial, config)
            with self._lock:
                state.proposals[trial._trial_id] = (config, key)
            return config

    def _note_repeat(self, study: Study, trial: FrozenTrial, config: dict[str, Any]) -> None:
        """Record the first other trial with the same ``config``, if one has it: a repeat."""
        for t in study.get_trials(deepcopy=False):
            if t.number != trial.number and {n: t.params.get(n) for n in config} == config:
                self._set_attr(study, trial, TrialAttr.REPEAT_OF.key, t.number)
                return

    # ------------------------------------------------------------------ sampling
    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        """The fallback's relative space on fallback trials; empty on prior trials.

        Prior trials take their values lazily in :meth:`sample_independent`, where the
        distribution the objective asks for is known.
        """
        state = self._bind(study)
        decision = self._decide(study, trial, state)
        if decision.source == SOURCE_FALLBACK:
            fallback = self._fallback_for(trial, decision, state)
            return fallback.infer_relative_search_space(study, trial)
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """Values for ``search_space``: the fallback's on fallback trials (else none)."""
        if not search_space:
            return {}
        state = self._bind(study)
        decision = self._decide(study, trial, state)
        fallback = self._fallback_for(trial, decision, state)
        if decision.source != SOURCE_FALLBACK:
            items = search_space.items()
            return {n: self.sample_independent(study, trial, n, d) for n, d in items}
        config = self._fallback_config(study, trial, decision, state, search_space)
        params = dict(fallback.sample_relative(study, trial, search_space)) if not config else {}
        for name, dist in search_space.items():
            if name in config:
                params[name] = config[name]
            elif name not in params:
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
        state = self._bind(study)
        decision = self._decide(study, trial, state)
        if decision.source != SOURCE_FALLBACK:
            key, mapping = self._mapping(study, state, trial, {param_name: param_distribution})
            if mapping.covers(param_name, param_distribution):
                config = self._proposal(study, trial, decision, state, key, mapping, param_name)
                if param_name in config:
                    self._answered(state, trial, param_name, "prior")
                    return config[param_name]
        else:
            config = self._fallback_config(study, trial, decision, state, {})
            if param_name in config and self._mapping(study, state)[1].covers(
                param_name, param_distribution
            ):
                self._answered(state, trial, param_name, SOURCE_FALLBACK)
                return config[param_name]
        self._answered(state, trial, param_name, SOURCE_FALLBACK)
        return self._fallback_for(trial, decision, state).sample_independent(
            study, trial, param_name, param_distribution
        )

    def _answered(self, state: StudyState, trial: FrozenTrial, name: str, source: str) -> None:
        with self._lock:
            state.answered.setdefault(trial._trial_id, {})[name] = source

    def _proposal(
        self,
        study: Study,
        trial: FrozenTrial,
        decision: Decision,
        state: StudyState,
        key: tuple,
        mapping: StudyMapping,
        name: str,
    ) -> dict[str, Any]:
        """The prior's joint config for this trial, computed at its first covered parameter.

        Made again (keeping the values the trial already has) only when a parameter shows
        a distribution the proposal did not know and its value does not fit it.
        """
        # One proposal at a time per process, so parallel trials see each other's pending
        # proposals and do not pick the same config.
        with self._propose_lock:
            with self._lock:
                cached = state.proposals.get(trial._trial_id)
            if cached is not None and (cached[1] == key or _fits(cached[0], name, mapping)):
                return cached[0]
            with one_blas_thread():
                proposal = self._propose(study, trial, decision, state, key, mapping)
            self._set_attr(study, trial, TrialAttr.PRED_MEAN.key, round(proposal.mean, 6))
            self._set_attr(study, trial, TrialAttr.PRED_STD.key, round(proposal.std, 6))
            if proposal.portfolio_row is not None:
                self._set_attr(study, trial, TrialAttr.PORTFOLIO.key, proposal.portfolio_row)
            if proposal.why == _core.WHY_REPEAT:
                self._note_repeat(study, trial, proposal.config)
            with self._lock:
                state.proposals[trial._trial_id] = (proposal.config, key)
            return proposal.config

    def _propose(
        self,
        study: Study,
        trial: FrozenTrial,
        decision: Decision,
        state: StudyState,
        key: tuple,
        mapping: StudyMapping,
    ) -> _core.Proposal:
        """Gather the study's arrays, build the surrogate, and ask the core for a config."""
        rng = self._rng(trial, salt=2)
        view = StudyView(mapping, key, state, self._lock)
        obs, rows, pruned = view.observations(study)
        context = _core.StudyContext(
            fixed=view.fixed(obs, rows, trial),
            others=view.other_configs(study, trial),
            pruned=view.stack(pruned)[0],
            used_rows=_used_portfolio_rows(study, trial),
            observed_rows=np.array(
                [-1 if (row := _portfolio_row(t)) is None else row for t in rows], dtype=np.int64
            ),
        )
        # with n_startup_trials=0 the first trial has nothing to adapt to
        surrogate = None
        if decision.source != SOURCE_ZERO_SHOT and len(obs):
            surrogate = _core.build_surrogate(
                self._prior,
                mapping,
                obs,
                rng,
                weight=self._prior_weight(decision),
                max_observations=self._settings.max_observations,
                gp_params=lambda o: self._gp_params(study, o, state),
                residual_gp=self._residual_gp,
            )
        with self._lock:
            if self._portfolio_rows is None:
                self._portfolio_rows = _core.portfolio_rows(self._prior)
            rows_all = self._portfolio_rows
            portfolio = state.portfolio(key, lambda: mapping.portfolio(rows_all))
        proposal = _core.propose(
            self._prior,
            mapping,
            obs,
            context,
            self._settings,
            rng,
            surrogate=surrogate,
            portfolio_configs=portfolio,
        )
        with self._lock:
            state.adapted[trial._trial_id] = (obs.numbers, proposal.adapted)
        return proposal

    def _prior_weight(self, decision: Decision) -> float:
        """How much of the prior's mean the model keeps.

        The guard's trust, rescaled so that a prior at the guard's ceiling is kept whole.
        """
        return float(np.clip(decision.guard.trust / self._guard.ceiling, 0.0, 1.0))

    def _gp_params(self, study: Study, obs: _core.Observations, state: StudyState) -> GPParams:
        """Hyperparameters fitted on the first ``refit_point(n)`` observations (cached)."""
        point = min(_core.refit_point(len(obs)), len(obs))
        key = (study._study_id, obs.numbers[:point], obs.x.shape[1])
        with self._lock:
            cached = state.gp_params(key)
        if cached is not None:
            return cached
        limit = self._settings.max_observations
        params = _core.fit_gp_params(self._prior, obs.first(point), limit)
        with self._lock:
            state.keep_gp_params(key, params)
        return params

    # ------------------------------------------------------------------ evidence
    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        """Record the prior's prequential evidence on the finished trial, then clean up."""
        cache = self._bind(study)
        try:
            self._record_provenance(study, trial, cache)
            if (
                state == TrialState.COMPLETE
                and values is not None
                and len(values) == 1
                and not study._is_multi_objective()
            ):
                with one_blas_thread():
                    self._record_evidence(study, trial, float(values[0]), cache)
        finally:
            with self._lock:
                cache.forget(trial._trial_id)
            self._fallback.after_trial(study, trial, state, values)

    def _record_provenance(self, study: Study, trial: FrozenTrial, state: StudyState) -> None:
        """Which of the trial's values came from the prior, which from the fallback."""
        with self._lock:
            decision = state.decisions.get(trial._trial_id)
            answered = dict(state.answered.get(trial._trial_id, {}))
        if decision is None or decision.source == SOURCE_FALLBACK or not trial.params:
            return
        # values this sampler was not asked for were fixed (enqueued, PartialFixedSampler)
        sources = {name: answered.get(name, "fixed") for name in trial.params}
        self._set_attr(study, trial, TrialAttr.PARAM_SOURCES.key, sources)
        if answered and "prior" not in answered.values():  # all it set was the fallback's
            self._set_attr(study, trial, TrialAttr.SOURCE.key, SOURCE_FALLBACK)

    def _record_evidence(
        self, study: Study, trial: FrozenTrial, value: float, state: StudyState
    ) -> None:
        self._learn_space(state, [trial])
        key, mapping = self._mapping(study, state)
        view = StudyView(mapping, key, state, self._lock)
        xf = view.coordinates(trial)
        if xf is None:
            return
        obs, _, _ = view.observations(study, before=trial, exclude=trial.number, failures=False)
        if len(obs) < 2:
            return
        with self._lock:
            cached = state.adapted.get(trial._trial_id)
        if cached is not None and cached[0] == obs.numbers:
            adapted = cached[1]
        else:
            rng = self._rng(trial, salt=3)
            adapted = _core.adapt_to(self._prior, obs, self._settings.max_observations, rng)
        ev = _core.score_trial(adapted, xf[1], sign(study) * value, obs)
        if TrialAttr.PRED_MEAN.key not in trial.user_attrs:
            self._set_attr(study, trial, TrialAttr.PRED_MEAN.key, round(ev.pred_mean, 6))
            self._set_attr(study, trial, TrialAttr.PRED_STD.key, round(ev.pred_std, 6))
        if ev.concordance is not None:
            self._set_attr(study, trial, TrialAttr.CONCORDANCE.key, round(ev.concordance, 4))
            # the zero-shot prior on the same trials: what adapting to the study contributed
            zero = _core.score_trial(self._prior.adapt(), xf[1], sign(study) * value, obs)
            self._set_attr(
                study, trial, TrialAttr.CONCORDANCE_ZERO_SHOT.key, round(zero.concordance, 4)
            )
        # Whether following the prior paid: a prediction can rank the study's trials well
        # while the proposals it leads to are poor (a misleading prior, once adapted).
        source = TrialAttr.SOURCE.get(trial.user_attrs)
        if source in (SOURCE_ZERO_SHOT, SOURCE_ADAPTED) and ev.poor:
            self._set_attr(study, trial, TrialAttr.POOR.key, True)


def _fits(config: dict[str, Any], name: str, mapping: StudyMapping) -> bool:
    """Whether a proposal's value of ``name`` is valid in the mapping's distribution."""
    if name not in config:
        return False
    dist = mapping.space.params[name].distribution
    try:
        return bool(dist._contains(dist.to_internal_repr(config[name])))
    except (ValueError, TypeError):
        return False


def _check_counts(**counts: int) -> None:
    """Each count must reach its minimum (the error names the argument and the value)."""
    minimum = {"n_candidates": 1, "max_observations": 2}
    for name, value in counts.items():
        low = minimum.get(name, 0)
        if value < low:
            raise MttuneError(f"{name} must be >= {low}, got {value!r}.")


def _evidence(complete: Sequence[FrozenTrial]) -> list[float]:
    """The guard's evidence of finished trials, oldest first.

    A proposal of the prior that landed in the study's worst quarter counts as no evidence
    for the prior, however well the prior ranks it afterwards.
    """
    out = []
    for t in complete:
        c = TrialAttr.CONCORDANCE.get(t.user_attrs)
        if isinstance(c, int | float):
            out.append(0.0 if TrialAttr.POOR.get(t.user_attrs) else c)
    return out


def _portfolio_row(trial: FrozenTrial) -> int | None:
    """The trial's portfolio row (``None``: it is not a portfolio config)."""
    row = TrialAttr.PORTFOLIO.get(trial.user_attrs)
    return row if isinstance(row, int) else None


def _used_portfolio_rows(study: Study, trial: FrozenTrial) -> np.ndarray:
    """Portfolio rows already proposed in the study, tracked by row.

    With parameters fixed outside the sampler (``PartialFixedSampler``), a repeat is not a
    repeat in the joint space, but it would be in the parameters this sampler sets.
    """
    return np.array(
        [
            row
            for t in study.get_trials(deepcopy=False)
            if t.number != trial.number and (row := _portfolio_row(t)) is not None
        ],
        dtype=np.int64,
    )
