"""Hyperparameters by name, in natural units: the input space of a prior.

A prior is not welded to one search space. It knows each hyperparameter it was trained on by
*name* (and aliases), with a kind, the axis it models it on (log or linear) and the range of
values it saw. Any config, from any study's space, maps onto that: a value is a value
whatever range, step or log flag the study declared, so a narrower, wider or shifted range,
an int asked as a float, or a subset of the choices all map without loss.

The coordinates (a :class:`Feature` each):

* numeric: ``(T(v) - T(lo)) / (T(hi) - T(lo))`` with ``T`` the log or the identity and
  ``[lo, hi]`` the training range, widened by half a grid cell on each side for ints and
  stepped floats (``log`` ints: ``[low - 0.5, high + 0.5]``), so that on the training space
  the coordinates are those of :class:`~tuner.space.Encoder`. Values outside the training
  range map outside ``[0, 1]``: extrapolation, which the caller may clip and distrust.
* categorical: one-hot over the choices the prior knows; a choice it never saw is all-zero.
* a parameter that was missing or inactive in some training trials (conditional, fixed, or
  added in later studies) has a *presence* column: 1 where it is set, 0 where not. Without
  one, an absent parameter takes the neutral value (0.5, or all-zero), as the Encoder does.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from tuner.space._schema import SearchSpace, SpaceError

__all__ = ["Feature", "FeatureSpace"]

Kind = Literal["float", "int", "categorical"]
_NEUTRAL = 0.5


@dataclasses.dataclass(frozen=True)
class Feature:
    """What a prior knows about one hyperparameter.

    Attributes:
        name: The parameter's name.
        kind: ``float``, ``int`` or ``categorical``.
        log: Numeric: modelled on a log axis.
        low: Numeric: the smallest value trained on (natural units).
        high: Numeric: the largest value trained on.
        step: Numeric: the grid step of ints and stepped floats (``None``: continuous).
        choices: Categorical: the choices trained on.
        masked: Has a presence column (it was absent from some training trials).
        aliases: Other names that mean this parameter (e.g. ``eta`` for ``learning_rate``).
        help: What the parameter means (documentation only).
    """

    name: str
    kind: Kind
    log: bool = False
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    masked: bool = False
    aliases: tuple[str, ...] = ()
    help: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "categorical":
            if not self.choices:
                raise SpaceError(f"feature '{self.name}': a categorical needs choices.")
            return
        if self.kind not in ("float", "int"):
            raise SpaceError(f"feature '{self.name}': unknown kind {self.kind!r}.")
        low, high = self.low, self.high
        if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
            raise SpaceError(f"feature '{self.name}': needs finite low and high.")
        if low > high or (self.log and low <= 0):
            raise SpaceError(
                f"feature '{self.name}': need low <= high (and low > 0 on a log axis), "
                f"got low={low!r}, high={high!r}, log={self.log}."
            )

    @property
    def numeric(self) -> bool:
        """Whether the parameter is a number (int or float)."""
        return self.kind != "categorical"

    @property
    def width(self) -> int:
        """Columns it occupies."""
        return (len(self.choices) if self.kind == "categorical" else 1) + int(self.masked)

    def bounds(self) -> tuple[float, float]:
        """``(lo, hi)`` on the modelled axis (log values on a log axis), cells included."""
        assert self.low is not None and self.high is not None
        low, high = float(self.low), float(self.high)
        if self.kind == "int" and self.log:
            return math.log(low - 0.5), math.log(high + 0.5)
        if self.step is not None:
            return low - self.step / 2, high + self.step / 2
        if self.log:
            return math.log(low), math.log(high)
        return low, high

    def encode_numbers(self, v: np.ndarray) -> np.ndarray:
        """Coordinates of numeric values (outside ``[0, 1]`` outside the training range)."""
        v = np.asarray(v, dtype=np.float64)
        lo, hi = self.bounds()
        if hi <= lo:
            return np.full(v.shape, _NEUTRAL)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.log(np.maximum(v, 1e-300)) if self.log else v
        return (t - lo) / (hi - lo)

    def choice_columns(self, values: Sequence[Any], present: np.ndarray) -> np.ndarray:
        """A categorical's one-hot column of each present value (``-1``: unknown or absent)."""
        try:
            exact, index = _choice_index(self.choices)
        except TypeError:  # an unhashable choice (not one Optuna allows): no exact lookup
            exact, index = {}, {_choice_key(c): j for j, c in enumerate(self.choices)}
        out = np.full(len(values), -1, dtype=np.int64)
        for i in np.flatnonzero(present):
            v = values[i]
            try:  # the common case, a value of a choice's own type: no key to build
                j = exact.get((type(v), v))
            except TypeError:  # unhashable
                j = None
            if j is None:
                j = index.get(_choice_key(v))
            if j is not None:
                out[i] = j
        return out

    def describe(self) -> str:
        """The range it knows, as a person writes it (``1e-04..0.3 log``)."""
        if self.kind == "categorical":
            return "{" + ", ".join(map(str, self.choices)) + "}"
        return f"{self.low:.4g}..{self.high:.4g}" + (" log" if self.log else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON form (what a prior file stores)."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "categorical":
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high, log=self.log, step=self.step)
        if self.masked:
            out["masked"] = True
        if self.aliases:
            out["aliases"] = list(self.aliases)
        if self.help:
            out["help"] = self.help
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Feature:
        """Inverse of :meth:`to_dict`; a malformed entry is a :class:`SpaceError`."""
        try:
            return cls(
                name=str(data["name"]),
                kind=data["kind"],
                log=bool(data.get("log", False)),
                low=None if data.get("low") is None else float(data["low"]),
                high=None if data.get("high") is None else float(data["high"]),
                step=None if data.get("step") is None else float(data["step"]),
                choices=tuple(data.get("choices", ())),
                masked=bool(data.get("masked", False)),
                aliases=tuple(str(a) for a in data.get("aliases", ())),
                help=None if data.get("help") is None else str(data["help"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SpaceError(f"malformed feature {dict(data)!r}: {e}") from None

    @classmethod
    def from_distribution(
        cls, name: str, dist: BaseDistribution, *, masked: bool = False
    ) -> Feature:
        """The feature of one Optuna distribution (its range as the training range)."""
        if isinstance(dist, CategoricalDistribution):
            return cls(name, "categorical", choices=tuple(dist.choices), masked=masked)
        assert isinstance(dist, FloatDistribution | IntDistribution)
        kind: Kind = "int" if isinstance(dist, IntDistribution) else "float"
        step = None if (kind == "int" and dist.log) else dist.step
        return cls(
            name,
            kind,
            log=dist.log,
            low=float(dist.low),
            high=float(dist.high),
            step=None if step is None else float(step),
            masked=masked,
        )


class FeatureSpace:
    """The hyperparameters a prior knows, and the map from configs to its coordinates.

    Args:
        features: The parameters, in column order.
    """

    def __init__(self, features: Iterable[Feature]) -> None:
        self.features = tuple(features)
        self._by_name: dict[str, Feature] = {}
        for f in self.features:
            for n in (f.name, *f.aliases):
                if n in self._by_name:
                    raise SpaceError(f"feature name {n!r} is used twice.")
                self._by_name[n] = f
        starts, start = {}, 0
        for f in self.features:
            starts[f.name] = start
            start += f.width
        self._starts = starts
        self.dim = start

    def __len__(self) -> int:
        return len(self.features)

    def __iter__(self):
        return iter(self.features)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureSpace) and self.features == other.features

    __hash__ = None  # type: ignore[assignment]

    @property
    def names(self) -> list[str]:
        """Canonical parameter names, in column order."""
        return [f.name for f in self.features]

    def lookup(self, name: str) -> Feature | None:
        """The feature a name (or an alias) stands for."""
        return self._by_name.get(name)

    def columns(self, name: str) -> slice:
        """The columns of a feature (by canonical name)."""
        f = self._by_name[name]
        return slice(self._starts[f.name], self._starts[f.name] + f.width)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_space(cls, space: SearchSpace, masked: Iterable[str] = ()) -> FeatureSpace:
        """The features of one search space (its ranges as the training ranges)."""
        keep = set(masked)
        return cls(
            Feature.from_distribution(p.name, p.distribution, masked=p.name in keep) for p in space
        )

    def to_list(self) -> list[dict[str, Any]]:
        """JSON form."""
        return [f.to_dict() for f in self.features]

    @classmethod
    def from_list(cls, data: Any) -> FeatureSpace:
        """Inverse of :meth:`to_list`; malformed data is a :class:`SpaceError`."""
        if not isinstance(data, list) or not all(isinstance(d, Mapping) for d in data):
            raise SpaceError(f"features must be a list of mappings, got {type(data).__name__}.")
        return cls(Feature.from_dict(d) for d in data)

    # ------------------------------------------------------------------ encoding
    def encode(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Coordinates of configs (by canonical name or alias; unknown names are ignored)."""
        columns: dict[str, list[Any]] = {f.name: [None] * len(configs) for f in self.features}
        for i, config in enumerate(configs):
            for key, value in config.items():
                f = self._by_name.get(key)
                if f is not None:
                    columns[f.name][i] = value
        return self.encode_columns(columns, len(configs))

    def encode_columns(self, columns: Mapping[str, Sequence[Any]], n: int) -> np.ndarray:
        """Coordinates from values by parameter (``None``: absent); missing names are absent."""
        data: dict[str, np.ndarray] = {}
        present: dict[str, np.ndarray] = {}
        for f in self.features:
            values = columns.get(f.name)
            if values is None:
                continue
            present[f.name] = on = np.array([v is not None for v in values], dtype=bool)
            if f.kind == "categorical":
                data[f.name] = f.choice_columns(values, on)
            else:
                data[f.name] = np.zeros(n)
                data[f.name][on] = [float(v) for v, p in zip(values, on, strict=True) if p]
        return self.encode_arrays(data, present, n)

    def encode_arrays(
        self, data: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray], n: int
    ) -> np.ndarray:
        """:meth:`encode_columns` from arrays: numbers, or a categorical's one-hot columns.

        Args:
            data: By feature name, ``(n,)``: the numbers of a numeric feature, the column
                of a categorical's choice (:meth:`Feature.choice_columns`, ``-1``: unknown).
            present: By feature name, ``(n,)``: where the parameter is set; a missing name
                is absent everywhere.
            n: The number of configs.
        """
        out = np.zeros((n, self.dim), dtype=np.float64)
        for f in self.features:
            block = out[:, self.columns(f.name)]  # a view
            on = present.get(f.name)
            on = np.zeros(n, dtype=bool) if on is None else on
            body = block[:, : f.width - int(f.masked)]
            if f.kind == "categorical":
                if on.any():
                    rows = np.flatnonzero(on & (data[f.name] >= 0))
                    body[rows, data[f.name][rows]] = 1.0
            else:
                body[:, 0] = _NEUTRAL
                if on.any():
                    body[on, 0] = f.encode_numbers(data[f.name][on])
            if f.masked:
                block[:, -1] = on
        return out

    def numeric_columns(self) -> np.ndarray:
        """Indices of the numeric value columns (the ones that can leave ``[0, 1]``)."""
        return np.array([self._starts[f.name] for f in self.features if f.numeric], dtype=np.int64)


@functools.lru_cache(maxsize=256)
def _choice_index(choices: tuple[Any, ...]) -> tuple[dict, dict]:
    """Column of each choice, by ``(type, value)`` and by :func:`_choice_key`."""
    index = {_choice_key(c): j for j, c in enumerate(choices)}
    return {(type(c), c): index[_choice_key(c)] for c in choices}, index


def _choice_key(value: Any) -> tuple[str, Any]:
    """Choices compare by kind and value: ``True`` is not ``1``, ``1`` is ``1.0``.

    NumPy scalars compare as the Python values they hold (``np.int64(3)`` is ``3``,
    ``np.str_("a")`` is ``"a"``, ``np.True_`` is ``True``).
    """
    if value is None:
        return ("none", None)
    if isinstance(value, bool | np.bool_):
        return ("bool", bool(value))
    if isinstance(value, str):
        return ("str", str(value))
    if isinstance(value, numbers.Real):
        return ("number", float(value))
    return ("other", repr(value))
