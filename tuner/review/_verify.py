"""``mttune verify``: measure the top configs' intervals and robustness with real runs.

The top-k configs, in the order of the review's recommendation, are each run ``repeats``
times with fresh seeds, and once at each perturbed neighbour (every numeric hyperparameter
moved by ``-perturb`` and ``+perturb`` in the unit-cube encoding), through the same script
protocol as ``mttune run``. Every run is stored as a finished trial of the same study, with
the usual runner attributes (``seed``, ``metrics``, ``duration_s``, ``exit_code``,
``fail_reason``, ...) and a ``verify`` tag::

    {"of": 12, "kind": "repeat"}
    {"of": 12, "kind": "perturb", "param": "lr", "delta": -0.05, "value": 0.0031}

(``of``: the trial number naming the verified config; ``delta``: the move in cube units).
A run is only added once it has finished, so an interrupted verify leaves no RUNNING trial.
A failing script is recorded as a FAILED trial, never fatal. ``mttune review`` then takes
the intervals from these repeats and the robustness from these neighbours.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.trial import TrialState, create_trial

from tuner._errors import MttuneError
from tuner.review._confidence import Analysis, Estimate, analyse
from tuner.review._configs import Codec
from tuner.review._load import ReviewError, StudyData, list_studies, read_study
from tuner.review._report import Review, review_data
from tuner.review._robustness import Robustness, robustness
from tuner.runners import (
    DEFAULT_MAX_OUTPUT_BYTES,
    ScriptSpec,
    TrialOutcome,
    on_stop_signals,
    outcome_attrs,
    run_script,
)
from tuner.studies import TrialAttr, open_storage

__all__ = ["VerifyOptions", "VerifyResult", "VerifyRun", "verify_study"]

_MAX_SEED = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class VerifyOptions:
    """What ``mttune verify`` runs.

    Attributes:
        top_k: Configs verified (the review's best first).
        repeats: Fresh-seed runs of each config.
        perturb: Move of each numeric hyperparameter for the neighbours (unit-cube units;
            0 runs no neighbours).
        seed: Seeds the choice of fresh seeds (``None``: different every time).
        trial_timeout: Seconds after which a run is killed and FAILED.
        max_output_bytes: A run printing more on stdout is FAILED.
        trials: Verify the configs of these trial numbers instead of the top-k (e.g. the
            "promising, verify it" candidates of a review).
    """

    top_k: int = 3
    repeats: int = 5
    perturb: float = 0.05
    seed: int | None = None
    trial_timeout: float | None = None
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    trials: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        checks = [
            (self.top_k >= 1, "--top-k must be >= 1", self.top_k),
            (
                self.repeats >= 2,
                "--repeats must be >= 2 (an interval needs two runs)",
                self.repeats,
            ),
            (
                0.0 <= self.perturb <= 0.5,
                "--perturb must be between 0 and 0.5 (a share of each range)",
                self.perturb,
            ),
            (
                self.trial_timeout is None or self.trial_timeout > 0,
                "--trial-timeout must be > 0",
                self.trial_timeout,
            ),
        ]
        for ok, rule, value in checks:
            if not ok:
                raise MttuneError(f"{rule}, got {value!r}.")


@dataclasses.dataclass
class VerifyRun:
    """One verification run, as recorded."""

    number: int
    of: int
    kind: str
    param: str | None
    delta: float | None
    param_value: Any
    seed: int
    state: str
    value: float | None
    reason: str | None
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        out = dataclasses.asdict(self)
        if out["value"] is not None and not math.isfinite(out["value"]):
            out["value"] = None
        return out


@dataclasses.dataclass
class VerifyResult:
    """What verify did and the review it leads to.

    Attributes:
        runs: Every run, in order.
        verified: The verified configs' estimates after the runs (trial numbers naming them).
        robustness: Measured robustness per verified config (by trial number).
        review: The study's review after verification.
    """

    runs: list[VerifyRun]
    verified: list[Estimate]
    robustness: dict[int, Robustness]
    review: Review


class _Planned(NamedTuple):
    """One run of a config's plan: a fresh-seed repeat, or a neighbour (``param`` moved)."""

    kind: str
    params: dict[str, Any]
    param: str | None
    delta: float | None


def _plan(estimate: Estimate, codec: Codec, options: VerifyOptions) -> list[_Planned]:
    """The runs for one config: repeats, then each numeric parameter's neighbours."""
    params = estimate.group.params
    plan = [_Planned("repeat", dict(params), None, None) for _ in range(options.repeats)]
    if options.perturb > 0:
        for name in codec.names:
            if name not in params or codec.is_categorical(name):
                continue
            for sign in (-1, 1):
                nb = codec.neighbour(name, params[name], sign * options.perturb)
                if nb is not None:
                    plan.append(_Planned("perturb", {**params, name: nb[0]}, name, nb[1]))
    return plan


def verify_study(
    location: str,
    study_name: str,
    script: ScriptSpec,
    options: VerifyOptions,
    *,
    log: Callable[[str], None] | None = None,
    review_seed: int = 0,
) -> VerifyResult:
    """Run the verification of a study's top configs and record it (module docstring).

    Args:
        location: Storage URL, SQLite path or journal file (opened read-write).
        study_name: The study.
        script: The training script, as for ``mttune run``.
        options: What to run.
        log: Called with one line per finished run.
        review_seed: Seed of the reviews before and after.

    Raises:
        ReviewError: if the study has no completed trial to verify.
    """
    # Read-only first: a wrong path or name must not create an empty database.
    if study_name not in {s.name for s in list_studies(location)}:
        read_study(location, study_name)  # raises, listing the studies there are
    storage = open_storage(location)
    recorder = _Recorder(
        storage=storage,
        study_id=storage.get_study_id_from_name(study_name),
        study_name=study_name,
        script=script,
        options=options,
        log=log or (lambda _line: None),
    )
    data = read_study(location, study_name, extra_attrs=(TrialAttr.SEED,))
    before = analyse(data, top_k=options.top_k, seed=review_seed)
    targets = (
        _named(before, options.trials) if options.trials else before.candidates[: options.top_k]
    )
    if not targets:
        raise ReviewError(
            f"study {study_name!r} has no completed trial with a finite value: nothing to "
            "verify. Run trials first (mttune run)."
        )
    used = {s for a in data.attrs if (s := TrialAttr.SEED.get(a)) is not None}
    seeds = functools.partial(_fresh_seed, np.random.default_rng(options.seed), used)
    runs: list[VerifyRun] = []
    # SIGTERM and SIGHUP stop it as Ctrl-C does: the running script is killed, not orphaned
    restore = on_stop_signals()
    try:
        for rank, est in enumerate(targets, 1):
            label = f"config {rank}/{len(targets)}"
            runs += recorder.verify(est, data, before.codec, seeds, label)
    finally:
        restore()
    after = review_data(
        read_study(location, study_name),
        top_k=max(options.top_k, 5),
        perturb=options.perturb if options.perturb > 0 else 0.05,
        seed=review_seed,
        script=(str(script.path), *script.args),
        repeats=options.repeats,
    )
    verified, rob = _measured(after, targets, options.perturb)
    return VerifyResult(runs=runs, verified=verified, robustness=rob, review=after)


@dataclasses.dataclass
class _Recorder:
    """Runs the verification runs of a study and stores each as a finished trial."""

    storage: BaseStorage
    study_id: int
    study_name: str
    script: ScriptSpec
    options: VerifyOptions
    log: Callable[[str], None]

    def verify(
        self,
        estimate: Estimate,
        data: StudyData,
        codec: Codec,
        seeds: Callable[[], int],
        label: str,
    ) -> list[VerifyRun]:
        """Every run of one config's plan (repeats, then neighbours), logged as it ends."""
        group = estimate.group
        of = group.representative(data)
        row = (group.search_rows or group.rows)[0]
        base_dists = dict(data.trial_distributions[row])
        plan = _plan(estimate, codec, self.options)
        self.log(f"{label}: trial #{of}, {len(plan)} runs")
        runs: list[VerifyRun] = []
        n_repeat = 0
        for planned in plan:
            seed = seeds()
            if planned.kind == "repeat":
                n_repeat += 1
                what = f"repeat {n_repeat}/{self.options.repeats}"
                dists = base_dists
            else:
                name = planned.param
                assert name is not None
                value = planned.params[name]
                what = f"{name} {float(planned.delta or 0.0):+.3g} (= {value!s:.10})"
                dists = {**base_dists, name: _holding(value, name, data, codec)}
            runs.append(self.run(planned, of, dists, seed, what))
        return runs

    def run(
        self, planned: _Planned, of: int, dists: dict[str, BaseDistribution], seed: int, what: str
    ) -> VerifyRun:
        """Run one planned config, store it as a trial tagged ``verify``, log one line."""
        name, delta = planned.param, planned.delta
        tag: dict[str, Any] = {"of": of, "kind": planned.kind}
        if name is not None:
            tag.update(param=name, delta=round(float(delta or 0.0), 6), value=planned.params[name])
        started = datetime.datetime.now()
        outcome = run_script(
            self.script,
            planned.params,
            seed=seed,
            env={
                "MTTUNE_STUDY": self.study_name,
                "MTTUNE_TRIAL_NUMBER": str(self.storage.get_n_trials(self.study_id)),
                "MTTUNE_VERIFY": planned.kind,
            },
            timeout=self.options.trial_timeout,
            max_output_bytes=self.options.max_output_bytes,
        )
        complete = _complete(outcome)
        number = self._store(planned.params, dists, seed, tag, outcome, started)
        run = VerifyRun(
            number=number,
            of=of,
            kind=planned.kind,
            param=name,
            delta=None if delta is None else float(delta),
            param_value=None if name is None else planned.params[name],
            seed=seed,
            state="complete" if complete else "failed",
            value=outcome.value if complete else None,
            reason=None if complete else (outcome.reason or "no result"),
            duration_s=round(outcome.duration, 3),
        )
        result = f"{run.value:.6g}" if complete else f"FAILED: {run.reason}"
        self.log(f"  #{number} {what} of #{of}, seed {seed}: {result} ({outcome.duration:.1f}s)")
        return run

    def _store(
        self,
        params: dict[str, Any],
        dists: dict[str, BaseDistribution],
        seed: int,
        tag: dict[str, Any],
        outcome: TrialOutcome,
        started: datetime.datetime,
    ) -> int:
        """Add the finished run to the study (COMPLETE, else FAIL); its trial number."""
        attrs = {**outcome_attrs(outcome), TrialAttr.SEED.key: seed, TrialAttr.VERIFY.key: tag}
        complete = _complete(outcome)
        if not complete:
            attrs.setdefault(TrialAttr.FAIL_REASON.key, outcome.reason or "no result")
        trial = create_trial(
            state=TrialState.COMPLETE if complete else TrialState.FAIL,
            value=outcome.value if complete else None,
            params=params,
            distributions=dists,
            user_attrs=attrs,
            intermediate_values={int(s): float(v) for s, v in outcome.intermediate},
        )
        trial.datetime_start = started
        trial_id = self.storage.create_new_trial(self.study_id, template_trial=trial)
        return self.storage.get_trial_number_from_id(trial_id)


def _named(analysis: Analysis, numbers: tuple[int, ...]) -> list[Estimate]:
    """The candidates holding the trials ``numbers`` (``--trials``), in that order."""
    data = analysis.data
    out: list[Estimate] = []
    for number in numbers:
        found = next((e for e in analysis.candidates if number in e.group.numbers(data)), None)
        if found is None:
            raise ReviewError(
                f"--trials: trial #{number} is not a completed config among the "
                f"{len(analysis.candidates)} candidates review ranks in study {data.name!r}. "
                "Pass trial numbers that mttune review lists (top-k or 'promising')."
            )
        if found not in out:
            out.append(found)
    return out


def _complete(outcome: TrialOutcome) -> bool:
    """Whether a run finished with a value (else it is recorded as FAILED)."""
    return outcome.state == "complete" and outcome.value is not None


def _measured(
    after: Review, targets: list[Estimate], perturb: float
) -> tuple[list[Estimate], dict[int, Robustness]]:
    """The verified configs' estimates after the runs, and their measured robustness."""
    verified: list[Estimate] = []
    rob: dict[int, Robustness] = {}
    for est in targets:
        found = after.analysis.estimate_of(est.group.key)
        if found is None:
            continue
        verified.append(found)
        number = found.group.representative(after.analysis.data)
        rob[number] = robustness(after.analysis, found, perturb)
    return verified, rob


def _fresh_seed(rng: np.random.Generator, used: set[int]) -> int:
    while True:
        seed = int(rng.integers(0, _MAX_SEED))
        if seed not in used:
            used.add(seed)
            return seed


def _holding(value: Any, name: str, data: StudyData, codec: Codec) -> BaseDistribution:
    """The distribution a perturbed run records for the moved parameter.

    The study's latest when it holds the value, else the one review encoded it on (the
    parameter's range changed during the study).
    """
    latest = data.distributions[name]
    if latest._contains(latest.to_internal_repr(value)):
        return latest
    return codec.distribution(name)
