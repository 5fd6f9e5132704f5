"""Confidence: how good is each candidate config really, and which one to recommend.

Every completed run is a noisy draw of its config's true value. For each candidate config
review estimates that true value with a standard error:

* ``verify-repeats``: the config has >= 2 fresh-seed repeats from ``mttune verify``: their
  mean and a Student-t interval. The search run that made the config a candidate is left
  out: it was selected for being good, so it is biased (the winner's curse);
* ``repeats``: the search itself ran the config >= 2 times: the mean of those runs and a
  Student-t interval;
* ``surrogate``: one run: the posterior of the noise-free objective under a Gaussian process
  fitted to the study (see :mod:`tuner.review._surrogate`), which pools the config's run
  with its neighbours', with the config's own run first debiased for its rank among the
  study's runs (the best-looking runs are the likeliest lucky ones: the winner's curse;
  :meth:`~tuner.review._surrogate.GaussianProcess.selection_aware`); its standard error is
  widened when the study's own runs are predicted worse than the model claims (a
  leave-one-out conformal check, :mod:`tuner.review._calibration`), never narrowed;
* ``single``: too few trials for a surrogate: the observed value, without an interval.

The **recommended** config is the one whose interval has the best pessimistic end (the
lowest upper bound when minimising, the highest lower bound when maximising), so a config
that was lucky once does not win over one that is good for sure; the rank debiasing above
enters this bound, so the choice accounts for the selection too. Once ``mttune verify`` has
measured configs, only measured configs are recommended; single-run candidates with a better
bound are listed as "promising, verify it" (:func:`choose`). ``P(best)`` of each of the
top-k candidates is the Monte-Carlo probability that it is truly the best of them (joint
Gaussian-process posterior draws, widened by the same factor as the intervals; independent
Student-t draws for repeated configs).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats

from tuner.review._calibration import Calibration, calibrate, normal_quantile
from tuner.review._configs import (
    Codec,
    ConfigGroup,
    ConfigIndex,
    ConfigKey,
    covering_distributions,
)
from tuner.review._load import StudyData
from tuner.review._surrogate import GaussianProcess, fit_gaussian_process, spread_subset

__all__ = ["Analysis", "Estimate", "analyse"]

MIN_TRIALS_FOR_SURROGATE = 5
_SURROGATE_ROWS = 600
_CANDIDATES_BY_OBSERVED = 64
_CANDIDATES_BY_MODEL = 64
_MAX_MODEL_SCREEN = 5000
_MAX_REPEATED = 200
_DRAWS = 4000


@dataclasses.dataclass
class Estimate:
    """The estimated true value of one config (oriented units: lower is better).

    Attributes:
        group: The config's runs.
        mean: Estimated true value.
        se: Its standard error (``None`` without a noise estimate).
        quantile: Multiplier of ``se`` for the interval (normal or Student t).
        method: ``verify-repeats``, ``repeats``, ``surrogate`` or ``single``.
        n_used: Runs the estimate rests on directly.
        sd: Spread (standard deviation) of the runs used, when there are >= 2.
        p_best: Probability of being the best of the top-k (top-k only).
        df: Degrees of freedom of a Student-t interval.
        pooled: Configs whose repeats the noise sd was pooled over (1: its own only).
    """

    group: ConfigGroup
    mean: float
    se: float | None
    quantile: float
    method: str
    n_used: int
    sd: float | None = None
    p_best: float | None = None
    df: int | None = None
    pooled: int = 1

    @property
    def half_width(self) -> float | None:
        """Half the interval's width (``None`` without an interval)."""
        return None if self.se is None else self.quantile * self.se

    @property
    def bound(self) -> float:
        """The interval's pessimistic end (oriented): what ranks candidates."""
        return self.mean + (self.half_width or 0.0)

    @property
    def observed_best(self) -> float:
        """The config's best single run (oriented)."""
        return float(self.group.y.min())


