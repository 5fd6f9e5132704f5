"""A study's trials as the sampler core's arrays, in one mapping of the study's space.

:class:`StudyView` reads Optuna trials and gives the core what it needs: the observations
(study and prior coordinates), pinned and enqueued values, the configs of running trials and
pending proposals. Encodings of finished trials are cached in the :class:`StudyState`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from tuner.sampler import _core
from tuner.sampler._mapping import StudyMapping
from tuner.sampler._state import StudyState
from tuner.studies import TrialAttr

__all__ = ["StudyView", "enqueued", "sign"]


def sign(study: Study) -> float:
    """``+1`` when the study minimises, ``-1`` when it maximises."""
    return 1.0 if study.direction == StudyDirection.MINIMIZE else -1.0


def enqueued(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters the user enqueued for the trial (``study.enqueue_trial``)."""
    return trial.system_attrs.get("fixed_params", {})


class StudyView:
    """The study's trials in ``mapping``'s coordinates.

    Args:
        mapping: The study's space mapped onto the prior.
        key: The mapping's identity (for the encoding cache).
        state: The study's caches.
        lock: Guards ``state``.
    """

    def __init__(
        self, mapping: StudyMapping, key: tuple, state: StudyState, lock: threading.Lock
    ) -> None:
        self.mapping = mapping
        self._key = key
        self._state = state
        self._lock = lock

    def coordinates(self, trial: FrozenTrial) -> tuple[np.ndarray, np.ndarray] | None:
        """The trial's study and prior coordinates, or ``None`` when the prior sees nothing.

        A trial counts when it set at least one covered parameter with a value the mapping
        can place: any number for a numeric parameter, a known choice for a categorical.
        Finished trials never change, so their coordinates are cached.
        """
        finished = trial.state.is_finished()
        if finished:
            with self._lock:
                known, xf = self._state.encoding(self._key, trial._trial_id)
            if known:
                return xf
        config = self._config(trial.params)
        xf = None
        if config:
            f, _ = self.mapping.configs_to_prior([config])
            xf = (self.mapping.encode([config])[0], f[0])
        if finished:
            with self._lock:
                self._state.keep_encoding(self._key, trial._trial_id, xf)
        return xf

    def coordinates_of(
        self, trials: Sequence[FrozenTrial]
    ) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """:meth:`coordinates` of each trial: the cached ones looked up together."""
        finished = [t.state.is_finished() for t in trials]
        ids = [t._trial_id if done else -1 for t, done in zip(trials, finished, strict=True)]
        with self._lock:
            cached = self._state.encodings(self._key, ids)
        return [
            xf if known and done else self.coordinates(t)
            for t, done, (known, xf) in zip(trials, finished, cached, strict=True)
        ]

    def _config(self, params: dict[str, Any]) -> dict[str, Any]:
        space = self.mapping.space
        out = {}
        for name, value in params.items():
            param = space.params.get(name)
            if param is None:
                continue
            if isinstance(param.distribution, CategoricalDistribution):
                if value in param.distribution.choices:
                    out[name] = value
            elif isinstance(value, int | float) and not isinstance(value, bool):
                out[name] = value
        return out

    def observations(
        self,
        study: Study,
        *,
        before: FrozenTrial | None = None,
        exclude: int | None = None,
        failures: bool = True,
    ) -> tuple[_core.Observations, tuple[FrozenTrial, ...], tuple[FrozenTrial, ...]]:
        """Finished trials the prior sees, oriented so that lower is better.

        Failed trials (a crash, a NaN) count as worse than every completed one, so the
        sampler learns to avoid the regions where the script fails; trials that failed only
        because their runner was interrupted do not count.

        Returns:
            The observations, the trial behind each row, and the pruned trials the prior
            sees (not observations, but not worth proposing again).
        """
        states = (TrialState.COMPLETE, TrialState.FAIL) if failures else (TrialState.COMPLETE,)
        every = study.get_trials(deepcopy=False, states=(*states, TrialState.PRUNED))
        if before is not None and before.datetime_start is not None:
            every = [
                t
                for t in every
                if t.datetime_complete is not None and t.datetime_complete <= before.datetime_start
            ]
        seen = [
            (t, xf)
            for t, xf in zip(every, self.coordinates_of(every), strict=True)
            if xf is not None
        ]
        pruned = tuple(t for t, _ in seen if t.state == TrialState.PRUNED)
        kept = sorted(
            (
                (t, xf)
                for t, xf in seen
                if t.state in states
                and t.number != exclude
                and (t.value is not None or t.state == TrialState.FAIL)
                and not TrialAttr.INTERRUPTED.get(t.user_attrs)
            ),
            key=lambda pair: pair[0].number,
        )
        trials = [t for t, _ in kept]
        s = sign(study)
        y = np.array([np.nan if t.value is None else s * float(t.value) for t in trials])
        finite = y[np.isfinite(y)]
        worst = float(finite.max()) + 1.0 if len(finite) else 1.0
        failed = ~np.isfinite(y)
        x, f = _stacked([xf for _, xf in kept], self.mapping)
        obs = _core.Observations(
            numbers=tuple(t.number for t in trials),
            x=x,
            f=f,
            y=np.where(failed, worst, y),
            failed=failed,
        )
        return obs, tuple(trials), pruned

    def stack(self, trials: Sequence[FrozenTrial]) -> tuple[np.ndarray, np.ndarray]:
        """Study and prior coordinates of the trials the prior sees, as two arrays."""
        return _stacked(
            [xf for t in trials if (xf := self.coordinates(t)) is not None], self.mapping
        )

    def fixed(
        self, obs: _core.Observations, rows: Sequence[FrozenTrial], trial: FrozenTrial
    ) -> dict[str, Any]:
        """Values every candidate takes: pinned, enqueued and already sampled ones.

        The trial's own values count when a proposal is made again (a parameter showed a
        distribution the first proposal did not know). Enqueued values the study's covered
        space cannot hold are not the prior's business: the fallback's, as documented.
        """
        out = self._pinned(obs, rows)
        out.update((k, v) for k, v in enqueued(trial).items() if self._holds(k, v))
        out.update((k, v) for k, v in trial.params.items() if self._holds(k, v))
        return out

    def _holds(self, name: str, value: Any) -> bool:
        """Whether ``value`` is a valid value of the covered parameter ``name``."""
        param = self.mapping.space.params.get(name)
        if param is None:
            return False
        try:
            return bool(param.distribution._contains(param.distribution.to_internal_repr(value)))
        except (ValueError, TypeError):
            return False

    def _pinned(self, obs: _core.Observations, rows: Sequence[FrozenTrial]) -> dict[str, Any]:
        """Continuous parameters that took one value in every observed trial.

        Identical float values do not happen by chance: the user fixed them (for example with
        ``PartialFixedSampler``), so proposals are made at that value too. Only trials where
        the value was *not* enqueued count as evidence (3 or more): a few enqueued baselines
        at one value do not fix a parameter for the rest of the study.
        """
        if len(obs) < 3:
            return {}
        space, encoder = self.mapping.space, self.mapping.encoder
        out = {}
        for name, cols in encoder.param_slices().items():
            dist = space.params[name].distribution
            if (
                isinstance(dist, FloatDistribution)
                and dist.step is None
                and np.ptp(obs.x[:, cols]) == 0.0
                and len(values := {t.params.get(name) for t in rows}) == 1
                and sum(name not in enqueued(t) for t in rows) >= 3
                and self._holds(name, value := next(iter(values)))
            ):
                out[name] = value
        return out

    def other_configs(self, study: Study, trial: FrozenTrial) -> np.ndarray:
        """Study coordinates of the other running trials and of pending proposals."""
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        rows = [
            xf[0]
            for t in running
            if t.number != trial.number and t.params and (xf := self.coordinates(t)) is not None
        ]
        with self._lock:
            pending = [
                c for tid, (c, _) in self._state.proposals.items() if tid != trial._trial_id
            ]
        pending = [c for c in (self._config(p) for p in pending) if c]
        if pending:
            rows += list(self.mapping.encode(pending))
        return np.vstack(rows) if rows else np.zeros((0, self.mapping.dim))


def _stacked(rows: Sequence[tuple[np.ndarray, np.ndarray]], mapping: StudyMapping):
    """Study and prior coordinates of trials, ``(x, f)`` pairs, as two arrays."""
    if not rows:
        return np.zeros((0, mapping.dim)), np.zeros((0, mapping.prior.features.dim))
    return np.vstack([r[0] for r in rows]), np.vstack([r[1] for r in rows])
