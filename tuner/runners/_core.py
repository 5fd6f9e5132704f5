"""What both backends (Optuna, Ray Tune) do the same way: a run's options, study and trials.

Only the scheduling of the trials differs between :func:`~tuner.runners.run_study` and
:func:`~tuner.runners.run_ray`; around it, a run of either backend

* opens its study with :func:`create_or_resume_study` and seeds its sampler with
  :func:`sampler_seed` (what ``mttune run`` does before either backend starts);
* recovers what earlier runs left behind and counts the study (:func:`running`, which makes
  the run's :class:`RunBook`);
* starts each trial with :func:`start_trial` (runner tag, parameters, seed) and runs its
  script with :func:`trial_env`;
* records each finished trial with :meth:`RunBook.trial_finished` (counts, progress, the
  caller's callback, recovery of the trials of dead runners), or, when another runner took
  the trial for dead while it ran, keeps its result with :meth:`RunBook.keep_superseded`;
* ends with :meth:`RunBook.summary`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner._errors import MttuneError
from tuner.runners._liveness import runner_attr
from tuner.runners._progress import Progress
from tuner.runners._protocol import DEFAULT_MAX_OUTPUT_BYTES, TrialOutcome
from tuner.runners._study import (
    StudyCounts,
    best_trial,
    count_trials,
    fail_dead_local_trials,
    fail_orphaned_trials,
    join_study,
    recover_interrupted,
    storage_label,
    trial_seed,
)
from tuner.space import SearchSpace
from tuner.studies import StudyAttr, TrialAttr, open_storage, storage_failure

__all__ = [
    "OUTCOME_STATES",
    "RunBook",
    "RunOptions",
    "RunSummary",
    "create_or_resume_study",
    "grace_period",
    "prepare_run",
    "running",
    "sampler_seed",
    "start_trial",
    "summarize_run",
    "trial_env",
]

# the study state of each outcome of the script protocol
OUTCOME_STATES = {
    "complete": TrialState.COMPLETE,
    "pruned": TrialState.PRUNED,
    "failed": TrialState.FAIL,
}


def grace_period(heartbeat: int) -> int:
    """Seconds without a heartbeat after which a RUNNING trial's runner is taken as dead."""
    return 2 * heartbeat + 5


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Budget and limits of a run.

    Attributes:
        n_trials: Target number of finished trials in the study (resume-aware): a re-run of the
            same command only runs what is missing. ``None`` with a ``timeout`` runs until it.
        timeout: Seconds after which no new trial starts.
        trial_timeout: Seconds after which one trial is killed and FAILED.
        n_jobs: Trials run in parallel (threads, each driving one subprocess).
        seed: Seeds the sampler and each trial's ``MTTUNE_SEED``.
        max_output_bytes: A trial printing more on stdout is FAILED.
        heartbeat: Seconds between trial heartbeats; a trial silent for its
            :func:`grace_period` (``2 * heartbeat + 5`` seconds) is taken as dead (its runner
            was killed) and re-run.
    """

    n_trials: int | None = 20
    timeout: float | None = None
    trial_timeout: float | None = None
    n_jobs: int = 1
    seed: int | None = None
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    heartbeat: int = 10

    def __post_init__(self) -> None:
        checks = [
            (
                self.n_trials is None or self.n_trials >= 1,
                "--n-trials must be >= 1",
                self.n_trials,
            ),
            (self.timeout is None or self.timeout > 0, "--timeout must be > 0", self.timeout),
            (
                self.trial_timeout is None or self.trial_timeout > 0,
                "--trial-timeout must be > 0",
                self.trial_timeout,
            ),
            (self.n_jobs >= 1, "--n-jobs must be >= 1", self.n_jobs),
            (
                self.seed is None or 0 <= self.seed < 2**32,
                "--seed must be in 0..4294967295",
                self.seed,
            ),
            (
                1 <= self.heartbeat <= 86400,
                "--heartbeat must be between 1 and 86400 (a day)",
                self.heartbeat,
            ),
            (
                self.max_output_bytes >= 1024,
                "--max-output-bytes must be >= 1024",
                self.max_output_bytes,
            ),
        ]
        for ok, rule, value in checks:
            if not ok:
                raise MttuneError(f"{rule}, got {value!r}.")
        if self.n_trials is None and self.timeout is None:
            raise MttuneError("give --n-trials or --timeout (or both); got neither.")


@dataclasses.dataclass
class RunSummary:
    """What a run did, for the final report."""

    study_name: str
    storage: str
    counts: StudyCounts
    ran: int
    elapsed: float
    best: FrozenTrial | None
    direction: str
    interrupted: bool = False
    recovered: list[int] = dataclasses.field(default_factory=list)


# ------------------------------------------------------------------------------ the study
def create_or_resume_study(
    storage_url: str,
    study_name: str,
    space: SearchSpace,
    sampler: optuna.samplers.BaseSampler | None,
    pruner: optuna.pruners.BasePruner | None,
    *,
    heartbeat: int = 10,
) -> optuna.Study:
    """Open the study (creating it if new) and check it matches the space's direction.

    Raises:
        MttuneError: if an existing study of that name optimises in the other direction or
            was made with another search space.
    """
    storage = open_storage(
        storage_url, heartbeat_interval=heartbeat, grace_period=grace_period(heartbeat)
    )
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction=space.objective.direction,
        load_if_exists=True,
    )
    if study._is_multi_objective():
        raise MttuneError(
            f"study {study_name!r} is multi-objective; mttune run tunes one objective."
        )
    if study.direction.name.lower() != space.objective.direction:
        raise MttuneError(
            f"study {study_name!r} in {storage_url} {study.direction.name.lower()}s, but the "
            f"space says '{space.objective.direction}'. Use another --study name or fix the "
            "space's objective.direction."
        )
    _check_space(study, space)
    return study


def _check_space(study: optuna.Study, space: SearchSpace) -> None:
    """Record the space on a new study; refuse another space on an existing one."""
    recorded = StudyAttr.SPACE_HASH.get(study.user_attrs)
    if recorded is None:
        study.set_user_attr(StudyAttr.SPACE_HASH.key, space.hash)
        study.set_user_attr(StudyAttr.SPACE.key, space.to_dict())
        study.set_user_attr(StudyAttr.OBJECTIVE.key, space.objective.name)
    elif recorded != space.hash:
        old = StudyAttr.SPACE.get(study.user_attrs)
        diff = ""
        if old is not None:
            try:
                before = SearchSpace.from_dict(old)
            except MttuneError:
                before = None
            if before is not None and before.hash == space.hash:
                # the same space (its recorded hash was made by an older mttune, or only the
                # help texts changed): record the current hash and go on
                study.set_user_attr(StudyAttr.SPACE_HASH.key, space.hash)
                study.set_user_attr(StudyAttr.SPACE.key, space.to_dict())
                return
            if before is not None:
                diff = "; ".join(before.diff(space)[:5])
        raise MttuneError(
            f"study {study.study_name!r} was tuned with another search space (hash "
            f"{recorded}, now {space.hash}){': ' + diff if diff else ''}. Use a new --study "
            "name for the new space."
        )


def sampler_seed(study: optuna.Study, seed: int | None) -> int | None:
    """Join ``study`` as one more runner; the seed its sampler gets for a run of ``seed``.

    Resume-aware: a resumed run must not replay the first run's suggestions (the seed moves
    on with the trials already in the study), and runners that share the study with the same
    seed must not draw the same configs (:func:`~tuner.runners.join_study`). The first run of
    a new study keeps ``seed`` as it is: same seed, same suggestions. ``mttune run`` seeds
    its sampler (and a prior's sampler) with it; call it before building the sampler of a
    study that :func:`~tuner.runners.run_study` resumes.

    Returns:
        ``None`` for ``seed=None`` (the runner still joins the study), else a seed in
        ``0..2**32-1``.
    """
    n_existing = len(study.get_trials(deepcopy=False))
    apart = join_study(study)
    return None if seed is None else (seed + 1_000_003 * n_existing + apart) % 2**32


# ------------------------------------------------------------------------------ the run
def prepare_run(
    study: optuna.Study, options: RunOptions, progress: Progress
) -> tuple[list[int], StudyCounts]:
    """Before a run: recover what earlier runs left behind, then count the study.

    RUNNING trials of dead runners are failed as interrupted (at once for runners on this
    host, after their heartbeat's grace period for the others) and every interrupted trial
    is queued again.

    Returns:
        The numbers of the trials queued again, and the study's counts before the run.
    """
    fail_dead_local_trials(study)
    fail_orphaned_trials(study, grace_period=grace_period(options.heartbeat), log=progress.message)
    recovered = recover_interrupted(study)
    return recovered, count_trials(study.get_trials(deepcopy=False))


def summarize_run(
    study: optuna.Study,
    *,
    start_counts: StudyCounts,
    started: float,
    interrupted: bool,
    recovered: list[int],
) -> RunSummary:
    """The :class:`RunSummary` of a run that began at ``started`` (``time.monotonic()``)."""
    trials = study.get_trials(deepcopy=False)
    counts = count_trials(trials)
    return RunSummary(
        study_name=study.study_name,
        storage=storage_label(study),
        counts=counts,
        ran=counts.done - start_counts.done,
        elapsed=time.monotonic() - started,
        best=best_trial(study, trials),
        direction=study.direction.name.lower(),
        interrupted=interrupted,
        recovered=recovered,
    )


class RunBook:
    """The bookkeeping of one run, the same for both backends (made by :func:`running`).

    Attributes:
        study: The study the run tunes.
        options: The run's budget and limits.
        progress: Receives the run's messages and finished trials.
        recovered: Trials of earlier runs queued again before this one started.
        start_counts: The study's counts before the run.
        counts: The study's counts after the last finished trial.
        started: When the run started (``time.monotonic()``).
    """

    def __init__(
        self,
        study: optuna.Study,
        options: RunOptions,
        *,
        progress: Progress,
        on_trial: Callable[[FrozenTrial], None] | None = None,
    ) -> None:
        self.study = study
        self.options = options
        self.progress = progress
        self._on_trial = on_trial
        self.recovered, self.start_counts = prepare_run(study, options, progress)
        self.counts = self.start_counts
        self.started = time.monotonic()

    def trial_finished(self, frozen: FrozenTrial, *, recover: bool = True) -> StudyCounts:
        """After a trial landed in the study: count, report, recover; the new counts.

        ``recover`` also fails the RUNNING trials of dead runners on this host and queues
        every interrupted trial again (off when the run is ending).
        """
        trials = self.study.get_trials(deepcopy=False)
        self.counts = count_trials(trials)
        self.progress.trial_finished(frozen, self.counts, best_trial(self.study, trials))
        if self._on_trial is not None:
            self._on_trial(frozen)
        if recover:
            fail_dead_local_trials(self.study)
            recover_interrupted(self.study)
        return self.counts

    def keep_superseded(
        self, trial: optuna.Trial, outcome: TrialOutcome, attrs: dict[str, Any]
    ) -> None:
        """Keep the result of a trial that another runner failed as dead while it ran.

        The result lands as a re-run of it (``retry_of``): in the re-run the other runner
        queued already, if there is one (so the config does not run twice), else in a new
        trial.
        """
        state = OUTCOME_STATES[outcome.state]
        if state == TrialState.FAIL:
            attrs.setdefault(TrialAttr.FAIL_REASON.key, outcome.reason or "failed")
        attrs = {**attrs, TrialAttr.RETRY_OF.key: trial.number}
        value = outcome.value if state == TrialState.COMPLETE else None
        intermediate = {int(k): float(v) for k, v in outcome.intermediate}
        claimed = _claim_waiting_retry(self.study, trial.number)
        if claimed is not None:
            _fill_claimed(self.study, claimed, trial, state, value, attrs, intermediate)
        else:
            self.study.add_trial(
                optuna.trial.create_trial(
                    state=state,
                    value=value,
                    params=trial.params,
                    distributions=trial.distributions,
                    user_attrs=attrs,
                    intermediate_values=intermediate,
                )
            )
        self.progress.message(
            f"trial {trial.number} was failed by another runner while it ran; its result is "
            "kept as its re-run"
        )

    def summary(self, *, interrupted: bool) -> RunSummary:
        """The run's :class:`RunSummary`, now."""
        return summarize_run(
            self.study,
            start_counts=self.start_counts,
            started=self.started,
            interrupted=interrupted,
            recovered=self.recovered,
        )


@contextlib.contextmanager
def running(
    study: optuna.Study,
    options: RunOptions,
    *,
    progress: Progress,
    on_trial: Callable[[FrozenTrial], None] | None = None,
) -> Iterator[RunBook]:
    """A run of either backend: recover and count, show progress for the block, then stop.

    A storage failure in the block (locked, read-only, full disk...) comes out as the
    :class:`~tuner.studies.StorageError` that says so.
    """
    book = RunBook(study, options, progress=progress, on_trial=on_trial)
    progress.start(study, book.start_counts, options.n_trials, options.timeout)
    try:
        yield book
    except Exception as e:
        failure = storage_failure(e)
        if failure is None:
            raise
        raise failure from None
    finally:
        progress.stop()


# ------------------------------------------------------------------------------ a trial
def start_trial(
    trial: optuna.Trial, space: SearchSpace, options: RunOptions
) -> tuple[dict[str, Any], int]:
    """Start a trial as both backends do: tag its runner, sample its parameters, seed it.

    The runner tag comes first: another runner takes an untagged RUNNING trial for an orphan
    once its heartbeat is stale, and recovers a tagged one of a dead runner on this host at
    once. The seed comes last, so a trial with a seed has its parameters too.

    Returns:
        The trial's parameters and the seed its script gets (``MTTUNE_SEED``).
    """
    trial.set_user_attr(TrialAttr.RUNNER.key, runner_attr())
    params = space.suggest(trial)
    seed = trial_seed(options.seed, trial.number)
    trial.set_user_attr(TrialAttr.SEED.key, seed)
    return params, seed


def trial_env(study_name: str, number: int) -> dict[str, str]:
    """The environment a trial's script gets besides its parameters and seed."""
    return {"MTTUNE_TRIAL_NUMBER": str(number), "MTTUNE_STUDY": study_name}


def _claim_waiting_retry(study: optuna.Study, number: int) -> FrozenTrial | None:
    """Take a queued re-run of trial ``number`` (WAITING -> RUNNING), if there is one."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if TrialAttr.RETRY_OF.get(
            t.user_attrs
        ) == number and study._storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
            return t
    return None


def _fill_claimed(
    study: optuna.Study,
    claimed: FrozenTrial,
    ran: optuna.Trial,
    state: TrialState,
    value: float | None,
    attrs: dict[str, Any],
    intermediate: dict[int, float],
) -> None:
    """Record a result in a claimed re-run: the parameters, attributes, reports, state."""
    storage, tid = study._storage, claimed._trial_id
    for key, v in attrs.items():  # the runner's tag among them, first of all
        storage.set_trial_user_attr(tid, key, v)
    for name, dist in ran.distributions.items():
        storage.set_trial_param(tid, name, dist.to_internal_repr(ran.params[name]), dist)
    for step, v in intermediate.items():
        storage.set_trial_intermediate_value(tid, step, v)
    storage.set_trial_state_values(tid, state, None if value is None else [value])
