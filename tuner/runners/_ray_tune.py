"""The Ray Tune side of the Ray backend: trainable, study searcher, error hook, and the run.

Imported by :func:`tuner.runners.run_ray` only, since importing Ray Tune takes seconds. The
per-trial setup and bookkeeping are the Optuna backend's (:mod:`tuner.runners._core`).

Who records what:

* The driver's :class:`StudySearcher` (an ``OptunaSearch`` on mttune's study and sampler)
  asks the study for a trial when Ray has room for one, keeps its heartbeat and starts it
  as the Optuna backend does (``runner``, parameters, ``seed``); it records each
  intermediate value as it arrives and tells the study the trial's end: COMPLETE or FAIL
  from the trial's final result, PRUNED when ASHA stopped the trial (no final result),
  interrupted FAIL when the run stopped under it.
* On a Ray worker, :class:`ScriptTrainable` runs the user's script with
  :func:`~tuner.runners.run_script` (in a thread, so that the script never waits for Ray)
  and hands Tune one result per intermediate report and a final one at the end.
* :class:`TrialHook` gives the searcher Ray's error for a trial whose worker died; such a
  trial is recorded as interrupted and re-run once under a new number (``retry_of``); a
  re-run that dies again is a plain FAIL, so a trial Ray cannot run never loops. It also
  kills the script of a trial ASHA stopped at once.

Results a trial sends to Tune:

* per intermediate report: ``mttune_value`` (the value), ``mttune_step`` (the script's step)
  and ``mttune_iter`` (1, 2, ...: ASHA's time axis);
* at the end: ``mttune_done`` and ``mttune_outcome`` (JSON: state, value, user attributes,
  intermediate values). A trial that ASHA stopped never sends it, which is how the searcher
  tells PRUNED from COMPLETE (Ray's own ``OptunaSearch`` would record COMPLETE).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import queue
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.storages._heartbeat import BaseHeartbeatThread, get_heartbeat_thread
from optuna.trial import TrialState
from ray import tune
from ray.tune.error import TuneError
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from tuner._errors import MttuneError
from tuner.runners._core import OUTCOME_STATES, RunBook, start_trial, trial_env
from tuner.runners._protocol import ScriptSpec, TrialOutcome, run_script
from tuner.runners._ray import RayOptions, patched_environ, quiet_ray_logs
from tuner.runners._signals import on_stop_signals
from tuner.runners._study import STDERR_TAIL_CHARS, outcome_attrs
from tuner.space import SearchSpace
from tuner.studies import TrialAttr

__all__ = ["ScriptTrainable", "StudySearcher", "TrialHook", "TrialJob", "tune_study"]

METRIC = "mttune_value"
STEP = "mttune_step"
ITER = "mttune_iter"
DONE = "mttune_done"
OUTCOME = "mttune_outcome"

RAY_FAULT = "the Ray worker running the trial failed"
# ASHA needs a largest budget; scripts report as many steps as they like, so make it huge and
# never stop a trial for reaching it. Rungs are at 1, 4, 16, ... reports.
_ASHA_MAX_T = 4**10
_ASHA_GRACE = 1
_ASHA_REDUCTION = 4

# Tune's console output and result files: mttune shows progress and keeps results itself.
_QUIET_TUNE = {
    "RAY_AIR_NEW_OUTPUT": "0",  # the new output engine prints a banner even with verbose=0
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",
}


def _not_restorable(*_: Any) -> None:
    raise MttuneError(
        "a Ray run of mttune is resumed from its Optuna study, not from Ray's experiment "
        "files: run the same mttune run command again."
    )


# ----------------------------------------------------------------------------- worker side
@dataclasses.dataclass(frozen=True)
class TrialJob:
    """What every trial of a run needs on its Ray worker (sent once, with the trainable).

    Attributes:
        script: The training script.
        study_name: Passed to the script as ``MTTUNE_STUDY``.
        timeout: ``--trial-timeout`` in seconds.
        max_output_bytes: ``--max-output-bytes``.
        cwd: The driver's working directory: the script runs there when the worker's machine
            has that folder.
    """

    script: ScriptSpec
    study_name: str
    timeout: float | None
    max_output_bytes: int
    cwd: str


def run_trial(
    job: TrialJob,
    config: Mapping[str, Any],
    *,
    on_report: Callable[[int, float], bool],
    cancel: threading.Event,
) -> TrialOutcome:
    """Run one trial's script on this (worker) machine, as the Optuna backend does locally."""
    spec = job.script
    if not os.path.exists(spec.python):
        spec = dataclasses.replace(spec, python=sys.executable)
    if not spec.path.is_file():
        return TrialOutcome(
            "failed",
            reason=(
                f"the script {spec.path} is not on Ray node {socket.gethostname()}; every "
                "node needs it at the same path (a shared file system, or a copy)"
            ),
        )
    return run_script(
        spec,
        config["params"],
        seed=config["seed"],
        env=trial_env(job.study_name, config["number"]),
        timeout=job.timeout,
        on_report=on_report,
        max_output_bytes=job.max_output_bytes,
        cwd=job.cwd if os.path.isdir(job.cwd) else None,
        cancel=cancel,
        die_with_parent=True,
    )


