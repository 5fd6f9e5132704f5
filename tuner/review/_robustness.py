"""Robustness: how much worse does a config get when one hyperparameter moves a little?

Each numeric hyperparameter of the config is moved by ``-perturb`` and ``+perturb`` in the
unit-cube encoding (5% of its range by default, on the log scale for log parameters; an
integer or stepped parameter moves at least to the next grid value). The *degradation* of a
side is how much worse the objective gets there (objective units, positive = worse); the
parameter's degradation is its worse side's. It comes from

* ``verify``: real runs of the perturbed neighbours made by ``mttune verify`` (mean of the
  neighbour's runs minus the config's estimated value), where they exist;
* ``surrogate``: the Gaussian process's posterior of the difference otherwise.

A parameter is **fragile** when its degradation is both significant (its one-sided 95%
lower bound is above zero) and larger than the threshold: one run's noise sd (the spread
you would see re-running the same config with another seed), at least 1% of the study's
interquartile range. Categorical parameters have no small move and are not perturbed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from tuner.review._confidence import Analysis, Estimate
from tuner.review._configs import ConfigGroup
from tuner.review._load import StudyData
from tuner.studies import TrialAttr

__all__ = ["ParamRobustness", "Robustness", "robustness"]

_Z = 1.6448536269514722  # one-sided 95%
_CURVE_STEPS = 9


@dataclasses.dataclass
class ParamRobustness:
    """The effect of nudging one hyperparameter.

    Attributes:
        name: The hyperparameter.
        value: Its value in the config.
        sides: Per direction: ``delta`` (cube units), ``value``, ``degradation``, ``se``,
            ``runs`` (real runs behind it; 0 for the surrogate) and ``method``.
        degradation: The worse side's degradation (objective units, positive = worse).
        se: Its standard error.
        fragile: Whether the degradation is significant and above the threshold.
        method: ``verify`` when real perturbed runs exist, else ``surrogate``.
        curve: Surrogate prediction along the parameter: ``delta``, ``value``, ``mean``,
            ``sd`` (objective units), for the plot; empty without a surrogate.
    """

    name: str
    value: Any
    sides: list[dict[str, Any]]
    degradation: float
    se: float
    fragile: bool
    method: str
    curve: list[dict[str, Any]]


@dataclasses.dataclass
class Robustness:
    """Robustness of one config.

    Attributes:
        number: The trial number naming the config.
        perturb: The nudge, in cube units.
        threshold: Degradation above which a (significant) effect is fragile.
        threshold_rule: How the threshold was set.
        params: Per numeric hyperparameter.
        skipped: Hyperparameters not perturbed, with the reason.
        seeds: Spread of the config's repeated runs (``n``, ``sd``, ``min``, ``max``), if any.
    """

    number: int
    perturb: float
    threshold: float | None
    threshold_rule: str
    params: list[ParamRobustness]
    skipped: dict[str, str]
    seeds: dict[str, Any] | None

    @property
    def fragile(self) -> list[str]:
        """Names of the fragile hyperparameters."""
        return [p.name for p in self.params if p.fragile]

    @property
    def better(self) -> list[dict[str, Any]]:
        """Moves that make the config significantly better (more than the threshold).

        The config is then not at a local optimum along that parameter: worth exploring.
        """
        out = []
        for p in self.params:
            for side in p.sides:
                if side.get("failed_runs"):
                    continue  # a move whose run failed improves nothing
                d, se = side["degradation"], side["se"]
                if self.threshold is not None and -d > self.threshold and d + _Z * se < 0:
                    out.append(
                        {
                            "param": p.name,
                            "delta": side["delta"],
                            "value": side["value"],
                            "gain": -d,
                        }
                    )
        return out


def _threshold(analysis: Analysis) -> tuple[float | None, str]:
    data = analysis.data
    search = analysis.complete[~data.verification[analysis.complete]]
    vals = data.values[search] if len(search) else data.values[analysis.complete]
    iqr = float(np.subtract(*np.percentile(vals, [75, 25]))) if len(vals) else 0.0
    floor = 0.01 * iqr
    if analysis.noise_sd is None:
        if floor > 0:
            return floor, "1% of the study's interquartile range (no noise estimate)"
        return None, "no noise estimate"
    if analysis.noise_sd >= floor:
        return analysis.noise_sd, f"one run's noise sd ({analysis.noise_method})"
    return floor, "1% of the study's interquartile range (above the noise sd)"


def _seed_spread(group: ConfigGroup, analysis: Analysis) -> dict[str, Any] | None:
    rows = group.repeat_rows if len(group.repeat_rows) >= 2 else group.rows
    if len(rows) < 2:
        return None
    vals = analysis.data.values[rows]
    return {
        "n": len(rows),
        "sd": float(np.std(vals, ddof=1)),
        "min": float(vals.min()),
        "max": float(vals.max()),
        "from": "verify repeats" if rows is group.repeat_rows else "repeated runs",
    }


def robustness(analysis: Analysis, estimate: Estimate, perturb: float = 0.05) -> Robustness:
    """Perturb each numeric hyperparameter of ``estimate``'s config (module docstring)."""
    data = analysis.data
    group = estimate.group
    numbers = set(group.numbers(data))
    threshold, rule = _threshold(analysis)
    perturbed = _perturbed_runs(analysis, numbers, perturb)
    failed = _failed_moves(analysis, numbers)
    skipped: dict[str, str] = {}
    plans = _plans(analysis, group, perturb, {*perturbed, *failed}, skipped)
    post = _joint_posterior(analysis, group, plans)
    results: list[ParamRobustness] = []
    at = 1  # the plans' points follow the config's in the joint posterior
    for plan in plans:
        sides = _surrogate_sides(plan, post, at)
        _verified_sides(sides, analysis, estimate, plan.name, perturbed)
        _failed_sides(sides, data, plan.name, failed)
        curve = _curve(plan, post, at + len(plan.sides), data.sign)
        at += len(plan.sides) + len(plan.curve)
        if not sides:
            skipped[plan.name] = "no surrogate and no perturbed runs"
            continue
        results.append(
            _param_robustness(plan.name, group.params[plan.name], sides, curve, threshold)
        )
    return Robustness(
        number=group.representative(data),
        perturb=perturb,
        threshold=threshold,
        threshold_rule=rule,
        params=results,
        skipped=skipped,
        seeds=_seed_spread(group, analysis),
    )