@dataclasses.dataclass
class Analysis:
    """Everything review derives about configs; the report sections are built from it.

    Attributes:
        data: The study.
        index: Completed runs by config.
        complete: Indices of completed finite runs.
        codec: The unit-cube encoding of the study's parameters.
        gp: The fitted surrogate (``None`` when too few trials or no variation).
        calibration: The leave-one-out check of the surrogate's intervals, whose factor
            widens them (``None`` without a surrogate).
        candidates: Estimates of the candidate configs, best pessimistic bound first.
        best_observed: Estimate of the config of the best single search run.
        best_observed_row: That run's index.
        top_k: How many candidates ``p_best`` compares.
        level: Interval coverage (0.95).
        noise_sd: One run's noise sd (pooled repeats when they have >= 4 degrees of freedom,
            else the surrogate's), ``None`` if unknown.
        noise_method: Where ``noise_sd`` comes from.
        pooled_sd: Pooled within-config sd of repeated configs, and its degrees of freedom.
        recommended: The candidate recommended (see :func:`choose`).
        promising: Single-run candidates with a better bound than a measured
            recommendation: "promising, verify it" (see :func:`choose`).
    """

    data: StudyData
    index: ConfigIndex
    complete: np.ndarray
    codec: Codec
    gp: GaussianProcess | None
    candidates: list[Estimate]
    best_observed: Estimate | None
    best_observed_row: int | None
    top_k: int
    level: float
    noise_sd: float | None
    noise_method: str | None
    pooled_sd: tuple[float, int] | None
    calibration: Calibration | None = None
    recommended: Estimate | None = None
    promising: list[Estimate] = dataclasses.field(default_factory=list)

    def estimate_of(self, key: ConfigKey) -> Estimate | None:
        """The candidate estimate of a config, if it is a candidate."""
        return next((e for e in self.candidates if e.group.key == key), None)


def _t_quantile(level: float, df: int) -> float:
    return float(stats.t.ppf(0.5 + level / 2, df))


def _from_runs(
    group: ConfigGroup,
    rows: list[int],
    y: np.ndarray,
    method: str,
    level: float,
    pool: tuple[float, int, int] | None = None,
) -> Estimate:
    """Mean and Student-t interval of a config's runs.

    With ``pool`` (pooled variance, its degrees of freedom, configs pooled) the noise sd is
    the pooled one whenever that has more degrees of freedom than the config's own runs.
    """
    vals = y[rows]
    n = len(vals)
    sd = float(np.std(vals, ddof=1))
    var, df, pooled = sd * sd, n - 1, 1
    if pool is not None and pool[1] > df:
        var, df, pooled = pool
    se = math.sqrt(var / n)
    return Estimate(
        group, float(vals.mean()), se, _t_quantile(level, df), method, n, sd, None, df, pooled
    )


def _pooled_variance(
    groups: list[ConfigGroup], y: np.ndarray, *, verified_only: bool = True
) -> tuple[float, int, int] | None:
    """Pooled within-config variance: (variance, df, configs).

    Over the verification repeats, or (``verified_only=False``) over every repeated config's
    runs.
    """
    ss, df, k = 0.0, 0, 0
    for g in groups:
        rows = g.repeat_rows if verified_only else g.rows
        if len(rows) >= 2:
            vals = y[rows]
            ss += float(((vals - vals.mean()) ** 2).sum())
            df += len(vals) - 1
            k += 1
    return (ss / df, df, k) if df else None


