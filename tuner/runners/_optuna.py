"""The local runner: tune a training script with an Optuna study (``mttune run``)."""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner._errors import MttuneError
from tuner.runners._progress import NullProgress, Progress
from tuner.runners._protocol import DEFAULT_MAX_OUTPUT_BYTES, ScriptSpec, run_script
from tuner.runners._study import (
    StudyCounts,
    best_trial,
    count_trials,
    fail_dead_local_trials,
    fail_orphaned_trials,
    outcome_attrs,
    recover_interrupted,
    runner_attr,
    storage_label,
    trial_seed,
)
from tuner.space import SearchSpace
from tuner.studies import StudyAttr, TrialAttr, open_storage, storage_failure

__all__ = [
    "RunOptions",
    "RunSummary",
    "TrialFailed",
    "create_or_resume_study",
    "prepare_run",
    "run_study",
    "summarize_run",
]


class TrialFailed(Exception):
    """Raised inside the objective so that Optuna records the trial as FAILED."""


class _Superseded(Exception):
    """Another runner finished this trial while it ran (it took it for dead)."""


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
        heartbeat: Seconds between trial heartbeats; a trial silent for ``2 * heartbeat + 5``
            seconds is taken as dead (its runner was killed) and re-run.
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
            (self.heartbeat >= 1, "--heartbeat must be >= 1", self.heartbeat),
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
        storage_url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat + 5
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
                return study
            if before is not None:
                diff = "; ".join(before.diff(space)[:5])
        raise MttuneError(
            f"study {study_name!r} was tuned with another search space (hash {recorded}, now "
            f"{space.hash}){': ' + diff if diff else ''}. Use a new --study name for the new "
            "space."
        )
    return study