class ScriptTrainable(tune.Trainable):
    """One trial on a Ray worker: the script runs in a thread; each ``step`` is one report.

    Stopping the trial (ASHA, the end of the run) kills the script's whole process group;
    if the worker process itself dies, the kernel kills the script with it.
    """

    def setup(self, config: dict[str, Any], job: TrialJob) -> None:
        """Start the first trial of this actor (called once per actor by Tune)."""
        self._job = job
        self._launch(config)

    def _launch(self, config: Mapping[str, Any]) -> None:
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._reports = 0
        self._thread = threading.Thread(
            target=self._run, args=(dict(config),), name="mttune-trial", daemon=True
        )
        self._thread.start()

    def _run(self, config: dict[str, Any]) -> None:
        def on_report(step: int, value: float) -> bool:
            self._events.put(("report", step, value))
            return False  # stopping early is the scheduler's call, on the driver

        outcome = TrialOutcome("failed", reason="the trial's thread on the Ray worker stopped")
        try:
            outcome = run_trial(self._job, config, on_report=on_report, cancel=self._cancel)
        except Exception as e:
            outcome = TrialOutcome("failed", reason=f"mttune could not run the trial: {e!r}")
        finally:  # never leave Tune waiting for a result
            self._events.put(("done", outcome))

    def step(self) -> dict[str, Any]:
        """Block until the script's next intermediate report, or its end."""
        event = self._events.get()
        if event[0] == "report":
            _, step, value = event
            self._reports += 1
            return {METRIC: value, STEP: step, ITER: self._reports}
        outcome: TrialOutcome = event[1]
        payload = {
            "state": outcome.state,
            "value": outcome.value,
            "attrs": outcome_attrs(outcome),
            "intermediate": outcome.intermediate,
        }
        return {
            METRIC: math.nan if outcome.value is None else outcome.value,
            DONE: True,
            OUTCOME: json.dumps(payload),
            "done": True,
        }

    def stop_script(self) -> None:
        """Kill the running script now, without waiting (the driver's call on early stops).

        Tune keeps the actor of a stopped trial for the next trial without telling it, so
        the driver asks it to stop the script at once.
        """
        cancel = getattr(self, "_cancel", None)
        if cancel is not None:
            cancel.set()

    def cleanup(self) -> None:
        """Stop the script (if still running) and wait for its thread."""
        self._cancel.set()
        self._thread.join()

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Reuse this actor for the next trial (``reuse_actors``)."""
        self.cleanup()
        self._launch(new_config)
        return True


# ----------------------------------------------------------------------------- driver side
@dataclasses.dataclass
class _Live:
    """A trial the searcher handed to Ray and has not told the study about yet."""

    trial: optuna.Trial
    heartbeat: BaseHeartbeatThread
    started: float
    reported: set[int] = dataclasses.field(default_factory=set)


_GO = "go"


class StudySearcher(OptunaSearch):
    """``OptunaSearch`` on mttune's study: asks and tells its trials the way mttune records them.

    Suggestions come from ``study.ask()`` with the study's own sampler (``MetaPriorSampler``
    with a prior), over the define-by-run search space, so conditional parameters and
    re-runs queued with ``enqueue_trial`` work as in the Optuna backend. The searcher also
    keeps the run's budget: it hands out no trial beyond ``options.n_trials`` finished ones
    in the study (counting those in flight) or after ``options.timeout``, and ends the run
    once nothing is in flight.

    Args:
        study: The study, with its sampler set.
        space: The search space.
        book: The run's bookkeeping (its budget and seeds, its counts, progress).
    """

    def __init__(self, study: optuna.Study, space: SearchSpace, *, book: RunBook) -> None:
        self._study = study
        self._search_space = space
        self._options = book.options
        self._book = book
        self._started = time.monotonic()
        self._live: dict[str, _Live] = {}
        self._errored: dict[str, _Live] = {}
        self.finished = False
        minimize = study.direction == optuna.study.StudyDirection.MINIMIZE
        super().__init__(
            space=space.suggest,
            metric=METRIC,
            mode="min" if minimize else "max",
            sampler=study.sampler,
            study_name=study.study_name,
            storage=study._storage,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_not_restorable, ())

    def _setup_study(self, mode: str | list[str]) -> None:
        self._ot_study = self._study  # mttune's study as it is: no second create_study

    # Ray saves searchers to resume its own experiments; mttune resumes from the study.
    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Save nothing: runs resume from the Optuna study."""

    def save(self, checkpoint_path: str) -> None:
        """Save nothing: runs resume from the Optuna study."""

    def restore(self, checkpoint_path: str) -> None:
        """Refuse: runs resume from the Optuna study."""
        _not_restorable()

    @property
    def in_flight(self) -> int:
        """Trials handed to Ray and not yet told to the study."""
        return len(self._live) + len(self._errored)

    def _gate(self) -> str | None:
        """``_GO``, ``None`` (wait for trials in flight) or ``Searcher.FINISHED``."""
        target = self._options.n_trials
        timeout = self._options.timeout
        timed_out = timeout is not None and time.monotonic() - self._started >= timeout
        done = self._book.counts.done
        if timed_out or (target is not None and done >= target):
            if self.in_flight:
                return None
            self.finished = True
            return Searcher.FINISHED
        if target is not None and done + self.in_flight >= target:
            return None
        return _GO

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """Ask the study for the next trial (a queued re-run first), or wait, or finish."""
        gate = self._gate()
        if gate != _GO:
            return gate
        with warnings.catch_warnings():
            # Optuna warns that heartbeats are meant for Study.optimize; here the searcher
            # keeps each trial's heartbeat itself, as optimize does.
            warnings.simplefilter("ignore", UserWarning)
            trial = self._study.ask()
        heartbeat = get_heartbeat_thread(trial._trial_id, self._study._storage)
        heartbeat.start()
        live = _Live(trial, heartbeat, time.monotonic())
        self._live[trial_id] = live
        self._ot_trials[trial_id] = trial
        try:
            params, seed = start_trial(trial, self._search_space, self._options)
        except BaseException as e:
            del self._live[trial_id]
            self._finish(
                live, TrialState.FAIL, {TrialAttr.FAIL_REASON.key: f"cannot sample: {e!r}"}
            )
            raise
        return {"params": params, "number": trial.number, "seed": seed}

    def _report(self, live: _Live, step: Any, value: Any) -> None:
        if isinstance(step, int) and step >= 0 and step not in live.reported:
            live.reported.add(step)
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                # failed by another runner: the result is kept when the trial ends
                live.trial.report(float(value), step)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Record an intermediate value on the study's trial."""
        live = self._live.get(trial_id)
        if live is not None and ITER in result:
            self._report(live, result[STEP], result[METRIC])

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Tell the study how the trial ended (an error waits for :meth:`record_error`)."""
        self._ot_trials.pop(trial_id, None)
        live = self._live.pop(trial_id, None)
        if live is None:
            return
        if error:
            self._errored[trial_id] = live
            return
        result = result or {}
        if result.get(DONE):
            payload = json.loads(result[OUTCOME])
            for step, value in payload["intermediate"]:
                self._report(live, step, value)
            state = OUTCOME_STATES[payload["state"]]
            value = payload["value"] if state == TrialState.COMPLETE else None
            outcome = TrialOutcome(
                payload["state"],
                value=value,
                intermediate=[(int(k), float(v)) for k, v in payload["intermediate"]],
                reason=payload["attrs"].get(TrialAttr.FAIL_REASON.key),
            )
            self._finish(live, state, payload["attrs"], value=value, outcome=outcome)
        elif ITER in result:  # no final result: the scheduler stopped it at this report
            step, value = result[STEP], result[METRIC]
            self._report(live, step, value)
            attrs = {
                TrialAttr.DURATION.key: round(time.monotonic() - live.started, 3),
                TrialAttr.EXIT_CODE.key: None,
                TrialAttr.PRUNE_REASON.key: f"pruned at step {step} (value {value:.6g}) by ASHA",
            }
            self._finish(live, TrialState.PRUNED, attrs)
        else:  # ended before its first report without an error: the run is stopping
            self._finish(live, TrialState.FAIL, {TrialAttr.INTERRUPTED.key: True}, recover=False)

    def record_error(self, trial_id: str, error: str, *, recover: bool = True) -> None:
        """Record a trial whose Ray task failed (its worker died): re-run it once."""
        live = self._errored.pop(trial_id, None)
        if live is None:
            return
        summary = _error_summary(error)
        attrs: dict[str, Any] = {
            TrialAttr.DURATION.key: round(time.monotonic() - live.started, 3),
            TrialAttr.STDERR_TAIL.key: error[-STDERR_TAIL_CHARS:],
        }
        if self._is_rerun_of_ray_fault(live.trial):
            attrs[TrialAttr.FAIL_REASON.key] = f"{RAY_FAULT} again: {summary}"
        else:
            attrs[TrialAttr.FAIL_REASON.key] = f"{RAY_FAULT} (re-run as a new trial): {summary}"
            attrs[TrialAttr.INTERRUPTED.key] = True
        self._finish(live, TrialState.FAIL, attrs, recover=recover)

    def _is_rerun_of_ray_fault(self, trial: optuna.Trial) -> bool:
        number = TrialAttr.RETRY_OF.get(trial.user_attrs)
        if number is None:
            return False
        for t in self._study.get_trials(deepcopy=False):
            if t.number == number:
                return str(TrialAttr.FAIL_REASON.get(t.user_attrs, "")).startswith(RAY_FAULT)
        return False

    def close(self) -> None:
        """At the end of the run: record every trial still in flight as interrupted."""
        for trial_id in list(self._errored):
            self.record_error(trial_id, "Ray reported no error message", recover=False)
        while self._live:
            _, live = self._live.popitem()
            self._finish(live, TrialState.FAIL, {TrialAttr.INTERRUPTED.key: True}, recover=False)

    def _finish(
        self,
        live: _Live,
        state: TrialState,
        attrs: Mapping[str, Any],
        *,
        value: float | None = None,
        recover: bool = True,
        outcome: TrialOutcome | None = None,
    ) -> None:
        """Tell the study how ``live`` ended.

        If another runner failed the trial as dead meanwhile (this driver was paused past
        the heartbeat's grace period), the script's ``outcome``, when there is one, is kept
        as a re-run of it (:meth:`RunBook.keep_superseded`), as the Optuna runner does.
        """
        live.heartbeat.join()
        trial = live.trial
        try:
            for key, v in attrs.items():
                trial.set_user_attr(key, v)
            frozen = self._study.tell(trial, value, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            if outcome is not None:
                kept = {TrialAttr.SEED.key: TrialAttr.SEED.get(trial.user_attrs), **attrs}
                self._book.keep_superseded(trial, outcome, kept)
            return
        self._book.trial_finished(frozen, recover=recover)


def _error_summary(error: str) -> str:
    if "ActorDiedError" in error or "RayActorError" in error or "actor died" in error:
        return "the worker process died (killed, out of memory, or its node was lost)"
    lines = [ln.strip() for ln in error.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no error message"


class TrialHook(tune.Callback):
    """Driver-side hooks Tune offers callbacks but not searchers.

    * A trial that errored: its error text goes to the searcher (Tune tells searchers no
      reason).
    * A trial stopped before its end (ASHA): its script is killed at once, even when Tune
      keeps the actor for the next trial.
    """

    def __init__(self, searcher: StudySearcher) -> None:
        self._searcher = searcher

    def __reduce__(self) -> tuple[Any, ...]:
        return (_not_restorable, ())

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Record the trial as its worker failed."""
        self._searcher.record_error(trial.trial_id, _trial_error(trial))

    def on_trial_complete(
        self, iteration: int, trials: list[Any], trial: Any, **info: Any
    ) -> None:
        """Kill the script of a trial that Tune stopped before it finished."""
        actor = getattr(trial.temporary_state, "ray_actor", None)
        result = trial.last_result or {}
        if actor is not None and ITER in result and not result.get(DONE):
            actor.stop_script.remote()


def _trial_error(trial: Any) -> str:
    """The text of a failed Ray trial's error (Tune writes it to the trial's folder)."""
    try:
        path = trial.error_file
        if path and os.path.isfile(path):
            return Path(path).read_text(errors="replace")
        return str(trial.get_error() or "") or "Ray reported no error message"
    except Exception as e:  # the file is gone: say so rather than fail the run
        return f"Ray's error message could not be read: {e!r}"


def _root_cause(error: BaseException) -> BaseException:
    """The exception at the bottom of a Ray Tune error (what actually went wrong)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _trial_name(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _forward_sigterm() -> Callable[[], None]:
    """Make SIGTERM and SIGHUP stop the Tune run like Ctrl-C does (Tune only catches SIGINT)."""

    def handler(signum: int, frame: Any) -> None:
        current = signal.getsignal(signal.SIGINT)
        if callable(current):
            current(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    return on_stop_signals(handler, (signal.SIGTERM, signal.SIGHUP))


def default_workers(options: RayOptions, resources: Mapping[str, float]) -> int:
    """Trials at once: ``options.workers``, else as many as the cluster's CPUs (GPUs) fit."""
    if options.workers is not None:
        return options.workers
    fit = resources.get("CPU", 1.0) / options.cpus_per_trial
    if options.gpus_per_trial > 0:
        fit = min(fit, resources.get("GPU", 0.0) / options.gpus_per_trial)
    return max(1, int(fit + 1e-9))


def tune_study(
    study: optuna.Study,
    script: ScriptSpec,
    space: SearchSpace,
    ray_options: RayOptions,
    *,
    book: RunBook,
    resources: Mapping[str, float],
    results_dir: Path,
) -> bool:
    """Run the trials through a Ray Tune ``Tuner`` (Ray is initialised already).

    Returns:
        Whether the run was interrupted (Ctrl-C, SIGTERM) before reaching its budget.
    """
    searcher = StudySearcher(study, space, book=book)
    job = TrialJob(
        script=script,
        study_name=study.study_name,
        timeout=book.options.trial_timeout,
        max_output_bytes=book.options.max_output_bytes,
        cwd=os.getcwd(),
    )
    tuner = _tuner(job, searcher, ray_options, resources=resources, results_dir=results_dir)
    restore = _forward_sigterm()
    interrupted = False
    try:
        with patched_environ(_QUIET_TUNE), quiet_ray_logs(logging.CRITICAL):
            tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    except TuneError as e:
        cause = _root_cause(e)
        if cause is e:
            raise
        raise cause from None  # Tune's wrapper says only "see the previous errors"
    finally:
        restore()
        searcher.close()
    return interrupted or not searcher.finished


def _tuner(
    job: TrialJob,
    searcher: StudySearcher,
    ray_options: RayOptions,
    *,
    resources: Mapping[str, float],
    results_dir: Path,
) -> tune.Tuner:
    """The ``Tuner`` of a run: the script's trainable, the searcher, the scheduler."""
    trainable = tune.with_resources(
        tune.with_parameters(ScriptTrainable, job=job),
        {"cpu": ray_options.cpus_per_trial, "gpu": ray_options.gpus_per_trial},
    )
    scheduler: TrialScheduler = FIFOScheduler()
    if ray_options.scheduler == "asha":
        scheduler = ASHAScheduler(
            time_attr=ITER,
            metric=METRIC,
            mode=searcher.mode,
            max_t=_ASHA_MAX_T,
            grace_period=_ASHA_GRACE,
            reduction_factor=_ASHA_REDUCTION,
            stop_last_trials=False,
        )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=-1,
            max_concurrent_trials=default_workers(ray_options, resources),
            reuse_actors=True,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name="mttune",
            storage_path=str(results_dir),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
            callbacks=[TrialHook(searcher)],
        ),
    )
