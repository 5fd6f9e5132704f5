"""The search-space model and its YAML file format.

A search space file names the objective and lists the hyperparameters::

    name: mlp-digits            # optional, free text
    objective:
      name: val_loss            # the metric the training script reports
      direction: minimize       # or maximize
    params:
      lr:         {type: float, low: 1.0e-4, high: 0.3, log: true}
      n_layers:   {type: int, low: 1, high: 4}
      batch_size: {type: categorical, choices: [32, 64, 128]}
      booster:    {type: categorical, choices: [gbtree, gblinear]}
      max_depth:  {type: int, low: 1, high: 15, condition: {param: booster, in: [gbtree]}}

Rules (each broken rule is a :class:`SpaceError` naming the file, the parameter and the rule):

* ``type`` is ``float``, ``int`` or ``categorical``.
* ``float``/``int`` need ``low <= high``; ``log: true`` needs ``low > 0`` and no ``step``;
  ``step`` must be positive (``int`` default 1).
* ``categorical`` needs a non-empty list of distinct ``choices`` (str, int, float, bool, null).
* ``condition`` makes a parameter active only when an *earlier* categorical parameter takes
  one of the listed values (``in: [...]`` or ``equals: value``).
* Parameter names are unique (a duplicated YAML key is an error, not a silent overwrite).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import optuna
import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from tuner._errors import MttuneError

__all__ = [
    "Condition",
    "Objective",
    "Param",
    "SearchSpace",
    "SpaceError",
    "load_space",
    "parse_space",
]

Direction = Literal["minimize", "maximize"]
_PARAM_KEYS = {"type", "low", "high", "log", "step", "choices", "condition", "help"}


class SpaceError(MttuneError, ValueError):
    """A search space is malformed: the message names the source, the parameter and the rule."""


@dataclasses.dataclass(frozen=True)
class Condition:
    """A parameter is active only when categorical ``parent`` takes one of ``values``."""

    parent: str
    values: tuple[CategoricalChoiceType, ...]

    def is_active(self, config: Mapping[str, Any]) -> bool:
        """Return whether the condition holds for ``config`` (a missing parent means no)."""
        return self.parent in config and config[self.parent] in self.values

    def to_dict(self) -> dict[str, Any]:
        """Serialise to the YAML/JSON form."""
        return {"param": self.parent, "in": list(self.values)}


@dataclasses.dataclass(frozen=True)
class Param:
    """One hyperparameter: its Optuna distribution and an optional activation condition."""

    name: str
    distribution: BaseDistribution
    condition: Condition | None = None
    help: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialise to the YAML/JSON form."""
        d = self.distribution
        out: dict[str, Any]
        if isinstance(d, CategoricalDistribution):
            out = {"type": "categorical", "choices": list(d.choices)}
        elif isinstance(d, IntDistribution):
            out = {"type": "int", "low": d.low, "high": d.high}
            if d.log:
                out["log"] = True
            elif d.step != 1:
                out["step"] = d.step
        else:
            assert isinstance(d, FloatDistribution)
            out = {"type": "float", "low": d.low, "high": d.high}
            if d.log:
                out["log"] = True
            if d.step is not None:
                out["step"] = d.step
        if self.condition is not None:
            out["condition"] = self.condition.to_dict()
        if self.help:
            out["help"] = self.help
        return out