def run_study(
    study: optuna.Study,
    script: ScriptSpec,
    space: SearchSpace,
    options: RunOptions,
    *,
    progress: Progress | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
) -> RunSummary:
    """Run trials of ``script`` in ``study`` until ``options`` says stop.

    Interrupted trials of earlier runs are re-queued first. Ctrl-C stops the run cleanly:
    the running trials are killed, marked ``interrupted`` and re-run by the next run.
    """
    progress = progress or NullProgress()
    recovered, start_counts = prepare_run(study, options, progress)
    remaining = None if options.n_trials is None else max(0, options.n_trials - start_counts.done)
    started = time.monotonic()
    stop_event = threading.Event()
    lock = threading.Lock()

    superseded = threading.Event()

    def objective(trial: optuna.Trial) -> float:
        try:
            return run_one(trial)
        except optuna.exceptions.UpdateFinishedTrialError:
            superseded.set()
            raise _Superseded() from None

    def run_one(trial: optuna.Trial) -> float:
        if stop_event.is_set():
            trial.set_user_attr(TrialAttr.INTERRUPTED.key, True)
            raise TrialFailed("the run is stopping")
        trial.set_user_attr(TrialAttr.RUNNER.key, runner_attr())
        params = space.suggest(trial)
        seed = trial_seed(options.seed, trial.number)
        trial.set_user_attr(TrialAttr.SEED.key, seed)

        def on_report(step: int, value: float) -> bool:
            if step < 0:
                return False
            try:
                trial.report(value, step)
            except optuna.exceptions.UpdateFinishedTrialError:
                return False  # failed by another runner: finish, the result is kept below
            return trial.should_prune()

        try:
            outcome = run_script(
                script,
                params,
                seed=seed,
                env={
                    "MTTUNE_TRIAL_NUMBER": str(trial.number),
                    "MTTUNE_STUDY": study.study_name,
                },
                timeout=options.trial_timeout,
                on_report=on_report,
                max_output_bytes=options.max_output_bytes,
                cancel=stop_event,
            )
        except BaseException:
            trial.set_user_attr(TrialAttr.INTERRUPTED.key, True)
            raise
        if outcome.state == "failed" and stop_event.is_set():
            # killed by the stop (a script that finished just before it keeps its result)
            trial.set_user_attr(TrialAttr.INTERRUPTED.key, True)
            raise TrialFailed("the run was stopped")
        recorded = outcome_attrs(outcome)
        try:
            for key, value in recorded.items():
                trial.set_user_attr(key, value)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another runner failed this trial as dead (this one was paused past its
            # heartbeat's grace period): keep the result as a retry of it.
            keep_superseded(
                trial,
                outcome,
                {TrialAttr.RUNNER.key: runner_attr(), TrialAttr.SEED.key: seed, **recorded},
            )
            superseded.set()
            raise _Superseded() from None
        if outcome.state == "complete":
            assert outcome.value is not None
            return outcome.value
        if outcome.state == "pruned":
            raise optuna.TrialPruned(outcome.reason)
        raise TrialFailed(outcome.reason)

    def keep_superseded(trial: optuna.Trial, outcome: Any, attrs: dict[str, Any]) -> None:
        state = {
            "complete": TrialState.COMPLETE,
            "pruned": TrialState.PRUNED,
            "failed": TrialState.FAIL,
        }[outcome.state]
        if state == TrialState.FAIL:
            attrs.setdefault(TrialAttr.FAIL_REASON.key, outcome.reason or "failed")
        attrs = {**attrs, TrialAttr.RETRY_OF.key: trial.number}
        value = outcome.value if state == TrialState.COMPLETE else None
        intermediate = {int(k): float(v) for k, v in outcome.intermediate}
        # the other runner may have queued a re-run of it already: fill that one in
        claimed = _claim_waiting_retry(study, trial.number)
        if claimed is not None:
            _fill_claimed(study, claimed, trial, state, value, attrs, intermediate)
        else:
            study.add_trial(
                optuna.trial.create_trial(
                    state=state,
                    value=value,
                    params=trial.params,
                    distributions=trial.distributions,
                    user_attrs=attrs,
                    intermediate_values=intermediate,
                )
            )
        progress.message(
            f"trial {trial.number} was failed by another runner while it ran; its result is "
            "kept as its re-run"
        )

    def after_trial(study_: optuna.Study, frozen: FrozenTrial) -> None:
        with lock:
            trials = study_.get_trials(deepcopy=False)
            counts = count_trials(trials)
            progress.trial_finished(frozen, counts, best_trial(study_, trials))
            if on_trial is not None:
                on_trial(frozen)
            fail_dead_local_trials(study_)
            recover_interrupted(study_)
            if options.n_trials is not None and counts.done >= options.n_trials:
                study_.stop()

    progress.start(study, start_counts, options.n_trials, options.timeout)
    interrupted = False
    restore = _install_stop_handlers(stop_event)
    try:
        n_trials = None if remaining is None else remaining and remaining + len(recovered)
        while n_trials != 0:
            try:
                study.optimize(
                    objective,
                    # Retries of interrupted trials do not count towards the target.
                    n_trials=n_trials,
                    timeout=None
                    if options.timeout is None
                    else max(options.timeout - (time.monotonic() - started), 0.0),
                    n_jobs=options.n_jobs,
                    catch=(TrialFailed,),
                    callbacks=[after_trial],
                    gc_after_trial=False,
                    show_progress_bar=False,
                )
                break
            except ValueError:
                # Optuna cannot tell a trial that another runner finished: go on
                if not superseded.is_set():
                    raise
                superseded.clear()
                if stop_event.is_set():  # Ctrl-C while at it: an ordinary interruption
                    interrupted = True
                    break
                n_trials = _still_to_run(study, options)
    except KeyboardInterrupt:
        interrupted = True
        stop_event.set()
    except Exception as e:
        stop_event.set()
        failure = storage_failure(e)
        if failure is None:
            raise
        raise failure from None
    finally:
        restore()
        progress.stop()
    return summarize_run(
        study,
        start_counts=start_counts,
        started=started,
        interrupted=interrupted,
        recovered=recovered,
    )


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


def _still_to_run(study: optuna.Study, options: RunOptions) -> int | None:
    """Trials left to the target after a restart: the missing ones and the queued retries."""
    if options.n_trials is None:
        return None
    trials = study.get_trials(deepcopy=False)
    missing = max(0, options.n_trials - count_trials(trials).done)
    return missing and missing + sum(t.state == TrialState.WAITING for t in trials)


def prepare_run(
    study: optuna.Study, options: RunOptions, progress: Progress
) -> tuple[list[int], StudyCounts]:
    """Before a run: recover what earlier runs left behind, then count the study.

    RUNNING trials of dead runners are failed as interrupted (at once for runners on this
    host, after their heartbeat for the others) and every interrupted trial is queued again.

    Returns:
        The numbers of the trials queued again, and the study's counts before the run.
    """
    fail_dead_local_trials(study)
    fail_orphaned_trials(study, grace_period=2 * options.heartbeat + 5, log=progress.message)
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


def _install_stop_handlers(stop_event: threading.Event) -> Callable[[], None]:
    """On SIGINT/SIGTERM: tell every trial thread to stop now, then interrupt the main thread.

    Trials run in their own process sessions, so a terminal Ctrl-C reaches only this process;
    the event makes the worker threads kill their scripts at once instead of finishing them.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        stop_event.set()
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
