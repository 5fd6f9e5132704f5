"""Configs of a study: grouping repeated runs, and the unit-cube encoding review models use."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from tuner._errors import MttuneError
from tuner.review._load import StudyData
from tuner.space import Encoder, SearchSpace

__all__ = ["Codec", "ConfigGroup", "ConfigIndex", "config_key", "covering_distributions"]

ConfigKey = frozenset[tuple[str, Any]]


def config_key(params: Mapping[str, Any]) -> ConfigKey:
    """A hashable identity of a config (runs with identical parameters share it)."""
    return frozenset(params.items())


@dataclasses.dataclass
class ConfigGroup:
    """The completed runs of one config.

    Attributes:
        key: The config's identity.
        params: The parameters.
        rows: Indices (into the :class:`StudyData` columns) of every completed run of it.
        search_rows: Those made by the search (not by ``mttune verify``).
        repeat_rows: Those made by ``mttune verify`` as fresh-seed repeats.
        y: Oriented (lower-better) values of ``rows``.
    """

    key: ConfigKey
    params: dict[str, Any]
    rows: list[int]
    search_rows: list[int]
    repeat_rows: list[int]
    y: np.ndarray

    @property
    def n(self) -> int:
        """Completed runs."""
        return len(self.rows)

    def representative(self, data: StudyData) -> int:
        """The trial number that names this config: its first search trial (else first run)."""
        rows = self.search_rows or self.rows
        return int(data.numbers[rows[0]])

    def numbers(self, data: StudyData) -> list[int]:
        """Trial numbers of every completed run."""
        return [int(data.numbers[i]) for i in self.rows]


class ConfigIndex:
    """The completed, finite runs of a study grouped by config (identical parameters).

    Grouping is vectorised over the internal parameter values, so a 100,000-trial study
    groups in milliseconds; :class:`ConfigGroup` objects are only built for the configs
    asked for.

    Args:
        data: The study.
    """

    def __init__(self, data: StudyData) -> None:
        self.data = data
        self.complete = np.flatnonzero((data.states == "COMPLETE") & np.isfinite(data.values))
        self.y = data.sign * data.values
        x = np.ascontiguousarray(data.internal[self.complete], dtype=np.float64)
        if x.shape[1] == 0:
            x = np.zeros((len(self.complete), 1))
        keys = x.view(np.dtype((np.void, 8 * x.shape[1]))).ravel()
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        self._inverse = inverse.ravel()
        self.counts = counts
        self._order = np.argsort(self._inverse, kind="stable")
        self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self._cache: dict[int, ConfigGroup] = {}

    def __len__(self) -> int:
        return len(self.counts)

    def group(self, gid: int) -> ConfigGroup:
        """The group of config ``gid``."""
        cached = self._cache.get(gid)
        if cached is not None:
            return cached
        start = self._starts[gid]
        rows = np.sort(self.complete[self._order[start : start + self.counts[gid]]]).tolist()
        data = self.data
        params = dict(data.params[rows[0]])
        group = ConfigGroup(
            key=config_key(params),
            params=params,
            rows=rows,
            search_rows=[i for i in rows if not data.verification[i]],
            repeat_rows=[i for i in rows if data.tags.get(i, {}).get("kind") == "repeat"],
            y=self.y[rows],
        )
        self._cache[gid] = group
        return group

    def group_of_row(self, row: int) -> ConfigGroup:
        """The group of the completed run at ``row``."""
        return self.group(int(self._inverse[np.searchsorted(self.complete, row)]))

    def repeated(self) -> list[ConfigGroup]:
        """The configs run more than once."""
        return [self.group(int(g)) for g in np.flatnonzero(self.counts >= 2)]

    def single_rows(self) -> np.ndarray:
        """Rows of the configs run exactly once, best value first."""
        rows = self.complete[self.counts[self._inverse] == 1]
        return rows[np.argsort(self.y[rows], kind="stable")]


def covering_distributions(data: StudyData) -> dict[str, BaseDistribution]:
    """The latest distributions, numeric ranges widened to every range the study used.

    Optuna lets a define-by-run study change a parameter's range; a config from an earlier
    range (often the best one) must still be encoded where it is, not clipped or dropped.
    A widened range loses its step (the old values need not lie on its grid).
    """
    numeric = FloatDistribution | IntDistribution
    ranges: dict[int, list[tuple[float, float, bool]]] = {}
    for (_, j), d in data.cell_distributions.items():
        if isinstance(d, numeric):
            ranges.setdefault(j, []).append((d.low, d.high, d.log))
    out: dict[str, BaseDistribution] = {}
    for j, (name, dist) in enumerate(data.distributions.items()):
        out[name] = dist
        if not isinstance(dist, numeric) or j not in ranges:
            continue
        low = min([dist.low] + [r[0] for r in ranges[j]])
        high = max([dist.high] + [r[1] for r in ranges[j]])
        if low == dist.low and high == dist.high:
            continue
        log = dist.log and low > 0
        if isinstance(dist, FloatDistribution):
            out[name] = FloatDistribution(low, high, log=log)
        else:
            out[name] = IntDistribution(int(low), int(high), log=log)
    return out


class Codec:
    """Encodes configs of a study to the unit cube: :class:`tuner.space.Encoder` on its space.

    A parameter that cannot be part of a search space is left out (and its reason kept in
    :attr:`skipped`). A parameter a config does not have (conditional, or added later in a
    define-by-run study), or whose value is outside its distribution, takes the neutral value
    (``0.5``, or all-zero for a categorical's one-hot block), as the space encoding does for
    inactive parameters.

    Args:
        distributions: The parameters' distributions, in order.
    """

    def __init__(self, distributions: Mapping[str, BaseDistribution]) -> None:
        self.skipped: dict[str, str] = {}
        self._distributions: dict[str, BaseDistribution] = {}
        for name, dist in distributions.items():
            try:
                SearchSpace.from_distributions({name: dist})
            except MttuneError as e:
                self.skipped[name] = str(e)
                continue
            self._distributions[name] = dist
        self._encoder = (
            Encoder(SearchSpace.from_distributions(self._distributions))
            if self._distributions
            else None
        )
        self._slices = self._encoder.param_slices() if self._encoder else {}
        self.dim = self._encoder.dim if self._encoder else 0

    @property
    def names(self) -> list[str]:
        """Encoded parameters, in order."""
        return list(self._distributions)

    @property
    def dim_names(self) -> list[str]:
        """A label per encoded dimension (``name`` or ``name=choice``)."""
        return self._encoder.dim_names if self._encoder else []

    def distribution(self, name: str) -> BaseDistribution:
        """The distribution the parameter is encoded on."""
        return self._distributions[name]

    def is_categorical(self, name: str) -> bool:
        """Whether the parameter is categorical (one-hot)."""
        return isinstance(self._distributions[name], CategoricalDistribution)

    def column(self, name: str) -> int:
        """The column of a numeric parameter."""
        return int(self._slices[name].start)

    def encode(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode configs into an ``(n, dim)`` array."""
        if self._encoder is None:
            return np.empty((len(configs), 0))
        return self._encoder.encode_many(configs, partial=True)

    def value_at(self, name: str, u: float) -> Any:
        """The value of numeric parameter ``name`` at cube coordinate ``u``."""
        assert self._encoder is not None
        row = np.full(self.dim, 0.5)
        row[self.column(name)] = min(max(u, 0.0), 1.0)
        return self._encoder.decode(row)[name]

    def coordinate(self, name: str, value: Any) -> float:
        """The cube coordinate of a numeric parameter's value."""
        assert self._encoder is not None
        row = self._encoder.fix(np.zeros((1, self.dim)), {name: value})
        return float(row[0, self.column(name)])

    def neighbour(self, name: str, value: Any, delta: float) -> tuple[Any, float] | None:
        """The value ``delta`` away in the cube (the next grid value if that rounds back).

        Returns:
            ``(new_value, actual_delta)``, or ``None`` at the edge of the range.
        """
        u0 = self.coordinate(name, value)
        step = abs(delta)
        if step <= 0:
            return None
        for k in range(1, math.ceil(1.0 / step) + 2):
            u = u0 + math.copysign(k * step, delta)
            if u < -1e-12 or u > 1 + 1e-12:
                u = min(max(u, 0.0), 1.0)
                v = self.value_at(name, u)
                if v == value:
                    return None
            else:
                v = self.value_at(name, u)
            if v != value:
                return v, self.coordinate(name, v) - u0
        return None
