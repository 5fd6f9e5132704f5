"""The local runner: tune a training script with an Optuna study (``mttune run``)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.runners._core import RunBook, RunOptions, RunSummary, running, start_trial, trial_env
from tuner.runners._liveness import runner_attr
from tuner.runners._progress import NullProgress, Progress
from tuner.runners._protocol import ScriptSpec, TrialOutcome, run_script
from tuner.runners._signals import on_stop_signals
from tuner.runners._study import count_trials, outcome_attrs
from tuner.space import SearchSpace
from tuner.studies import TrialAttr

__all__ = ["TrialFailed", "run_study"]


class TrialFailed(Exception):
    """Raised inside the objective so that Optuna records the trial as FAILED."""


class _Superseded(Exception):
    """Another runner finished this trial while it ran (it took it for dead)."""


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
    the running trials are killed, marked ``interrupted`` and re-run by the next run. The
    study's sampler is used as it is: seed it with :func:`~tuner.runners.sampler_seed` to
    resume a study as ``mttune run`` does.
    """
    progress = progress or NullProgress()
    with running(study, options, progress=progress, on_trial=on_trial) as book:
        interrupted = _OptunaRun(study, script, space, book).run()
    return book.summary(interrupted=interrupted)


class _OptunaRun:
    """The trials of one :func:`run_study`: ``study.optimize`` over the script.

    The objective runs in Optuna's worker threads (``options.n_jobs``); a stop (Ctrl-C,
    SIGTERM) sets an event that every running script is killed on.
    """

    def __init__(
        self, study: optuna.Study, script: ScriptSpec, space: SearchSpace, book: RunBook
    ) -> None:
        self._study = study
        self._script = script
        self._space = space
        self._options = book.options
        self._book = book
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one after_trial at a time
        self._superseded = threading.Event()  # a trial was finished by another runner

    def run(self) -> bool:
        """Run the trials; whether the run was interrupted (Ctrl-C, SIGTERM)."""
        restore = _install_stop_handlers(self._stop)
        try:
            return self._optimize()
        except KeyboardInterrupt:
            self._stop.set()
            return True
        except Exception:
            self._stop.set()
            raise
        finally:
            restore()

    def _optimize(self) -> bool:
        book, options = self._book, self._options
        # Retries of interrupted trials do not count towards the target.
        n_trials = None
        if options.n_trials is not None:
            remaining = max(0, options.n_trials - book.start_counts.done)
            n_trials = remaining and remaining + len(book.recovered)
        while n_trials != 0:
            try:
                self._study.optimize(
                    self.objective,
                    n_trials=n_trials,
                    timeout=None
                    if options.timeout is None
                    else max(options.timeout - (time.monotonic() - book.started), 0.0),
                    n_jobs=options.n_jobs,
                    catch=(TrialFailed,),
                    callbacks=[self.after_trial],
                    gc_after_trial=False,
                    show_progress_bar=False,
                )
                return False
            except ValueError:
                # Optuna cannot tell a trial that another runner finished: go on
                if not self._superseded.is_set():
                    raise
                self._superseded.clear()
                if self._stop.is_set():  # Ctrl-C while at it: an ordinary interruption
                    return True
                n_trials = _still_to_run(self._study, options)
        return False

    def objective(self, trial: optuna.Trial) -> float:
        """Run the script for ``trial``; its value, or raise to prune or fail it."""
        try:
            return self._run_trial(trial)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._superseded.set()
            raise _Superseded() from None

    def _run_trial(self, trial: optuna.Trial) -> float:
        if self._stop.is_set():
            trial.set_user_attr(TrialAttr.INTERRUPTED.key, True)
            raise TrialFailed("the run is stopping")
        params, seed = start_trial(trial, self._space, self._options)
        reported: set[int] = set()
        try:
            outcome = run_script(
                self._script,
                params,
                seed=seed,
                env=trial_env(self._study.study_name, trial.number),
                timeout=self._options.trial_timeout,
                on_report=functools.partial(_report, trial, reported),
                max_output_bytes=self._options.max_output_bytes,
                cancel=self._stop,
            )
        except BaseException:
            trial.set_user_attr(TrialAttr.INTERRUPTED.key, True)
            raise
        if outcome.state == "failed" and self._stop.is_set():
            # killed by the stop (a script that finished just before it keeps its result)
            trial.set_user_attr(TrialAttr.INTERRUPTED.key, True)
            raise TrialFailed("the run was stopped")
        if outcome.intermediate and outcome.intermediate[-1][0] not in reported:
            _report(trial, reported, *outcome.intermediate[-1])  # the last, if thinned out
        self._record(trial, outcome, seed)
        if outcome.state == "complete":
            assert outcome.value is not None
            return outcome.value
        if outcome.state == "pruned":
            raise optuna.TrialPruned(outcome.reason)
        raise TrialFailed(outcome.reason)

    def _record(self, trial: optuna.Trial, outcome: TrialOutcome, seed: int) -> None:
        """Write the outcome's attributes; keep the result if another runner failed the trial."""
        recorded = outcome_attrs(outcome)
        try:
            for key, value in recorded.items():
                trial.set_user_attr(key, value)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another runner failed this trial as dead (this one was paused past its
            # heartbeat's grace period): keep the result as a retry of it.
            self._book.keep_superseded(
                trial,
                outcome,
                {TrialAttr.RUNNER.key: runner_attr(), TrialAttr.SEED.key: seed, **recorded},
            )
            self._superseded.set()
            raise _Superseded() from None

    def after_trial(self, study: optuna.Study, frozen: FrozenTrial) -> None:
        """Optuna's callback: the run's bookkeeping, and the stop at the target."""
        with self._lock:
            counts = self._book.trial_finished(frozen)
            if self._options.n_trials is not None and counts.done >= self._options.n_trials:
                study.stop()


def _report(trial: optuna.Trial, reported: set[int], step: int, value: float) -> bool:
    """Record an intermediate value of the script; whether the pruner stops the trial."""
    if step < 0 or step in reported:
        return False
    reported.add(step)
    try:
        trial.report(value, step)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # failed by another runner: finish, the result is kept by _record
    return trial.should_prune()


def _still_to_run(study: optuna.Study, options: RunOptions) -> int | None:
    """Trials left to the target after a restart: the missing ones and the queued retries."""
    if options.n_trials is None:
        return None
    trials = study.get_trials(deepcopy=False)
    missing = max(0, options.n_trials - count_trials(trials).done)
    return missing and missing + sum(t.state == TrialState.WAITING for t in trials)


def _install_stop_handlers(stop_event: threading.Event) -> Callable[[], None]:
    """On a stop signal: tell every trial thread to stop now, then interrupt the main thread.

    Trials run in their own process sessions, so a terminal Ctrl-C reaches only this process;
    the event makes the worker threads kill their scripts at once instead of finishing them.
    """

    def handler(signum: int, frame: Any) -> None:
        stop_event.set()
        raise KeyboardInterrupt

    return on_stop_signals(handler)