@dataclasses.dataclass(frozen=True)
class Objective:
    """The metric a training script reports and whether lower or higher is better."""

    name: str = "value"
    direction: Direction = "minimize"


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """An ordered set of hyperparameters plus the objective they are tuned for.

    Build one with :func:`load_space` (from YAML), :meth:`from_dict` or
    :meth:`from_distributions`.
    """

    params: Mapping[str, Param]
    objective: Objective = Objective()
    name: str | None = None
    source: str | None = dataclasses.field(default=None, compare=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>") -> SearchSpace:
        """Validate and build a space from its YAML/JSON form.

        Raises:
            SpaceError: if any rule of the format (see the module docstring) is broken.
        """
        if not isinstance(data, Mapping):
            raise SpaceError(
                f"{source}: a search space must be a mapping with 'objective' and 'params', "
                f"got {type(data).__name__}."
            )
        unknown = set(data) - {"name", "objective", "params", "description"}
        if unknown:
            raise SpaceError(
                f"{source}: unknown top-level key(s) {sorted(unknown)}; allowed are "
                "'name', 'description', 'objective' and 'params'."
            )
        objective = _parse_objective(data.get("objective"), source)
        raw_params = data.get("params")
        if not isinstance(raw_params, Mapping) or not raw_params:
            raise SpaceError(
                f"{source}: 'params' must be a non-empty mapping of parameter name to its "
                f"definition, got {raw_params!r}."
            )
        params: dict[str, Param] = {}
        for name, spec in raw_params.items():
            if not isinstance(name, str) or not name:
                raise SpaceError(f"{source}: parameter names must be non-empty strings: {name!r}.")
            if "\0" in name:
                raise SpaceError(
                    f"{source}: parameter name {name!r} holds a NUL byte, which no command "
                    "line or environment can carry; rename it."
                )
            params[name] = _parse_param(name, spec, params, source)
        raw_name = data.get("name")
        return cls(
            params=params,
            objective=objective,
            name=None if raw_name is None else str(raw_name),
            source=source,
        )

    @classmethod
    def from_distributions(
        cls,
        distributions: Mapping[str, BaseDistribution],
        *,
        objective: Objective = Objective(),
        name: str | None = None,
    ) -> SearchSpace:
        """Build an unconditional space from Optuna distributions (validated like a file)."""
        params = {n: Param(n, d) for n, d in distributions.items()}
        space = cls(params=params, objective=objective, name=name)
        return cls.from_dict(space.to_dict(), source="<distributions>")

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.params)

    def __iter__(self):
        return iter(self.params.values())

    @property
    def names(self) -> list[str]:
        """Parameter names in file order."""
        return list(self.params)

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        """The Optuna distribution of every parameter, in file order."""
        return {n: p.distribution for n, p in self.params.items()}

    @property
    def has_conditions(self) -> bool:
        """Whether any parameter is conditional."""
        return any(p.condition is not None for p in self.params.values())

    def active_params(self, config: Mapping[str, Any]) -> list[str]:
        """Names of the parameters active under ``config`` (conditions checked in order)."""
        active: list[str] = []
        chosen: dict[str, Any] = {}
        for p in self.params.values():
            if p.condition is None or p.condition.is_active(chosen):
                active.append(p.name)
                if p.name in config:
                    chosen[p.name] = config[p.name]
        return active

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Ask an Optuna trial for every active parameter, in order, honouring conditions."""
        config: dict[str, Any] = {}
        for p in self.params.values():
            if p.condition is not None and not p.condition.is_active(config):
                continue
            d = p.distribution
            if isinstance(d, CategoricalDistribution):
                config[p.name] = trial.suggest_categorical(p.name, d.choices)
            elif isinstance(d, IntDistribution):
                config[p.name] = trial.suggest_int(p.name, d.low, d.high, step=d.step, log=d.log)
            else:
                assert isinstance(d, FloatDistribution)
                config[p.name] = trial.suggest_float(p.name, d.low, d.high, step=d.step, log=d.log)
        return config

    def contains(self, config: Mapping[str, Any]) -> str | None:
        """Check a config against the space.

        Returns:
            ``None`` when every active parameter is present and inside its distribution and
            no unknown parameter is set, else a sentence saying what does not fit.
        """
        unknown = [k for k in config if k not in self.params]
        if unknown:
            return f"parameter(s) {unknown} are not in the space"
        for name in self.active_params(config):
            if name not in config:
                return f"active parameter '{name}' is missing"
            dist = self.params[name].distribution
            value = config[name]
            if not isinstance(dist, CategoricalDistribution) and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                return f"'{name}'={value!r} is not a number"
            try:
                internal = dist.to_internal_repr(value)
            except (ValueError, TypeError):
                return f"'{name}'={config[name]!r} is not a valid value for {dist}"
            if not dist._contains(internal):
                return f"'{name}'={config[name]!r} is outside {_describe(dist)}"
        return None

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """The YAML/JSON form; ``SearchSpace.from_dict(s.to_dict()) == s``."""
        out: dict[str, Any] = {}
        if self.name is not None:
            out["name"] = self.name
        out["objective"] = {"name": self.objective.name, "direction": self.objective.direction}
        out["params"] = {n: p.to_dict() for n, p in self.params.items()}
        return out

    def to_yaml(self) -> str:
        """The space as a YAML document that :func:`load_space` reads back."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @property
    def hash(self) -> str:
        """A stable content hash of the params, conditions and objective.

        Neither the name nor the parameters' ``help`` texts count: documenting a space does
        not make it another space.
        """
        return self._content_hash(with_help=False)

    @property
    def legacy_hash(self) -> str:
        """The hash that files of mttune 0.1 recorded: it also covered the ``help`` texts."""
        return self._content_hash(with_help=True)

    def _content_hash(self, *, with_help: bool) -> str:
        params = []
        for n, p in self.params.items():
            d = p.to_dict()
            if not with_help:
                d.pop("help", None)
            params.append([n, d])
        canonical = {
            "objective": {"name": self.objective.name, "direction": self.objective.direction},
            "params": params,
        }
        blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def diff(self, other: SearchSpace) -> list[str]:
        """Human-readable differences between two spaces (empty when they are equal)."""
        out: list[str] = []
        for n in self.params.keys() - other.params.keys():
            out.append(f"'{n}' only in the first space")
        for n in other.params.keys() - self.params.keys():
            out.append(f"'{n}' only in the second space")
        for n in self.params.keys() & other.params.keys():
            a, b = self.params[n].to_dict(), other.params[n].to_dict()
            a.pop("help", None)
            b.pop("help", None)
            if a != b:
                out.append(f"'{n}': {a} vs {b}")
        if self.objective != other.objective:
            out.append(f"objective: {self.objective} vs {other.objective}")
        if not out and self.names != other.names:
            out.append(f"parameter order: {self.names} vs {other.names}")
        return sorted(out)