def analyse(data: StudyData, *, top_k: int = 5, level: float = 0.95, seed: int = 0) -> Analysis:
    """Estimate the candidate configs' true values and rank them (see the module docstring)."""
    rng = np.random.default_rng(seed)
    index = ConfigIndex(data)
    complete = index.complete
    codec = Codec(covering_distributions(data))
    y = index.y
    search = complete[~data.verification[complete]]
    eligible = search if len(search) else complete
    best_row = int(eligible[np.argmin(y[eligible])]) if len(eligible) else None

    gp = None
    if len(complete) >= MIN_TRIALS_FOR_SURROGATE and codec.dim > 0:
        rows = complete[spread_subset(y[complete], _SURROGATE_ROWS, rng)]
        gp = fit_gaussian_process(codec.encode([data.params[i] for i in rows]), y[rows], seed=seed)
    calibration = None if gp is None else calibrate(gp.process, level=level)
    factor = 1.0 if calibration is None else calibration.factor  # widens the surrogate's se

    # Repeated configs: their own runs.
    multi = index.repeated()
    verified_pool = _pooled_variance(multi, y)
    # a config the search happened to repeat twice can tie by chance: its noise sd comes
    # from every repeated config whenever that has more degrees of freedom
    repeats_pool = _pooled_variance(multi, y, verified_only=False)
    repeated: list[Estimate] = []
    for g in multi:
        if len(g.repeat_rows) >= 2:
            est = _from_runs(g, g.repeat_rows, y, "verify-repeats", level, verified_pool)
            repeated.append(est)
        else:
            repeated.append(_from_runs(g, g.rows, y, "repeats", level, repeats_pool))
    repeated.sort(key=lambda e: e.bound)
    repeated = repeated[:_MAX_REPEATED]

    # Configs run once: screen by observed value and by the surrogate's mean.
    singles = index.single_rows()
    chosen_rows = list(singles[:_CANDIDATES_BY_OBSERVED])
    if gp is not None and len(singles) > len(chosen_rows):
        screen = singles[:_MAX_MODEL_SCREEN]
        means = gp.mean(codec.encode([data.params[i] for i in screen]))
        picked = set(chosen_rows)
        for j in np.argsort(means, kind="stable")[:_CANDIDATES_BY_MODEL]:
            if screen[j] not in picked:
                chosen_rows.append(screen[j])
    chosen = [index.group_of_row(int(i)) for i in chosen_rows]
    if gp is not None and chosen:
        mean, cov = gp.selection_aware(codec.encode([g.params for g in chosen]))
        sd = np.sqrt(np.maximum(np.diag(cov), 0.0)) * factor
        q = normal_quantile(level)
        once = [
            Estimate(g, float(m), float(s), q, "surrogate", g.n)
            for g, m, s in zip(chosen, mean, sd, strict=True)
        ]
    else:
        once = [Estimate(g, float(g.y.min()), None, 0.0, "single", g.n) for g in chosen]

    candidates = sorted(repeated + once, key=lambda e: (e.bound, e.mean))
    _probability_of_best(candidates[:top_k], gp, codec, rng, factor=factor)

    best_est = None
    if best_row is not None:
        key = index.group_of_row(best_row).key
        best_est = next((e for e in candidates if e.group.key == key), None)

    noise_sd, noise_method, pooled = _noise(multi, y, gp)
    recommended, promising = choose(candidates)
    return Analysis(
        data=data,
        index=index,
        complete=complete,
        codec=codec,
        gp=gp,
        candidates=candidates,
        best_observed=best_est,
        best_observed_row=best_row,
        top_k=top_k,
        level=level,
        noise_sd=noise_sd,
        noise_method=noise_method,
        pooled_sd=pooled,
        calibration=calibration,
        recommended=recommended,
        promising=promising,
    )


MEASURED = ("verify-repeats", "repeats")


def choose(candidates: list[Estimate]) -> tuple[Estimate | None, list[Estimate]]:
    """The recommendation, and the single-run candidates to verify before trusting them.

    Without verified configs: the candidate with the best pessimistic bound. Once ``mttune
    verify`` has measured configs with fresh-seed repeats, a config run once does not win
    over them on the strength of that one run (it may be one of verify's own perturbed
    neighbours, the luckiest of many draws): the best *measured* candidate (``verify-repeats``
    or ``repeats``) is recommended, and the single-run candidates ranked above it are
    returned as promising.

    Args:
        candidates: Estimates, best bound first.
    """
    if not candidates:
        return None, []
    if not any(e.method == "verify-repeats" for e in candidates):
        return candidates[0], []
    k = next(i for i, e in enumerate(candidates) if e.method in MEASURED)
    return candidates[k], candidates[:k]


def _noise(
    groups: list[ConfigGroup], y: np.ndarray, gp: GaussianProcess | None
) -> tuple[float | None, str | None, tuple[float, int] | None]:
    ss, df = 0.0, 0
    for g in groups:
        rows = g.repeat_rows if len(g.repeat_rows) >= 2 else g.rows
        if len(rows) >= 2:
            vals = y[rows]
            ss += float(((vals - vals.mean()) ** 2).sum())
            df += len(rows) - 1
    pooled = (math.sqrt(ss / df), df) if df else None
    if pooled is not None and df >= 4:
        return pooled[0], f"pooled spread of repeated runs ({df} degrees of freedom)", pooled
    if gp is not None:
        return gp.noise_sd, "the surrogate's white-noise term", pooled
    if pooled is not None:
        return pooled[0], f"pooled spread of repeated runs ({df} degrees of freedom)", pooled
    return None, None, pooled


