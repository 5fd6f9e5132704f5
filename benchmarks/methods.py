"""The methods compared by the transfer benchmark, each a factory of an Optuna sampler.

Every method gets the same inputs: the new task's space, a seed, and what the user would have
from past tuning (the past studies and, for mttune, the prior meta-trained from them).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial
from scipy import stats

from tuner.metadataset import MetaDataset, observation_targets
from tuner.prior import MEASURED_STRATEGIES, MetaPrior
from tuner.sampler import MetaPriorSampler
from tuner.sampler._acquisition import candidates, expected_improvement
from tuner.sampler._gp import ResidualGP, fit_gp
from tuner.space import Encoder, SearchSpace

ALL_METHODS = (
    "random",
    "tpe",
    "gp",
    "cmaes",
    "ws-cmaes",
    "portfolio",
    "meta-learn-tpe",
    "prior-zero",
    "mttune",
    "mttune-misleading",
    "mttune-fomaml",
    "mttune-nomaml",
    "mttune-metasgd",
    "mttune-support48",
    "mttune-cavia",
    "mttune-cavia-lr01",
    "mttune-cavia-lr03",
    "mttune-nogp",
    "mttune-model",
    "mttune-hedge-1",
    "mttune-hedge-3",
    "mttune-hedge",
    "mttune-nomaml-model",
    "mttune-nomaml-hedge-1",
    "mttune-nomaml-hedge-3",
    "mttune-nomaml-hedge",
    "gp-only",
)
SLOW_METHODS = ("gp",)
# the ablation priors: method -> (prior name, extra `mttune meta-train` arguments)
ABLATION_PRIORS = {
    "mttune-fomaml": ("fomaml", "--first-order"),
    "mttune-nomaml": ("nomaml", "--inner-steps 0"),
    # the same prior, meta-trained once, with each first-trial strategy
    **{
        f"mttune-nomaml-{strategy}": ("nomaml", "--inner-steps 0")
        for strategy in MEASURED_STRATEGIES
    },
    "mttune-metasgd": ("metasgd", "--inner-lr-shape element"),
    "mttune-support48": ("support48", "--max-support 48"),
    "mttune-cavia": ("cavia", "--context 4"),
    "mttune-cavia-lr01": ("cavia-lr01", "--context 4 --context-lr 0.1"),
    "mttune-cavia-lr03": ("cavia-lr03", "--context 4 --context-lr 0.3"),
}


@dataclasses.dataclass
class Context:
    """What past tuning gives each method.

    Attributes:
        past: The past studies as a meta-dataset.
        prior: The prior meta-trained from them as shipped (``mttune meta-train``).
        misleading_prior: One meta-trained on the same studies with the objective inverted.
        portfolio: The past studies' best configs, ordered greedily (:func:`greedy_portfolio`).
        ablation_priors: The ablations' priors by name (:data:`ABLATION_PRIORS`).
        past_db: The past studies' storage (SQLite file or journal), for the peers that read
            Optuna studies (Meta-Learn TPE).
        meta_learn_tpe: The folder of OptunaHub's ``meta_learn_tpe`` package.
    """

    past: MetaDataset
    prior: MetaPrior | None = None
    misleading_prior: MetaPrior | None = None
    portfolio: list[dict[str, Any]] | None = None
    ablation_priors: dict[str, MetaPrior] = dataclasses.field(default_factory=dict)
    past_db: str | None = None
    meta_learn_tpe: str | None = None


class FixedSequenceSampler(BaseSampler):
    """Tries a fixed list of configs in turn, then falls back (the zero-shot portfolio)."""

    def __init__(self, configs: Sequence[Mapping[str, Any]], fallback: BaseSampler) -> None:
        self._configs = [dict(c) for c in configs]
        self._fallback = fallback

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def sample_independent(self, study, trial: FrozenTrial, name: str, dist) -> Any:
        if trial.number < len(self._configs):
            cfg = self._configs[trial.number]
            if name in cfg and dist._contains(dist.to_internal_repr(cfg[name])):
                return cfg[name]
        return self._fallback.sample_independent(study, trial, name, dist)


def greedy_portfolio(past: MetaDataset, size: int | None = None) -> list[dict[str, Any]]:
    """A zero-shot portfolio: each past study's best config, ordered greedily.

    The performance of candidate ``c`` on past study ``s`` is estimated by the normalised
    value of ``s``'s trial nearest to ``c`` (in the prior's coordinates, those of the
    studies' ``x``); candidates are added one by one to minimise the mean over studies of
    the best estimated value in the set.
    """
    cands = [task.best_configs(1)[0] for task in past.tasks]
    xc = past.features.encode(cands)
    perf = np.empty((len(cands), len(past.tasks)))
    for j, task in enumerate(past.tasks):
        d = ((xc[:, None, :] - task.x[None]) ** 2).sum(-1)
        perf[:, j] = task.z[d.argmin(axis=1)]
    chosen: list[int] = []
    current = np.full(len(past.tasks), np.inf)
    size = len(cands) if size is None else min(size, len(cands))
    for _ in range(size):
        gains = [
            np.inf if i in chosen else np.minimum(current, perf[i]).mean()
            for i in range(len(cands))
        ]
        best = int(np.argmin(gains))
        chosen.append(best)
        current = np.minimum(current, perf[best])
    return [cands[i] for i in chosen]


class WarmStartCmaEs(BaseSampler):
    """WS-CMA-ES with source trials from the most similar past study.

    The first ``n_probe`` trials are random probes; the past study whose nearest-neighbour
    values rank them most alike (Kendall tau) is taken as the most similar, and CMA-ES warm
    starts from its trials (``CmaEsSampler(source_trials=...)``).
    """

    def __init__(self, past: MetaDataset, seed: int, direction: str, n_probe: int = 5) -> None:
        self._past = past
        self._seed = seed
        self._direction = direction
        self._n_probe = n_probe
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._cma: BaseSampler | None = None

    def _sampler(self, study: optuna.Study) -> BaseSampler:
        done = [t for t in study.get_trials(deepcopy=False) if t.value is not None]
        if len(done) < self._n_probe:
            return self._random
        if self._cma is None:
            task = self._most_similar(done)
            sign = 1.0 if task.direction == self._direction else -1.0
            keys = set(self._cma_space)
            source = [
                optuna.trial.create_trial(
                    params={k: c[k] for k in keys},
                    distributions=dict(self._cma_space),
                    value=sign * float(v),
                )
                for c, v in zip(task.configs, task.values, strict=True)
                if keys <= c.keys()
            ]
            self._cma = optuna.samplers.CmaEsSampler(
                seed=self._seed, source_trials=source or None, warn_independent_sampling=False
            )
        return self._cma

    @property
    def _cma_space(self) -> dict[str, BaseDistribution]:
        """CMA-ES runs over the numeric parameters that are always active (a fixed space, as
        warm-starting needs source trials over exactly that space); the rest is random."""
        from optuna.distributions import CategoricalDistribution

        return {
            p.name: p.distribution
            for p in self._past.space
            if p.condition is None and not isinstance(p.distribution, CategoricalDistribution)
        }

    def _most_similar(self, done: list[FrozenTrial]):
        x = self._past.features.encode([t.params for t in done])  # the tasks' coordinates
        y = np.array([t.value for t in done])
        y = y if self._direction == "minimize" else -y
        best_tau, best_task = -np.inf, self._past.tasks[0]
        for task in self._past.tasks:
            d = ((x[:, None, :] - task.x[None]) ** 2).sum(-1)
            tau = stats.kendalltau(task.z[d.argmin(axis=1)], y).statistic
            if np.isfinite(tau) and tau > best_tau:
                best_tau, best_task = tau, task
        return best_task

    def infer_relative_search_space(self, study, trial):
        return self._cma_space if self._sampler(study) is self._cma else {}

    def sample_relative(self, study, trial, search_space):
        if not search_space:
            return {}
        return self._sampler(study).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, name, dist):
        return self._random.sample_independent(study, trial, name, dist)

    def after_trial(self, study, trial, state, values):
        self._sampler(study).after_trial(study, trial, state, values)


class PriorFreeGP(BaseSampler):
    """mttune's residual GP with no prior at all: the ``gp-only`` ablation.

    The first ``n_startup`` trials are uniformly random; then a GP of the same kind as the
    sampler's (:mod:`tuner.sampler._gp`: Matern-5/2, MAP hyperparameters) is fitted to the
    study's rank-normalised values (zero mean, where mttune's GP sits on the adapted prior),
    and the next config maximises expected improvement over the sampler's candidates
    (uniform random ones, or every config of a small grid, and local moves around the best
    three), never one already evaluated.
    """

    def __init__(
        self, space: SearchSpace, *, seed: int, n_startup: int = 2, n_candidates: int = 256
    ) -> None:
        self._space = space
        self._encoder = Encoder(space)
        self._seed = seed
        self._n_startup = n_startup
        self._n_candidates = n_candidates
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._proposals: dict[int, dict[str, Any]] = {}

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def sample_independent(self, study, trial: FrozenTrial, name: str, dist) -> Any:
        done = [t for t in study.get_trials(deepcopy=False) if t.value is not None]
        if len(done) < self._n_startup:
            return self._random.sample_independent(study, trial, name, dist)
        if trial.number not in self._proposals:
            direction = study.direction.name.lower()
            self._proposals[trial.number] = self._propose(done, direction, trial)
        cfg = self._proposals[trial.number]
        if name in cfg and dist._contains(dist.to_internal_repr(cfg[name])):
            return cfg[name]
        return self._random.sample_independent(study, trial, name, dist)

    def _propose(self, done: list[FrozenTrial], direction: str, trial) -> dict[str, Any]:
        rng = np.random.default_rng([self._seed, trial.number])
        x = self._encoder.encode_many([t.params for t in done])
        r = observation_targets([t.value for t in done], direction)
        gp = ResidualGP(x, r, fit_gp(x, r))
        best = x[np.argsort(r, kind="stable")[:3]]
        cands = candidates(
            self._encoder,
            rng,
            n_random=self._n_candidates,
            portfolio=np.zeros((0, self._encoder.dim)),
            incumbents=best,
        )
        d = ((cands[:, None, :] - x[None]) ** 2).mean(-1).min(axis=1)
        cands = cands[d >= 1e-6] if (d >= 1e-6).any() else cands
        mean, var = gp.predict(cands)
        score = expected_improvement(mean, np.sqrt(np.maximum(var, 0.0)), float(r.min()))
        return self._encoder.decode(cands[int(np.argmax(score))])

    def after_trial(self, study, trial, state, values) -> None:
        self._proposals.pop(trial.number, None)


@functools.cache
def _peer_class(folder: str) -> type[BaseSampler]:
    """OptunaHub's ``MetaLearnTPESampler``, imported from ``folder`` (never copied here)."""
    path = Path(folder) / "sampler.py"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: pass --meta-learn-tpe with the folder of OptunaHub's "
            "meta_learn_tpe package (e.g. ../shared/peers/meta_learn_tpe)"
        )
    spec = importlib.util.spec_from_file_location("meta_learn_tpe_peer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MetaLearnTPESampler


def meta_learn_tpe(folder: str, sources: Sequence[optuna.Study], seed: int) -> BaseSampler:
    """Meta-Learn TPE (Watanabe et al., IJCAI 2023) from ``folder``, run on Optuna 5.

    Written for Optuna 4.1, it fails on Optuna 5 in two places (its ``SOURCE.md``); a
    subclass adapts it without touching its files: its inner TPE samplers are made with
    the default ``gamma`` (Optuna 5 leaves it unset until a sampler resolves it, and the
    peer calls it directly), and its Parzen estimators split the trials with Optuna 5's
    ``_split_trials`` (no ``constraints_enabled`` keyword).
    """
    import warnings

    from optuna.samplers._tpe import sampler as tpe_module

    base = _peer_class(folder)

    class MetaLearnTPEOnOptuna5(base):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            with warnings.catch_warnings():  # gamma is deprecated, but the peer reads it
                warnings.simplefilter("ignore")
                self._target_sampler = self._tpe(seed, self._n_startup_trials)
                self._source_samplers = [
                    self._tpe(seed + i + 1, 0) for i in range(len(self._source_studies))
                ]

        def _tpe(self, tpe_seed: int, n_startup: int) -> optuna.samplers.TPESampler:
            return optuna.samplers.TPESampler(
                seed=tpe_seed,
                multivariate=True,
                n_startup_trials=n_startup,
                n_ei_candidates=self._n_ei_candidates,
                gamma=tpe_module.default_gamma,
            )

        def _build_parzen_estimators(self, study, search_space, trials, sampler=None):
            sampler = sampler or self._target_sampler
            n_below = max(1, int(sampler._gamma(len(trials))))
            below, above = tpe_module._split_trials(study, trials, n_below)
            return (
                sampler._build_parzen_estimator(study, search_space, below, handle_below=True),
                sampler._build_parzen_estimator(study, search_space, above, handle_below=False),
            )

    return MetaLearnTPEOnOptuna5(source_studies=list(sources), seed=seed)


@functools.cache
def source_studies(db: str) -> tuple[optuna.Study, ...]:
    """The past studies in ``db``, each copied into an in-memory study (fast repeated reads)."""
    from optuna.storages.journal import JournalFileBackend

    if db.endswith(".log"):
        storage = optuna.storages.JournalStorage(JournalFileBackend(db))
    else:
        storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    out = []
    for summary in sorted(storage.get_all_studies(), key=lambda s: s.study_name):
        stored = optuna.load_study(study_name=summary.study_name, storage=storage)
        study = optuna.create_study(directions=stored.directions)
        study.add_trials(stored.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
        out.append(study)
    return tuple(out)


def make_method(
    name: str,
    ctx: Context,
    seed: int,
    direction: str,
    budget: int,
    space: SearchSpace | None = None,
) -> BaseSampler:
    """The sampler of method ``name`` for one run (``space``: the task's, for ``gp-only``)."""
    factories: dict[str, Callable[[], BaseSampler]] = {
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
        "ws-cmaes": lambda: WarmStartCmaEs(ctx.past, seed, direction),
        "portfolio": lambda: FixedSequenceSampler(
            ctx.portfolio or [], optuna.samplers.RandomSampler(seed=seed)
        ),
        "prior-zero": lambda: MetaPriorSampler(
            _need(ctx.prior), n_startup_trials=budget, seed=seed
        ),
        "mttune": lambda: MetaPriorSampler(_need(ctx.prior), seed=seed),
        "mttune-misleading": lambda: MetaPriorSampler(_need(ctx.misleading_prior), seed=seed),
        "mttune-fomaml": lambda: MetaPriorSampler(
            _need(ctx.ablation_priors.get("fomaml")), seed=seed
        ),
        "mttune-nomaml": lambda: MetaPriorSampler(
            _need(ctx.ablation_priors.get("nomaml")), seed=seed
        ),
        "mttune-metasgd": lambda: MetaPriorSampler(
            _need(ctx.ablation_priors.get("metasgd")), seed=seed
        ),
        "mttune-support48": lambda: MetaPriorSampler(
            _need(ctx.ablation_priors.get("support48")), seed=seed
        ),
        "mttune-cavia": lambda: MetaPriorSampler(
            _need(ctx.ablation_priors.get("cavia")), seed=seed
        ),
        "mttune-cavia-lr01": lambda: MetaPriorSampler(
            _need(ctx.ablation_priors.get("cavia-lr01")), seed=seed
        ),
        "mttune-cavia-lr03": lambda: MetaPriorSampler(
            _need(ctx.ablation_priors.get("cavia-lr03")), seed=seed
        ),
        "mttune-nogp": lambda: MetaPriorSampler(_need(ctx.prior), seed=seed, residual_gp=False),
        # each first-trial strategy forced, for both priors: `mttune-nomaml-model` against
        # `mttune-model` is the like-for-like ablation (the hedged trials ignore the network)
        **{
            f"mttune-{strategy}": lambda s=strategy: MetaPriorSampler(
                _need(ctx.prior), seed=seed, early_strategy=s
            )
            for strategy in MEASURED_STRATEGIES
        },
        **{
            f"mttune-nomaml-{strategy}": lambda s=strategy: MetaPriorSampler(
                _need(ctx.ablation_priors.get("nomaml")), seed=seed, early_strategy=s
            )
            for strategy in MEASURED_STRATEGIES
        },
        "gp-only": lambda: PriorFreeGP(space or ctx.past.space, seed=seed),
        "meta-learn-tpe": lambda: meta_learn_tpe(
            _need_path(ctx.meta_learn_tpe, "--meta-learn-tpe"),
            source_studies(_need_path(ctx.past_db, "the past studies' storage")),
            seed,
        ),
    }
    if name not in factories:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(ALL_METHODS)}")
    return factories[name]()


def _need(prior: MetaPrior | None) -> MetaPrior:
    if prior is None:
        raise ValueError("this method needs a meta-trained prior")
    return prior


def _need_path(path: str | None, what: str) -> str:
    if path is None:
        raise ValueError(f"this method needs {what}")
    return path
