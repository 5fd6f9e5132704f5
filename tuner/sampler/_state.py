"""What :class:`~tuner.sampler.MetaPriorSampler` remembers about one storage's trials.

Every per-study cache lives in one :class:`StudyState`, made when the sampler first sees a
storage and dropped as a whole when it sees another one (or is pickled): a new cache is
added here, in one place, and cannot leak between studies. Trial ids are unique within a
storage only (two in-memory studies both start at 0), hence one state per storage.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

import numpy as np
from optuna.samplers import BaseSampler

from tuner.prior import AdaptedPrior
from tuner.sampler._gp import GPParams
from tuner.sampler._guard import GuardState
from tuner.sampler._mapping import StudyMapping

__all__ = ["Decision", "StudyState"]

# Bounds on the caches that grow with the study (a long study must not grow without limit).
_MAX_GP_PARAMS = 64
_MAX_ENCODINGS = 200_000
_MAX_MAPPINGS = 16


@dataclasses.dataclass(frozen=True)
class Decision:
    """Who proposes a trial's parameters, and the guard's state behind the choice.

    Attributes:
        source: ``prior``, ``adapted-prior`` or ``fallback``.
        guard: The guard's verdict when the trial started.
        startup: A fallback trial sampled uniformly at random (the fallback's start-up).
    """

    source: str
    guard: GuardState
    startup: bool = False


class StudyState:
    """The caches of one storage's trials, keyed by trial id.

    Attributes:
        decisions: Each running trial's :class:`Decision`.
        adapted: The adapted prior a running trial's proposal used, with the trial numbers
            it was adapted to (reused to score the trial when it finishes).
        proposals: Each running trial's proposed config (pending proposals keep parallel
            trials apart), with the key of the mapping it was made in.
        startup: The random samplers of fallback start-up trials.
        answered: Per running trial, who gave each value this sampler was asked for.
        known: The latest distribution of every parameter the study's trials set.
        warned: The warnings already given for this study (each is given once).
    """

    def __init__(self, storage: Any) -> None:
        self._storage = weakref.ref(storage)
        self.decisions: dict[int, Decision] = {}
        self.adapted: dict[int, tuple[tuple[int, ...], AdaptedPrior]] = {}
        self.proposals: dict[int, tuple[dict[str, Any], tuple]] = {}
        self.startup: dict[int, BaseSampler] = {}
        self.answered: dict[int, dict[str, str]] = {}
        self.known: dict[str, Any] = {}
        self.warned: set[str] = set()
        self._gp_params: dict[tuple[int, tuple[int, ...]], GPParams] = {}
        self._mappings: dict[tuple, StudyMapping] = {}
        self._portfolios: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._encodings: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
        self._encodings_key: tuple | None = None

    def serves(self, storage: Any) -> bool:
        """Whether this state is that of ``storage``."""
        return self._storage() is storage

    def forget(self, trial_id: int) -> None:
        """Drop what was kept for a running trial (it finished)."""
        self.decisions.pop(trial_id, None)
        self.adapted.pop(trial_id, None)
        self.proposals.pop(trial_id, None)
        self.startup.pop(trial_id, None)
        self.answered.pop(trial_id, None)

    def gp_params(self, key: tuple[int, tuple[int, ...]]) -> GPParams | None:
        """Cached GP hyperparameters for ``(study id, trial numbers fitted on)``."""
        return self._gp_params.get(key)

    def keep_gp_params(self, key: tuple[int, tuple[int, ...]], params: GPParams) -> None:
        """Cache GP hyperparameters (the cache is bounded)."""
        if len(self._gp_params) > _MAX_GP_PARAMS:
            self._gp_params.clear()
        self._gp_params[key] = params

    def mapping(self, key: tuple, make: Any) -> StudyMapping:
        """The mapping of the study's space ``key`` (made by ``make()`` the first time)."""
        mapping = self._mappings.get(key)
        if mapping is None:
            if len(self._mappings) > _MAX_MAPPINGS:
                self._mappings.clear()
                self._portfolios.clear()
            mapping = self._mappings[key] = make()
        return mapping

    def portfolio(self, key: tuple, make: Any) -> tuple[np.ndarray, np.ndarray]:
        """The portfolio as points of the space ``key`` (made by ``make()`` once)."""
        if key not in self._portfolios:
            self._portfolios[key] = make()
        return self._portfolios[key]

    def _encodings_for(self, key: tuple) -> None:
        """Point the encoding cache at the space ``key``, emptying it when the space changed.

        Keys hold Optuna distributions, whose ``==`` is slow; the cache keeps the key object
        last seen, so the many lookups of one proposal compare by identity.
        """
        if key is self._encodings_key:
            return
        if key != self._encodings_key:
            self._encodings.clear()
        self._encodings_key = key

    def encoding(self, key: tuple, trial_id: int) -> tuple[bool, Any]:
        """``(known, (x, f))`` of a finished trial in the space ``key`` (``None``: no fit)."""
        self._encodings_for(key)
        if trial_id in self._encodings:
            return True, self._encodings[trial_id]
        return False, None

    def encodings(self, key: tuple, trial_ids: list[int]) -> list[tuple[bool, Any]]:
        """:meth:`encoding` of many trials at once (one lookup of the space per call)."""
        self._encodings_for(key)
        cache = self._encodings
        return [(True, cache[i]) if i in cache else (False, None) for i in trial_ids]

    def keep_encoding(self, key: tuple, trial_id: int, xf: Any) -> None:
        """Cache a finished trial's coordinates (finished trials never change)."""
        self._encodings_for(key)
        if len(self._encodings) > _MAX_ENCODINGS:
            self._encodings.clear()
        self._encodings[trial_id] = xf
