"""The union of search spaces: one space that holds every config of several studies.

Tuning histories drift: a range is narrowed, a parameter added, a log flag dropped, an int
asked as a float. :func:`union_spaces` pools such spaces by parameter name:

* numeric parameters (int or float) take the union of their ranges; an ``int`` stays an int
  only if every space has it as one; the axis is ``log`` if any space models it on a log axis
  (and the union stays positive); a ``step`` survives only if every space has the same one;
* categorical parameters take the union of their choices, in order of first appearance;
* a condition survives only if every space that has the parameter has the same condition
  (else the parameter is unconditional: a prior's presence column models when it is set);
* a parameter that is numeric in one space and categorical in another cannot be pooled: it is
  left out, and the notes say so.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from tuner.space._schema import Condition, Objective, Param, SearchSpace, SpaceError

__all__ = ["union_spaces"]


def union_spaces(
    spaces: Sequence[SearchSpace], *, name: str | None = None
) -> tuple[SearchSpace, list[str]]:
    """One space holding every config of ``spaces``, and notes on what was pooled how.

    Raises:
        SpaceError: if ``spaces`` is empty or no parameter can be pooled.
    """
    if not spaces:
        raise SpaceError("no search space to pool.")
    notes: list[str] = []
    by_name: dict[str, list[Param]] = {}
    for space in spaces:
        for p in space:
            by_name.setdefault(p.name, []).append(p)
    params: dict[str, Param] = {}
    for pname, versions in by_name.items():
        dist = _union_distribution(pname, [p.distribution for p in versions], notes)
        if dist is None:
            continue
        conditions = {p.condition for p in versions}
        condition = versions[0].condition if len(conditions) == 1 else None
        if len(conditions) > 1:
            notes.append(f"'{pname}': its condition differs between studies: unconditional")
        if len(versions) < len(spaces):
            notes.append(f"'{pname}': in {len(versions)} of {len(spaces)} studies")
        params[pname] = Param(pname, dist, condition, versions[0].help)
    params = _valid_conditions(params, notes)
    if not params:
        raise SpaceError("the studies' parameters cannot be pooled: " + "; ".join(notes))
    space = SearchSpace(params=params, objective=_objective(spaces, notes), name=name)
    return SearchSpace.from_dict(space.to_dict(), source="<pooled studies>"), notes


def _union_distribution(
    name: str, dists: Sequence[BaseDistribution], notes: list[str]
) -> BaseDistribution | None:
    if all(isinstance(d, CategoricalDistribution) for d in dists):
        choices: list = []
        for d in dists:
            assert isinstance(d, CategoricalDistribution)
            choices += [c for c in d.choices if not any(_same(c, k) for k in choices)]
        if len({tuple(d.choices) for d in dists}) > 1:  # type: ignore[union-attr]
            notes.append(f"'{name}': choices pooled to {choices}")
        return CategoricalDistribution(choices)
    if any(isinstance(d, CategoricalDistribution) for d in dists):
        notes.append(f"'{name}': numeric in some studies, categorical in others: left out")
        return None
    numeric = [d for d in dists if isinstance(d, FloatDistribution | IntDistribution)]
    low = min(d.low for d in numeric)
    high = max(d.high for d in numeric)
    log = any(d.log for d in numeric) and low > 0
    steps = {d.step for d in numeric}
    is_int = all(isinstance(d, IntDistribution) for d in numeric)
    if len({(type(d).__name__, d.low, d.high, d.log, d.step) for d in numeric}) > 1:
        notes.append(f"'{name}': ranges pooled to {low:g}..{high:g}{' log' if log else ''}")
    if is_int:
        step = next(iter(steps)) if len(steps) == 1 and not log else 1
        if (int(high) - int(low)) % int(step or 1):
            step = 1
        return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
    step = next(iter(steps)) if len(steps) == 1 and not log else None
    if step is not None and abs((high - low) / step - round((high - low) / step)) > 1e-8:
        step = None
    return FloatDistribution(float(low), float(high), log=log, step=step)


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b


def _valid_conditions(params: dict[str, Param], notes: list[str]) -> dict[str, Param]:
    """Drop conditions whose parent was left out, or whose values are no longer choices."""
    out: dict[str, Param] = {}
    for p in params.values():
        c = p.condition
        if c is not None:
            parent = out.get(c.parent)
            ok = (
                parent is not None
                and isinstance(parent.distribution, CategoricalDistribution)
                and all(v in parent.distribution.choices for v in c.values)
            )
            if not ok:
                notes.append(f"'{p.name}': its condition on '{c.parent}' cannot hold: dropped")
                p = Param(p.name, p.distribution, None, p.help)
            else:
                p = Param(p.name, p.distribution, Condition(c.parent, c.values), p.help)
        out[p.name] = p
    return out


def _objective(spaces: Sequence[SearchSpace], notes: list[str]) -> Objective:
    names = collections.Counter(s.objective.name for s in spaces)
    directions = collections.Counter(s.objective.direction for s in spaces)
    if len(directions) > 1:
        notes.append(f"objective directions differ ({dict(directions)}): each study is oriented")
    return Objective(names.most_common(1)[0][0], directions.most_common(1)[0][0])
