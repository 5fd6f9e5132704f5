"""A study's search space mapped onto a prior: what the prior covers, and the coordinates.

The sampler proposes in the *study's* space (the distributions the objective asks for), so
every proposal is a valid config of the study, whatever ranges the prior was trained on.
Each study parameter the prior knows (by name or alias) is *covered*: its values reach the
prior's network through the prior's coordinates (:class:`tuner.space.FeatureSpace`), which
hold any value of the parameter. The rest goes to the fallback sampler:

* a parameter the prior does not know;
* a categorical none of whose choices the prior knows (choices it does not know of an
  otherwise known categorical are covered: the prior sees them as unknown and the study's
  GP models them);
* a parameter that is numeric in the study and categorical in the prior (a categorical of
  numbers in the study maps onto a numeric parameter of the prior: a value is a value).

A value outside the range the prior was trained on is extrapolation: the network sees it at
the edge of its range and its uncertainty grows with the distance (:meth:`to_prior`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from tuner.prior import MetaPrior
from tuner.space import Condition, Encoder, Feature, FeatureSpace, Param, SearchSpace

__all__ = ["Coverage", "StudyMapping"]

# Beyond the prior's training range, its variance grows by its zero-shot variance for every
# quarter of that range (squared): far outside, the study's GP decides.
_EXTRAPOLATION_SCALE = 0.25


@dataclasses.dataclass(frozen=True)
class Coverage:
    """What a prior covers of a study's parameters.

    Attributes:
        covered: The study parameters the prior drives.
        fallback: The others, each with why it goes to the fallback sampler.
        notes: How covered parameters map (ranges, log flags, new choices).
    """

    covered: tuple[str, ...]
    fallback: dict[str, str]
    notes: tuple[str, ...]

    def summary(self) -> str:
        """One line, e.g. ``prior covers 6 of 8 parameters; lr ...; label_smoothing ...``."""
        n = len(self.covered) + len(self.fallback)
        parts = [f"prior covers {len(self.covered)} of {n} parameters"]
        parts += list(self.notes)
        parts += [f"{name}: {why}: fallback" for name, why in self.fallback.items()]
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (recorded on the study)."""
        return {
            "covered": list(self.covered),
            "fallback": self.fallback,
            "notes": list(self.notes),
        }