@dataclasses.dataclass
class _Plan:
    """The moves of one parameter: sides ``(sign, value, delta)``, curve ``(value, delta)``."""

    name: str
    sides: list[tuple[int, Any, float]]
    curve: list[tuple[Any, float]]


def _plans(
    analysis: Analysis,
    group: ConfigGroup,
    perturb: float,
    moved: set[tuple[str, int]],
    skipped: dict[str, str],
) -> list[_Plan]:
    """The moves of each numeric parameter; the others go to ``skipped`` with the reason.

    ``moved`` are the ``(parameter, direction)`` moves that ``mttune verify`` ran.
    """
    codec = analysis.codec
    plans = []
    for name in codec.names:
        if name not in group.params:
            skipped[name] = "inactive in this config"
            continue
        if codec.is_categorical(name):
            skipped[name] = "categorical: no small move"
            continue
        value = group.params[name]
        sides = []
        for sign in (-1, 1):
            nb = codec.neighbour(name, value, sign * perturb) if perturb > 0 else None
            if nb is not None:
                sides.append((sign, nb[0], nb[1]))
        curve: list[tuple[Any, float]] = []
        if analysis.gp is not None and perturb > 0:
            u0 = codec.coordinate(name, value)
            values = [codec.value_at(name, u0 + float(d)) for d in _curve_steps(perturb)]
            for v in {*values, *(v for _, v, _ in sides)}:
                curve.append((v, codec.coordinate(name, v) - u0))
            curve.sort(key=lambda c: c[1])
        if not sides and not any((name, s) in moved for s in (-1, 1)):
            skipped[name] = (
                "--perturb is 0" if perturb <= 0 else "a single value: nothing to perturb"
            )
            continue
        plans.append(_Plan(name, sides, curve))
    return plans


def _joint_posterior(
    analysis: Analysis, group: ConfigGroup, plans: list[_Plan]
) -> tuple[np.ndarray, np.ndarray] | None:
    """One joint posterior for the config, every side and every curve point, in that order."""
    if analysis.gp is None:
        return None
    points: list[dict[str, Any]] = [group.params]
    for plan in plans:
        points += [{**group.params, plan.name: v} for _, v, _ in plan.sides]
        points += [{**group.params, plan.name: v} for v, _ in plan.curve]
    return analysis.gp.posterior(analysis.codec.encode(points))


def _surrogate_sides(
    plan: _Plan, post: tuple[np.ndarray, np.ndarray] | None, at: int
) -> dict[int, dict[str, Any]]:
    """The surrogate's degradation on each side (its points start at ``at``), by direction."""
    if post is None:
        return {}
    mean, cov = post
    out = {}
    for j, (sign, v, delta) in enumerate(plan.sides, start=at):
        d = float(mean[j] - mean[0])
        se = math.sqrt(max(cov[j, j] + cov[0, 0] - 2 * cov[0, j], 0.0))
        out[sign] = _side(sign, v, delta, d, se, 0, "surrogate")
    return out


def _verified_sides(
    sides: dict[int, dict[str, Any]],
    analysis: Analysis,
    estimate: Estimate,
    name: str,
    perturbed: dict[tuple[str, int], list[int]],
) -> None:
    """Real runs of the neighbours replace the surrogate's guess."""
    data = analysis.data
    noise = analysis.noise_sd
    base_se = estimate.se if estimate.se is not None else noise
    for sign in (-1, 1):
        rows = perturbed.get((name, sign))
        if not rows:
            continue
        tag = data.tags[rows[0]]
        ys = data.sign * data.values[rows]
        var = float(np.var(ys, ddof=1)) if len(rows) >= 2 else (noise or 0.0) ** 2
        se = math.sqrt(var / len(rows) + (base_se or 0.0) ** 2)
        d = float(ys.mean()) - estimate.mean
        value = data.params[rows[0]].get(name)
        sides[sign] = _side(sign, value, float(tag["delta"]), d, se, len(rows), "verify")


