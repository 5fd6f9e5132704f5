"""A study's search space, read from the study itself.

mttune's own studies record their space (:attr:`StudyAttr.SPACE`). Every other Optuna study
still records, on each trial, the distribution of every parameter it set: the space is the
latest distribution of each parameter, and conditional parameters show as parameters some
trials lack. A parameter is taken as conditional on a categorical parameter when the
categorical's values on the trials that have it and on those that lack it never overlap
(``momentum`` only where ``optimizer`` is ``sgd``); a parameter missing from some trials for
no such reason (added later in the study) stays unconditional.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from tuner.space import Condition, Objective, Param, SearchSpace, SpaceError
from tuner.studies._attrs import StudyAttr

__all__ = ["recorded_space", "space_of_trials"]

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def recorded_space(user_attrs: dict[str, Any]) -> SearchSpace | None:
    """The space an mttune run recorded on its study, if it is readable."""
    data = StudyAttr.SPACE.get(user_attrs)
    if data is None:
        return None
    try:
        return SearchSpace.from_dict(data, source="the study's recorded space")
    except SpaceError:
        return None


def space_of_trials(
    trials: Sequence[FrozenTrial], direction: str, *, name: str | None = None
) -> SearchSpace | None:
    """The space of a study's trials (``None`` when no trial set a parameter)."""
    latest: dict[str, BaseDistribution] = {}
    for t in sorted(trials, key=lambda t: t.number):
        latest.update(t.distributions)
    # a trial that crashed half-way lacks parameters for no reason: only finished ones count
    with_params = [t for t in trials if t.params and t.state in _FINISHED]
    if not latest or not with_params:
        return None
    params: dict[str, Param] = {}
    for pname in _order(with_params, latest):
        condition = _condition(pname, with_params, params)
        params[pname] = Param(pname, latest[pname], condition)
    objective = Objective("value", direction)  # type: ignore[arg-type]
    space = SearchSpace(params=params, objective=objective, name=name)
    return SearchSpace.from_dict(space.to_dict(), source="the study's trials")


def _order(trials: Sequence[FrozenTrial], latest: dict[str, BaseDistribution]) -> list[str]:
    """Parameters in the order trials set them (categoricals first among ties)."""
    first: dict[str, tuple[int, int]] = {}
    for t in trials:
        for k, pname in enumerate(t.params):
            first.setdefault(pname, (t.number, k))
    return sorted(
        latest,
        key=lambda n: (
            first.get(n, (1 << 30, 0)),
            not isinstance(latest[n], CategoricalDistribution),
        ),
    )


def _condition(
    pname: str, trials: Sequence[FrozenTrial], earlier: dict[str, Param]
) -> Condition | None:
    """The categorical among ``earlier`` whose values tell when ``pname`` is set, if any."""
    have = [t for t in trials if pname in t.params]
    lack = [t for t in trials if pname not in t.params]
    if not lack:
        return None
    for parent in earlier.values():
        dist = parent.distribution
        if not isinstance(dist, CategoricalDistribution):
            continue
        if any(parent.name not in t.params for t in have):
            continue
        on = {_key(t.params[parent.name]) for t in have}
        off = {_key(t.params[parent.name]) for t in lack if parent.name in t.params}
        if on and not on & off:
            return Condition(parent.name, tuple(c for c in dist.choices if _key(c) in on))
    return None


def _key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, value)
