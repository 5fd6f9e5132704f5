"""The methods compared by the transfer benchmark, each a factory of an Optuna sampler.

Every method gets the same inputs: the new task's space, a seed, and what the user would have
from past tuning (the past studies and, for mttune, the prior meta-trained from them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial
from scipy import stats

from tuner.metadataset import MetaDataset
from tuner.prior import MetaPrior
from tuner.sampler import MetaPriorSampler
from tuner.space import Encoder

ALL_METHODS = (
    "random",
    "tpe",
    "gp",
    "cmaes",
    "ws-cmaes",
    "portfolio",
    "prior-zero",
    "mttune",
    "mttune-misleading",
)
SLOW_METHODS = ("gp",)


@dataclasses.dataclass
class Context:
    """What past tuning gives each method."""

    past: MetaDataset
    prior: MetaPrior | None = None
    misleading_prior: MetaPrior | None = None
    portfolio: list[dict[str, Any]] | None = None


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
    value of ``s``'s trial nearest to ``c`` (in the unit-cube encoding); candidates are added
    one by one to minimise the mean over studies of the best estimated value in the set.
    """
    enc = Encoder(past.space)
    cands = [task.best_configs(1)[0] for task in past.tasks]
    xc = enc.encode_many(cands)
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
        enc = Encoder(self._past.space)
        x = enc.encode_many([t.params for t in done])
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


def make_method(name: str, ctx: Context, seed: int, direction: str, budget: int) -> BaseSampler:
    """The sampler of method ``name`` for one run."""
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
    }
    if name not in factories:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(ALL_METHODS)}")
    return factories[name]()


def _need(prior: MetaPrior | None) -> MetaPrior:
    if prior is None:
        raise ValueError("this method needs a meta-trained prior")
    return prior
