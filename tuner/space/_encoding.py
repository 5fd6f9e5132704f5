"""Encoding of configs to the unit hypercube and back.

Every model in mttune sees a config as a point of ``[0, 1]^D``:

* ``float``: ``(v - low) / (high - low)``, on ``log`` values for log-scale parameters.
* ``int`` and stepped ``float``: the grid of ``n`` values is mapped to the centres of ``n``
  equal cells, ``u = (k + 0.5) / n``, so a uniform ``u`` gives a uniform grid value. Log-scale
  ints map ``[low - 0.5, high + 0.5]`` on a log axis (as Optuna does).
* ``categorical``: one-hot over the choices (``k`` dimensions).
* An inactive conditional parameter encodes as ``0.5`` (numeric) or all-zero (categorical).

Decoding clips to ``[0, 1]``, snaps to the grid (ints, steps) and takes the arg-max of a one-hot
block, so *any* point of the cube decodes to a valid config, and ``decode(encode(c)) == c``.
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
import itertools
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

from tuner.space._schema import SearchSpace

__all__ = ["Encoder"]

_INACTIVE = 0.5


@dataclasses.dataclass(frozen=True)
class _Block:
    name: str
    start: int
    width: int
    dist: BaseDistribution


class Encoder:
    """Maps configs of a :class:`SearchSpace` to ``[0, 1]^D`` and back.

    Args:
        space: The search space to encode.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        blocks: list[_Block] = []
        start = 0
        for p in space:
            width = (
                len(p.distribution.choices)
                if isinstance(p.distribution, CategoricalDistribution)
                else 1
            )
            blocks.append(_Block(p.name, start, width, p.distribution))
            start += width
        self._blocks = blocks
        self.dim = start
        self._grids: dict[int, np.ndarray | None] = {}

    @property
    def dim_names(self) -> list[str]:
        """A label per encoded dimension (``name`` or ``name=choice``)."""
        out: list[str] = []
        for b in self._blocks:
            if isinstance(b.dist, CategoricalDistribution):
                out.extend(f"{b.name}={c}" for c in b.dist.choices)
            else:
                out.append(b.name)
        return out

    def param_slices(self) -> dict[str, slice]:
        """The columns each parameter occupies in the encoding."""
        return {b.name: slice(b.start, b.start + b.width) for b in self._blocks}

    # ------------------------------------------------------------------ encode
    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        """Encode one config (inactive or missing conditional params get the neutral value)."""
        return self.encode_many([config])[0]

    def encode_many(
        self, configs: Sequence[Mapping[str, Any]], *, partial: bool = False
    ) -> np.ndarray:
        """Encode configs into an ``(n, D)`` float64 array.

        Args:
            configs: The configs.
            partial: Encode an active parameter that a config lacks, or whose value is not
                in its distribution, as an inactive one instead of raising (the trials of a
                define-by-run study need not share their parameters or their values' ranges).

        Raises:
            ValueError: if an active parameter is missing or a value is outside the space
                (unless ``partial``).
        """
        out = np.empty((len(configs), self.dim), dtype=np.float64)
        for i, config in enumerate(configs):
            active = set(self.space.active_params(config))
            for b in self._blocks:
                out[i, b.start : b.start + b.width] = _encode_block(b, config, active, partial)
        return out

    # ------------------------------------------------------------------ decode
    def decode(self, u: np.ndarray) -> dict[str, Any]:
        """Decode one point of the cube into a valid config of the space."""
        return self.decode_many(np.asarray(u, dtype=np.float64).reshape(1, -1))[0]

    def decode_many(self, u: np.ndarray) -> list[dict[str, Any]]:
        """Decode an ``(n, D)`` array into configs (plain Python values, active params only)."""
        columns, active = self.decode_columns(u)
        n = np.asarray(u).shape[0]
        names = [b.name for b in self._blocks]
        configs: list[dict[str, Any]] = [{} for _ in range(n)]
        for name in names:
            col, mask = columns[name], active[name]
            for i in np.flatnonzero(mask):
                configs[i][name] = col[i]
        return configs

    def decode_columns(self, u: np.ndarray) -> tuple[dict[str, list[Any]], dict[str, np.ndarray]]:
        """Vectorised decode: per parameter, its values and an activity mask."""
        arrays, active = self.decode_arrays(u)
        values = {b.name: _python_values(b.dist, arrays[b.name]) for b in self._blocks}
        return values, active

    def decode_arrays(self, u: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """:meth:`decode_columns` as arrays: numbers as floats, categoricals as choice indices.

        No Python value per point: what the sampler's many candidates go through.
        """
        u = np.asarray(u, dtype=np.float64)
        if u.ndim != 2 or u.shape[1] != self.dim:
            raise ValueError(f"expected an array of shape (n, {self.dim}), got {u.shape}")
        u = np.clip(np.nan_to_num(u, nan=0.5), 0.0, 1.0)
        values: dict[str, np.ndarray] = {}
        active: dict[str, np.ndarray] = {}
        for p, b in zip(self.space, self._blocks, strict=True):
            values[b.name] = _block_values(b.dist, u[:, b.start : b.start + b.width])
            if p.condition is None:
                active[b.name] = np.ones(len(u), dtype=bool)
                continue
            parent = self.space.params[p.condition.parent].distribution
            held = values[p.condition.parent]
            if isinstance(parent, CategoricalDistribution):  # by choice, then by index
                meets = np.array([c in p.condition.values for c in parent.choices], dtype=bool)
                ok = meets[held]
            else:
                ok = np.array([v in p.condition.values for v in held], dtype=bool)
            active[b.name] = active[p.condition.parent] & ok
        return values, active

    def canonicalize(self, u: np.ndarray) -> np.ndarray:
        """Snap points of the cube to the encodings of the configs they decode to.

        Vectorised: equal to ``encode_many(decode_many(u))`` without building configs.
        """
        u = np.clip(np.nan_to_num(np.asarray(u, dtype=np.float64), nan=0.5), 0.0, 1.0)
        if u.ndim != 2 or u.shape[1] != self.dim:
            raise ValueError(f"expected an array of shape (n, {self.dim}), got {u.shape}")
        out = np.empty_like(u)
        choice: dict[str, np.ndarray] = {}
        active: dict[str, np.ndarray] = {}
        for p, b in zip(self.space, self._blocks, strict=True):
            cols = slice(b.start, b.start + b.width)
            if p.condition is None:
                on = np.ones(len(u), dtype=bool)
            else:
                parent = self.space.params[p.condition.parent].distribution
                allowed = [parent.choices.index(v) for v in p.condition.values]
                on = active[p.condition.parent] & np.isin(choice[p.condition.parent], allowed)
            active[b.name] = on
            if isinstance(b.dist, CategoricalDistribution):
                idx = np.argmax(u[:, cols], axis=1)
                choice[b.name] = idx
                block = np.zeros((len(u), b.width))
                block[np.arange(len(u)), idx] = 1.0
                block[~on] = 0.0
            else:
                block = _to_unit(b.dist, _from_unit(b.dist, u[:, b.start]))[:, None]
                block[~on] = _INACTIVE
            out[:, cols] = block
        return out

    def fix(self, u: np.ndarray, values: Mapping[str, Any]) -> np.ndarray:
        """A copy of ``u`` with the blocks of the given parameters set to their encodings.

        Raises:
            ValueError: if a name is not in the space or a value is outside it.
        """
        out = np.array(u, dtype=np.float64, copy=True)
        blocks = {b.name: b for b in self._blocks}
        for name, value in values.items():
            if name not in blocks:
                raise ValueError(f"'{name}' is not a parameter of the space")
            b = blocks[name]
            out[:, b.start : b.start + b.width] = _encode_value(b.dist, value, name)
        return out

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` uniform random configs, returned canonicalised in the cube."""
        return self.canonicalize(rng.random((n, self.dim)))

    # ------------------------------------------------------------------ grids
    @property
    def discrete(self) -> tuple[str, ...]:
        """Parameters with finitely many values, more than one (ints, steps, categoricals)."""
        return tuple(b.name for b in self._blocks if (_levels(b.dist) or 0) > 1)

    @property
    def size(self) -> int | None:
        """How many configs the space holds (before conditions); ``None`` when continuous."""
        levels = [_levels(b.dist) for b in self._blocks]
        return None if None in levels else math.prod(levels)  # type: ignore[arg-type]

    def grid(self, limit: int) -> np.ndarray | None:
        """Every config of a finite space, as canonical points in a fixed order.

        Returns:
            The points (conditional parameters inactive where their condition fails), or
            ``None`` when a parameter is continuous or the space holds more than ``limit``
            configs (counted before conditions).
        """
        if limit in self._grids:
            return self._grids[limit]
        out = None
        if self._blocks and self.size is not None and self.size <= limit:
            encoded = [
                [_encode_value(b.dist, v, b.name) for v in _values(b.dist)] for b in self._blocks
            ]
            rows = [np.hstack(combo) for combo in itertools.product(*encoded)]
            points = self.canonicalize(np.array(rows, dtype=np.float64).reshape(-1, self.dim))
            _, first = np.unique(points.round(12), axis=0, return_index=True)
            out = points[np.sort(first)]
        self._grids[limit] = out
        return out

    def step(
        self, u: np.ndarray, rng: np.random.Generator, *, frozen: Sequence[str] = ()
    ) -> np.ndarray:
        """Each canonical point moved one grid step in one of its discrete parameters.

        The parameter is drawn among the point's active discrete ones not in ``frozen``; a
        number moves to its next value up or down (inwards at an end), a categorical to
        another choice. A point with no such parameter is returned as it is.
        """
        u = np.array(u, dtype=np.float64, copy=True)
        _, active = self.decode_arrays(u)
        discrete = self.discrete
        movable = [b for b in self._blocks if b.name in discrete and b.name not in frozen]
        if not movable or not len(u):
            return self.canonicalize(u)
        on = np.column_stack([active[b.name] for b in movable])
        which = np.argmax(np.where(on, rng.random(on.shape), -1.0), axis=1)
        up = rng.random(len(u)) < 0.5
        for j, b in enumerate(movable):
            rows = np.flatnonzero(on.any(axis=1) & (which == j))
            n = _levels(b.dist)
            assert n is not None
            if isinstance(b.dist, CategoricalDistribution):
                k = np.argmax(u[rows, b.start : b.start + b.width], axis=1)
                k = (k + rng.integers(1, n, size=len(rows))) % n
                u[rows, b.start : b.start + b.width] = np.eye(n)[k]
                continue
            k = _index(b.dist, u[rows, b.start])
            d = np.where(up[rows], 1, -1)
            k = np.where((k + d >= 0) & (k + d < n), k + d, k - d)
            u[rows, b.start] = _to_unit(b.dist, np.asarray(_values(b.dist), dtype=np.float64)[k])
        return self.canonicalize(u)


def _degenerate(dist: FloatDistribution | IntDistribution) -> bool:
    """A single-value range (possibly up to float rounding): it encodes to the centre."""
    low, high = float(dist.low), float(dist.high)
    if dist.log and not isinstance(dist, IntDistribution):
        return math.log(high) - math.log(low) <= 0.0
    return high <= low


def _to_unit(dist: FloatDistribution | IntDistribution, v: np.ndarray) -> np.ndarray:
    """Numeric values (inside the distribution) to their unit-cube coordinates."""
    v = np.asarray(v, dtype=np.float64)
    low, high = float(dist.low), float(dist.high)
    if _degenerate(dist):
        return np.full(v.shape, 0.5)
    if isinstance(dist, IntDistribution):
        if dist.log:
            lo, hi = math.log(low - 0.5), math.log(high + 0.5)
            return (np.log(v) - lo) / (hi - lo)
        n = (dist.high - dist.low) // dist.step + 1
        return (np.round((v - low) / dist.step) + 0.5) / n
    if dist.step is not None:
        n = round((high - low) / dist.step) + 1
        return (np.round((v - low) / dist.step) + 0.5) / n
    if dist.log:
        return (np.log(v) - math.log(low)) / (math.log(high) - math.log(low))
    return (v - low) / (high - low)


def _from_unit(dist: FloatDistribution | IntDistribution, u: np.ndarray) -> np.ndarray:
    """Unit-cube coordinates (clipped) to valid numeric values (ints as whole floats)."""
    u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
    low, high = float(dist.low), float(dist.high)
    if _degenerate(dist):
        return np.full(u.shape, low)
    if isinstance(dist, IntDistribution):
        if dist.log:
            lo, hi = math.log(low - 0.5), math.log(high + 0.5)
            return np.clip(np.round(np.exp(lo + u * (hi - lo))), low, high)
        n = (dist.high - dist.low) // dist.step + 1
        return low + np.clip(np.floor(u * n), 0, n - 1) * dist.step
    if dist.step is not None:
        n = round((high - low) / dist.step) + 1
        v = np.clip(low + np.clip(np.floor(u * n), 0, n - 1) * dist.step, low, high)
        # low + k * step has float error; round to the decimals that low and step have
        return np.round(v, min(20, max(_decimals(low), _decimals(dist.step))))
    if dist.log:
        v = np.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    else:
        v = low + u * (high - low)
    return np.clip(v, low, high)


def _levels(dist: BaseDistribution) -> int | None:
    """How many values a distribution holds (``None``: a continuum)."""
    if isinstance(dist, CategoricalDistribution):
        return len(dist.choices)
    assert isinstance(dist, FloatDistribution | IntDistribution)
    if _degenerate(dist):
        return 1
    if isinstance(dist, IntDistribution):
        return (dist.high - dist.low) // dist.step + 1
    if dist.step is not None:
        return round((float(dist.high) - float(dist.low)) / dist.step) + 1
    return None


def _values(dist: BaseDistribution) -> list[Any]:
    """The values of a finite distribution, in order (as :meth:`Encoder.decode` gives them)."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    assert isinstance(dist, FloatDistribution)
    n = _levels(dist)
    assert n is not None
    return _decode_block(dist, ((np.arange(n) + 0.5) / n)[:, None])


def _index(dist: FloatDistribution | IntDistribution, u: np.ndarray) -> np.ndarray:
    """The positions of numeric coordinates' values in :func:`_values`."""
    v = _from_unit(dist, u)
    step = 1 if dist.step is None else dist.step
    return np.round((v - float(dist.low)) / step).astype(np.int64)


@functools.lru_cache(maxsize=1024)
def _decimals(x: float) -> int:
    """Decimal places of ``x`` as written (``0.0001`` -> 4, ``1000.0`` -> 0, ``1e-05`` -> 5)."""
    exponent = decimal.Decimal(repr(float(x))).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _encode_block(
    b: _Block, config: Mapping[str, Any], active: set[str], partial: bool
) -> np.ndarray | float:
    """The encoding of one parameter of ``config`` (see :meth:`Encoder.encode_many`)."""
    neutral = 0.0 if isinstance(b.dist, CategoricalDistribution) else _INACTIVE
    if b.name not in active:
        return neutral
    if b.name not in config:
        if partial:
            return neutral
        raise ValueError(f"config {dict(config)!r} lacks active parameter '{b.name}'")
    try:
        return _encode_value(b.dist, config[b.name], b.name)
    except ValueError:
        if partial:
            return neutral
        raise


def _encode_value(dist: BaseDistribution, value: Any, name: str) -> np.ndarray | float:
    if isinstance(dist, CategoricalDistribution):
        try:
            idx = dist.to_internal_repr(value)
        except ValueError:
            raise ValueError(
                f"'{name}'={value!r} is not one of the choices {list(dist.choices)!r}"
            ) from None
        onehot = np.zeros(len(dist.choices))
        onehot[int(idx)] = 1.0
        return onehot
    assert isinstance(dist, FloatDistribution | IntDistribution)
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"'{name}'={value!r} is not a number")
    v = float(value)
    if not math.isfinite(v) or not dist._contains(v):
        raise ValueError(f"'{name}'={value!r} is outside [{dist.low}, {dist.high}]")
    return float(_to_unit(dist, np.array([v]))[0])


def _decode_block(dist: BaseDistribution, block: np.ndarray) -> list[Any]:
    return _python_values(dist, _block_values(dist, block))


def _block_values(dist: BaseDistribution, block: np.ndarray) -> np.ndarray:
    """A block's values: choice indices of a categorical, valid numbers of a numeric."""
    if isinstance(dist, CategoricalDistribution):
        return np.argmax(block, axis=1)
    assert isinstance(dist, FloatDistribution | IntDistribution)
    return _from_unit(dist, block[:, 0])


def _python_values(dist: BaseDistribution, values: np.ndarray) -> list[Any]:
    """:func:`_block_values` as the Python values a config holds."""
    if isinstance(dist, CategoricalDistribution):
        return [dist.choices[i] for i in values]
    if isinstance(dist, IntDistribution):
        return [int(x) for x in values]
    return [float(x) for x in values]