def _probability_of_best(
    top: list[Estimate],
    gp: GaussianProcess | None,
    codec: Codec,
    rng: np.random.Generator,
    *,
    factor: float = 1.0,
) -> None:
    """Set ``p_best`` on the top candidates by Monte Carlo over their posteriors.

    The surrogate's joint posterior is widened by the calibration ``factor``, as its intervals
    are, so that ``P(best)`` and the intervals tell the same story.
    """
    if not top:
        return
    if len(top) == 1:
        top[0].p_best = 1.0
        return
    if any(e.se is None for e in top):
        return
    draws = np.empty((_DRAWS, len(top)))
    surrogate = [j for j, e in enumerate(top) if e.method == "surrogate"]
    if surrogate and gp is not None:
        mean, cov = gp.selection_aware(codec.encode([top[j].group.params for j in surrogate]))
        cov = cov * factor**2
        jitter = 1e-12 * max(float(np.trace(cov)), 1e-300)
        draws[:, surrogate] = rng.multivariate_normal(
            mean, cov + jitter * np.eye(len(mean)), size=_DRAWS, method="eigh"
        )
    for j, e in enumerate(top):
        if e.method != "surrogate":
            df = max(e.df or e.n_used - 1, 1)
            draws[:, j] = e.mean + (e.se or 0.0) * rng.standard_t(df, size=_DRAWS)
    wins = np.bincount(np.argmin(draws, axis=1), minlength=len(top))
    for j, e in enumerate(top):
        e.p_best = float(wins[j] / _DRAWS)


def describe_method(e: Estimate, analysis: Analysis) -> str:
    """One sentence: how this estimate's interval was obtained."""
    pct = f"{round(100 * analysis.level)}%"
    if e.method == "verify-repeats":
        noise = (
            f"noise sd pooled over the repeats of {e.pooled} verified configs, {e.df} degrees "
            "of freedom"
            if e.pooled > 1
            else f"{e.df} degrees of freedom"
        )
        return (
            f"{pct} Student-t interval from {e.n_used} fresh-seed repeats run by mttune verify "
            f"({noise}; the search run that selected it is left out)"
        )
    if e.method == "repeats":
        noise = (
            f"noise sd pooled over {e.pooled} repeated configs, {e.df} degrees of freedom"
            if e.pooled > 1
            else f"{e.df} degrees of freedom"
        )
        return (
            f"{pct} Student-t interval from the {e.n_used} runs of this config in the study "
            f"({noise})"
        )
    if e.method == "surrogate":
        gp = analysis.gp
        assert gp is not None
        return (
            f"{pct} posterior interval of the noise-free objective under a {gp.describe()} "
            f"(noise sd {gp.noise_sd:.4g}), its own run debiased for its rank (winner's "
            "curse); run mttune verify for intervals from real repeats"
        )
    n = len(analysis.complete)
    if n < MIN_TRIALS_FOR_SURROGATE:
        return (
            f"no interval: {n} completed trial(s) are too few for a noise estimate (need "
            f"{MIN_TRIALS_FOR_SURROGATE}); run mttune verify to measure it"
        )
    if analysis.codec.dim == 0:
        return "no interval: the study has no parameter a model can use; run mttune verify"
    return (
        f"no interval: all {n} completed trials have the same value, so there is no "
        "variation to model; run mttune verify to measure the noise"
    )


def why_different(analysis: Analysis, fmt: Any) -> str | None:
    """One sentence on why the best observed and the recommended configs differ."""
    rec, best = analysis.recommended, analysis.best_observed
    data = analysis.data
    if rec is None or analysis.best_observed_row is None:
        return None
    best_num = int(data.numbers[analysis.best_observed_row])
    best_val = float(data.values[analysis.best_observed_row])
    if best is not None and best.group.key == rec.group.key:
        return None
    rec_num = rec.group.representative(data)
    s = data.sign
    if best is None or best.se is None:
        return (
            f"trial #{best_num} has the best single value ({fmt(best_val)}), but trial "
            f"#{rec_num}'s config has the better estimate once noise is accounted for."
        )
    word = "upper" if data.direction == "minimize" else "lower"
    if best.method == "surrogate":
        source = "the surrogate, which pools its run with its neighbours',"
    else:
        source = f"its {best.n_used} repeated runs"
    estimate = f"{fmt(s * best.mean)} ± {fmt(best.half_width or 0.0)}"
    bounds = f"{word} bound {fmt(s * rec.bound)} vs {fmt(s * best.bound)}"
    if best.mean > s * best_val:  # its true value is estimated worse than its best run
        return (
            f"trial #{best_num}'s {fmt(best_val)} looks like a lucky draw: {source} put its "
            f"true value at {estimate}, while trial #{rec_num}'s config has the best worst "
            f"case ({bounds})."
        )
    return (
        f"{source[0].upper()}{source[1:].rstrip(',')} put trial #{best_num}'s config at "
        f"{estimate}, but trial #{rec_num}'s config has a better worst case ({bounds})."
    )