class StudyMapping:
    """The study's covered parameters as a search space, and their map onto the prior.

    Args:
        prior: The prior.
        distributions: The study's parameters (name -> distribution), in order.
        space: The study's declared space, when known (its conditions are kept).
    """

    def __init__(
        self,
        prior: MetaPrior,
        distributions: Mapping[str, BaseDistribution],
        space: SearchSpace | None = None,
    ) -> None:
        self.prior = prior
        covered: dict[str, Param] = {}
        fallback: dict[str, str] = {}
        notes: list[str] = []
        for name, dist in distributions.items():
            why = _why_not(prior.features.lookup(name), dist)
            if why is not None:
                fallback[name] = why
                continue
            feature = prior.features.lookup(name)
            assert feature is not None
            notes += _notes(name, feature, dist)
            covered[name] = Param(name, dist, _condition(name, space or prior.space, covered))
        self.coverage = Coverage(tuple(covered), fallback, tuple(notes))
        self.space = SearchSpace(params=covered)
        self.encoder = Encoder(self.space)
        self._study = FeatureSpace.from_space(self.space)
        self._feature_of = {n: prior.features.lookup(n).name for n in covered}  # type: ignore[union-attr]
        # per covered categorical: each choice's number or one-hot column in the prior
        self._choice_table = {
            n: _choice_table(prior.features.lookup(n), p.distribution)  # type: ignore[arg-type]
            for n, p in covered.items()
            if isinstance(p.distribution, CategoricalDistribution)
        }
        self._numeric = prior.features.numeric_columns()
        cal = prior.calibration
        self._extra_var = float(cal.b[cal.bucket(0)])

    @property
    def dim(self) -> int:
        """Columns of the study's coordinates."""
        return self.encoder.dim

    def covers(self, name: str, distribution: BaseDistribution) -> bool:
        """Whether the prior drives ``name`` asked with ``distribution``."""
        param = self.space.params.get(name)
        return param is not None and param.distribution == distribution

    # ------------------------------------------------------------------ coordinates
    def encode(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Study coordinates of configs (values outside the study's range map outside)."""
        return self._study.encode(configs)

    def to_prior(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prior coordinates of canonical study points, and the variance extrapolation adds.

        Numeric coordinates outside the prior's training range are clipped to it (the
        network is not trusted beyond its data); the returned variance grows with the
        distance beyond it.
        """
        values, active = self.encoder.decode_arrays(u)
        data, present = {}, {}
        for name, held in values.items():
            feature = self._feature_of[name]
            table = self._choice_table.get(name)
            data[feature] = held if table is None else table[held]
            present[feature] = active[name]
        return self._clipped(self.prior.features.encode_arrays(data, present, len(u)))

    def configs_to_prior(
        self, configs: Sequence[Mapping[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`to_prior` of configs (only the covered parameters count)."""
        columns = {
            self._feature_of[name]: [c.get(name) for c in configs] for name in self.space.names
        }
        return self._clipped(self.prior.features.encode_columns(columns, len(configs)))

    def _clipped(self, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Numeric prior coordinates clipped to ``[0, 1]``, and the variance that adds."""
        num = f[:, self._numeric]
        excess = np.maximum(np.maximum(num - 1.0, -num), 0.0).max(axis=1, initial=0.0)
        f[:, self._numeric] = np.clip(num, 0.0, 1.0)
        extra = self._extra_var * (excess / _EXTRAPOLATION_SCALE) ** 2
        return f, extra

    def portfolio(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The prior's portfolio configs ``rows`` as canonical points of the study's space.

        Numeric values are clipped into the study's ranges; a config whose value of a
        covered categorical is not a choice of the study is left out, and so are repeats.

        Returns:
            The points and the portfolio row of each.
        """
        configs = [self.prior.portfolio_configs[int(r)] for r in rows]
        if not configs or not self.space.names:
            return np.zeros((0, self.dim)), np.zeros(0, dtype=np.int64)
        u = np.clip(self.encode(configs), 0.0, 1.0)
        ok = np.ones(len(configs), dtype=bool)
        for name, cols in self.encoder.param_slices().items():
            dist = self.space.params[name].distribution
            if isinstance(dist, CategoricalDistribution):
                ok &= [c.get(name) is None or u[i, cols].any() for i, c in enumerate(configs)]
        points = self.encoder.canonicalize(u[ok])
        kept = np.asarray(rows)[ok]
        _, first = np.unique(points.round(12), axis=0, return_index=True)
        first = np.sort(first)
        return points[first], kept[first]


def _condition(name: str, space: SearchSpace, covered: Mapping[str, Param]) -> Condition | None:
    """The condition ``space`` puts on ``name``, if its parent is covered and can meet it.

    With no declared space this is the prior's own space: a define-by-run study gets the
    conditions the prior was trained with (its trials decide the rest).
    """
    param = space.params.get(name)
    condition = param.condition if param is not None else None
    if condition is None or condition.parent not in covered:
        return None
    parent = covered[condition.parent].distribution
    if not isinstance(parent, CategoricalDistribution):
        return None
    values = tuple(v for v in condition.values if v in parent.choices)
    return Condition(condition.parent, values) if values else None


def _choice_table(feature: Feature, dist: CategoricalDistribution) -> np.ndarray:
    """What each choice is in the prior: a number, or a one-hot column (``-1``: unknown)."""
    if feature.numeric:  # a categorical of numbers (see _why_not)
        return np.array([float(c) for c in dist.choices])
    return feature.choice_columns(dist.choices, np.ones(len(dist.choices), dtype=bool))


def _why_not(feature: Feature | None, dist: BaseDistribution) -> str | None:
    """Why the prior cannot drive a parameter (``None``: it can)."""
    if feature is None:
        return "new to the prior"
    if isinstance(dist, CategoricalDistribution):
        if feature.numeric:
            if all(_is_number(c) for c in dist.choices):
                return None
            return "categorical here, numeric in the prior"
        if not any(c in feature.choices for c in dist.choices):
            return "none of its choices is known to the prior"
        return None
    if not feature.numeric:
        return "numeric here, categorical in the prior"
    return None


def _notes(name: str, feature: Feature, dist: BaseDistribution) -> list[str]:
    """How a covered parameter maps (nothing when it is the prior's own)."""
    if isinstance(dist, CategoricalDistribution):
        if not feature.numeric:
            new = [c for c in dist.choices if c not in feature.choices]
            if new:
                return [f"{name} choices {new} are new to the prior (the study's GP models them)"]
        return []
    assert isinstance(dist, FloatDistribution | IntDistribution)
    assert feature.low is not None and feature.high is not None
    low, high = float(dist.low), float(dist.high)
    mine = f"{low:.4g}..{high:.4g}"
    out = []
    if (low, high) != (feature.low, feature.high):
        if feature.low <= low and high <= feature.high:
            out.append(f"{name} range {mine} lies inside the prior's {feature.describe()}")
        else:
            out.append(
                f"{name} range {mine} reaches beyond the prior's {feature.describe()} "
                "(extrapolation: less certain there)"
            )
    if dist.log != feature.log:
        axis = "log" if feature.log else "linear"
        out.append(f"{name} is modelled on the prior's {axis} axis")
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