# ---------------------------------------------------------------------- loading
class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe YAML loader that refuses duplicated mapping keys and aliases.

    It is libyaml's where there is one (linear and fast on long lists). A duplicated key is
    an error instead of an overwrite; an alias (``*name``) too, since a few hundred bytes of
    nested aliases expand to gigabytes.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        _refuse_aliases(node)
        return super().construct_document(node)


def _refuse_aliases(root: yaml.Node) -> None:
    """Fail on a node reached twice, which only an alias makes (one pass over the nodes)."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "YAML aliases (*name) are not allowed in a search space; write the value out "
                "in full",
                node.start_mark,
            )
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            todo.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            todo.extend(n for pair in node.value for n in pair)


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first defined on line {seen[key].start_mark.line + 1}); "
                "each name may appear once",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def load_space(path: str | Path) -> SearchSpace:
    """Load and validate a search-space YAML file.

    Raises:
        SpaceError: if the file is missing, is not valid YAML, or breaks a rule of the format.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError(
            f"{path}: search space file not found. Pass an existing YAML file, e.g. "
            "search_spaces/mlp.yaml."
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpaceError(f"{path}: cannot read the search space file: {e}") from None
    return parse_space(text, source=str(path))


def parse_space(text: str, *, source: str = "<string>") -> SearchSpace:
    """Parse and validate a search space from YAML text (see :func:`load_space`)."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise SpaceError(f"{source}: invalid YAML: {e}") from None
    return SearchSpace.from_dict(data, source=source)


def _parse_objective(raw: Any, source: str) -> Objective:
    if raw is None:
        return Objective()
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        raise SpaceError(
            f"{source}: 'objective' must be a mapping like "
            f"{{name: val_loss, direction: minimize}}, got {raw!r}."
        )
    unknown = set(raw) - {"name", "direction"}
    if unknown:
        raise SpaceError(f"{source}: objective: unknown key(s) {sorted(unknown)}.")
    name = raw.get("name", "value")
    direction = raw.get("direction", "minimize")
    if not isinstance(name, str) or not name:
        raise SpaceError(f"{source}: objective name must be a non-empty string, got {name!r}.")
    if direction not in ("minimize", "maximize"):
        raise SpaceError(
            f"{source}: objective direction must be 'minimize' or 'maximize', got {direction!r}."
        )
    return Objective(name=name, direction=direction)


_NUMERIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _number(value: Any, what: str, where: str) -> float:
    # YAML 1.1 (PyYAML) reads 1e-3 as a string: it is a number to anyone writing a space
    if isinstance(value, str) and _NUMERIC.fullmatch(value.strip()):
        text = value.strip()
        value = int(text) if text.lstrip("+-").isdigit() else float(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpaceError(
            f"{where}: '{what}' must be a number, got {value!r}. Write it unquoted, e.g. "
            "0.001 or 1.0e-3."
        )
    if not math.isfinite(value):
        raise SpaceError(f"{where}: '{what}' must be finite, got {value!r}.")
    return value


def _parse_param(name: str, spec: Any, earlier: Mapping[str, Param], source: str) -> Param:
    where = f"{source}: parameter '{name}'"
    if not isinstance(spec, Mapping):
        raise SpaceError(f"{where}: the definition must be a mapping with a 'type', got {spec!r}.")
    unknown = set(spec) - _PARAM_KEYS
    if unknown:
        raise SpaceError(
            f"{where}: unknown key(s) {sorted(unknown)}; allowed are {sorted(_PARAM_KEYS)}."
        )
    kind = spec.get("type")
    dist: BaseDistribution
    if kind == "categorical":
        dist = _parse_categorical(spec, where)
    elif kind in ("float", "int"):
        dist = _parse_numeric(kind, spec, where)
    else:
        raise SpaceError(
            f"{where}: unknown type {kind!r}; use one of 'float', 'int', 'categorical'."
        )
    condition = _parse_condition(spec.get("condition"), earlier, where)
    help_text = spec.get("help")
    return Param(name, dist, condition, None if help_text is None else str(help_text))


def _parse_categorical(spec: Mapping[str, Any], where: str) -> CategoricalDistribution:
    extra = {"low", "high", "log", "step"} & set(spec)
    if extra:
        raise SpaceError(f"{where}: a categorical parameter takes 'choices', not {sorted(extra)}.")
    choices = spec.get("choices")
    if not isinstance(choices, Sequence) or isinstance(choices, str) or not choices:
        raise SpaceError(
            f"{where}: 'choices' must be a non-empty list, got {choices!r}. "
            "Example: choices: [adam, sgd]."
        )
    seen: dict[Any, Any] = {}
    for c in choices:
        if c is not None and not isinstance(c, str | int | float | bool):
            raise SpaceError(
                f"{where}: choice {c!r} is a {type(c).__name__}; choices must be "
                "str, int, float, bool or null."
            )
        if isinstance(c, float) and not math.isfinite(c):
            raise SpaceError(f"{where}: choice {c!r} must be finite.")
        if isinstance(c, str) and "\0" in c:
            raise SpaceError(
                f"{where}: choice {c!r} holds a NUL byte, which no command line can carry; "
                "remove it."
            )
        # equal values hash alike (1 == 1.0 == True): one pass finds every duplicate
        if c in seen:
            raise SpaceError(
                f"{where}: 'choices' has duplicates ({seen[c]!r} and {c!r} are equal in "
                f"Python and Optuna): {list(choices)!r}. Use distinct values."
            )
        seen[c] = c
    return CategoricalDistribution(list(choices))


_MAX_SPAN = 1e307  # high - low; the samplers scale and shift ranges, which must stay finite
_MAX_STEPS = 2**53  # grid points of a stepped float; bounds of an int


def _parse_numeric(
    kind: str, spec: Mapping[str, Any], where: str
) -> FloatDistribution | IntDistribution:
    if "choices" in spec:
        raise SpaceError(f"{where}: 'choices' is for categorical parameters, not {kind}.")
    for key in ("low", "high"):
        if key not in spec:
            raise SpaceError(f"{where}: a {kind} parameter needs '{key}'.")
    low = _number(spec["low"], "low", where)
    high = _number(spec["high"], "high", where)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: 'log' must be true or false, got {log!r}.")
    step = spec.get("step")
    if step is not None:
        step = _number(step, "step", where)
        if step <= 0:
            raise SpaceError(f"{where}: 'step' must be > 0, got {step!r}.")
        if log:
            raise SpaceError(f"{where}: 'step' cannot be combined with 'log: true'.")
    if low > high:
        raise SpaceError(
            f"{where}: low ({low!r}) must be <= high ({high!r}); swap them or fix the bounds."
        )
    if not high - low <= _MAX_SPAN:
        raise SpaceError(
            f"{where}: high - low ({high!r} - {low!r}) must be at most {_MAX_SPAN:g}, or the "
            "samplers' arithmetic overflows; narrow the range or use 'log: true'."
        )
    if log and low <= 0:
        raise SpaceError(
            f"{where}: log scale needs low > 0, got low={low!r}. Use a positive lower "
            "bound such as 1e-6, or drop 'log: true'."
        )
    if kind == "int":
        return _int_distribution(low, high, step, log, where)
    if step is not None:
        n = (high - low) / step
        if not n <= _MAX_STEPS:
            raise SpaceError(
                f"{where}: (high - low) / step is {n:g}: too many steps (at most 2**53, the "
                "grid floats can hold); use a larger step or drop 'step'."
            )
        if abs(n - round(n)) > 1e-8:
            raise SpaceError(
                f"{where}: high - low ({high - low!r}) must be a multiple of step ({step!r})."
            )
        # Snap high to the exact grid so float noise (0.1 * 3) is not a mismatch.
        high = float(Decimal(str(low)) + round(n) * Decimal(str(step)))
    return FloatDistribution(float(low), float(high), log=log, step=step)


def _int_distribution(
    low: float, high: float, step: float | None, log: bool, where: str
) -> IntDistribution:
    for key, v in (("low", low), ("high", high), ("step", step)):
        if v is not None and (isinstance(v, float) and not v.is_integer()):
            raise SpaceError(f"{where}: '{key}' of an int parameter must be whole: {v!r}.")
    if max(abs(low), abs(high)) > _MAX_STEPS:
        raise SpaceError(
            f"{where}: an int parameter's bounds must lie within +-2**53 ({_MAX_STEPS}), the "
            f"integers the samplers' floats hold exactly; got [{low!r}, {high!r}]. Use a float "
            "parameter for a wider range."
        )
    step_i = 1 if step is None else int(step)
    if (int(high) - int(low)) % step_i != 0:
        raise SpaceError(
            f"{where}: high - low ({int(high) - int(low)}) must be a multiple of step ({step_i})."
        )
    return IntDistribution(int(low), int(high), log=log, step=step_i)


def _parse_condition(raw: Any, earlier: Mapping[str, Param], where: str) -> Condition | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or "param" not in raw or not ({"in", "equals"} & set(raw)):
        raise SpaceError(
            f"{where}: 'condition' must look like {{param: booster, in: [gbtree, dart]}} "
            f"or {{param: booster, equals: gbtree}}, got {raw!r}."
        )
    unknown = set(raw) - {"param", "in", "equals"}
    if unknown:
        raise SpaceError(f"{where}: condition: unknown key(s) {sorted(unknown)}.")
    parent = raw["param"]
    if parent not in earlier:
        raise SpaceError(
            f"{where}: condition refers to {parent!r}, which is not a parameter defined above "
            "it; define the parent first."
        )
    pdist = earlier[parent].distribution
    if not isinstance(pdist, CategoricalDistribution):
        raise SpaceError(f"{where}: condition parent {parent!r} must be categorical.")
    values = raw["in"] if "in" in raw else [raw["equals"]]
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        raise SpaceError(f"{where}: condition 'in' must be a non-empty list, got {values!r}.")
    bad = [v for v in values if v not in pdist.choices]
    if bad:
        raise SpaceError(
            f"{where}: condition values {bad!r} are not choices of {parent!r} "
            f"({list(pdist.choices)!r})."
        )
    return Condition(parent, tuple(values))


def _describe(dist: BaseDistribution) -> str:
    if isinstance(dist, CategoricalDistribution):
        return f"choices {list(dist.choices)!r}"
    assert isinstance(dist, FloatDistribution | IntDistribution)
    extra = ", log" if dist.log else (f", step {dist.step}" if dist.step not in (None, 1) else "")
    return f"[{dist.low}, {dist.high}{extra}]"