def _failed_sides(
    sides: dict[int, dict[str, Any]],
    data: StudyData,
    name: str,
    failed: dict[tuple[str, int], list[int]],
) -> None:
    """A neighbour whose run crashed is no evidence of robustness: mark its side."""
    for sign in (-1, 1):
        bad = failed.get((name, sign), [])
        if not bad:
            continue
        if sign not in sides:
            moved, delta = data.params[bad[0]].get(name), float(data.tags[bad[0]]["delta"])
            sides[sign] = _side(sign, moved, delta, 0.0, 0.0, 0, "verify")
        sides[sign]["failed_runs"] = len(bad)


def _curve(
    plan: _Plan, post: tuple[np.ndarray, np.ndarray] | None, at: int, sign: float
) -> list[dict[str, Any]]:
    """The surrogate along the parameter (its points start at ``at``), objective units."""
    if post is None:
        return []
    mean, cov = post
    return [
        {
            "delta": round(delta, 6),
            "value": v,
            "mean": float(sign * mean[j]),
            "sd": float(math.sqrt(max(cov[j, j], 0.0))),
        }
        for j, (v, delta) in enumerate(plan.curve, start=at)
    ]


def _param_robustness(
    name: str,
    value: Any,
    sides: dict[int, dict[str, Any]],
    curve: list[dict[str, Any]],
    threshold: float | None,
) -> ParamRobustness:
    """The parameter's verdict: its worse side, fragile when significant and large enough."""
    worst = max(sides.values(), key=lambda o: o["degradation"])
    fragile = any(o.get("failed_runs") for o in sides.values()) or (
        threshold is not None
        and worst["degradation"] > threshold
        and worst["degradation"] - _Z * worst["se"] > 0
    )
    return ParamRobustness(
        name=name,
        value=value,
        sides=[sides[k] for k in sorted(sides)],
        degradation=worst["degradation"],
        se=worst["se"],
        fragile=bool(fragile),
        method="verify" if any(o["method"] == "verify" for o in sides.values()) else "surrogate",
        curve=curve,
    )


def _move(data: StudyData, row: int, numbers: set[int]) -> tuple[str, int, float] | None:
    """The move of a ``mttune verify`` neighbour run: ``(parameter, direction, delta)``.

    ``None`` unless the row is a neighbour run of the config whose trials are ``numbers``.
    """
    tag = data.tags.get(row)
    if tag is None or tag["kind"] != "perturb" or tag.get("of") not in numbers:
        return None
    delta = tag.get("delta")
    if not isinstance(delta, int | float) or isinstance(delta, bool) or delta == 0:
        return None
    return str(tag.get("param")), 1 if delta > 0 else -1, float(delta)


def _perturbed_runs(
    analysis: Analysis, numbers: set[int], perturb: float
) -> dict[tuple[str, int], list[int]]:
    """Rows of ``mttune verify``'s neighbour runs of a config, by (parameter, direction).

    When several verifications moved a parameter by different amounts, the runs of the move
    closest to ``perturb`` are used.
    """
    by_move: dict[tuple[str, int], dict[float, list[int]]] = {}
    for i in analysis.complete.tolist():
        if (move := _move(analysis.data, i, numbers)) is not None:
            name, sign, delta = move
            by_move.setdefault((name, sign), {}).setdefault(delta, []).append(i)
    return {
        key: moves[min(moves, key=lambda d: abs(abs(d) - perturb))]
        for key, moves in by_move.items()
    }


def _failed_moves(analysis: Analysis, numbers: set[int]) -> dict[tuple[str, int], list[int]]:
    """Rows of failed ``mttune verify`` neighbour runs of a config, by (parameter, direction).

    A neighbour that crashes or diverges is the opposite of robust: it makes the parameter
    fragile whatever the surrogate predicts there.
    """
    data = analysis.data
    out: dict[tuple[str, int], list[int]] = {}
    for i in np.flatnonzero(data.states == "FAIL").tolist():
        move = _move(data, i, numbers)
        if move is not None and not TrialAttr.INTERRUPTED.get(data.attrs[i]):
            out.setdefault(move[:2], []).append(i)
    return out


def _curve_steps(perturb: float) -> np.ndarray:
    """Moves along a parameter for the robustness curve: -2 to +2 times the nudge."""
    return np.linspace(-2 * perturb, 2 * perturb, _CURVE_STEPS)


def _side(
    sign: int, value: Any, delta: float, degradation: float, se: float, runs: int, method: str
) -> dict[str, Any]:
    return {
        "sign": sign,
        "delta": round(delta, 6),
        "value": value,
        "degradation": degradation,
        "se": se,
        "runs": runs,
        "method": method,
    }
