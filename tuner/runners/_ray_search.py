"""Ray Tune's ``OptunaSearch`` for your own Ray Tune code, with early stops recorded PRUNED.

Ray's own ``OptunaSearch`` tells the study that a trial its scheduler (ASHA) stopped early is
COMPLETE, with the value of its last report: a truncated, inflated value that then feeds the
sampler (``MetaPriorSampler`` adapts its prior to it, the guard judges the prior by it). The
searcher here records such a trial PRUNED at its last step instead, in the same study, with
``mttune.prune_reason``; trials that ran to their end (their function returned, a stop
criterion of ``RunConfig(stop=...)`` was met, the scheduler's ``max_t`` was reached) stay
COMPLETE::

    search = PruningOptunaSearch(sampler=MetaPriorSampler(prior), metric="loss", mode="min")
    tune.TuneConfig(search_alg=search, scheduler=search.watch(ASHAScheduler()))

Only a scheduler passed through :meth:`PruningOptunaSearch.watch` can say which stops were
its own: Tune tells searchers no reason. Imported lazily (``tuner.runners`` re-exports it), as
importing Ray Tune takes seconds.
"""

from __future__ import annotations

from typing import Any

from optuna.trial import TrialState
from ray.tune.result import TRAINING_ITERATION
from ray.tune.schedulers import TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from tuner._logging import get_logger
from tuner.studies import TrialAttr

__all__ = ["PruningOptunaSearch"]

_logger = get_logger("tuner.runners")


class PruningOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that records the trials its watched scheduler stopped as PRUNED.

    Takes the arguments of Ray Tune's ``OptunaSearch`` (``space``, ``metric``, ``mode``,
    ``sampler``, ``study_name``, ``storage``, ...). Give Tune the scheduler through
    :meth:`watch`; a trial stopped by it is told to the study PRUNED, its last result
    reported as the intermediate value at its last ``training_iteration``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stopped: dict[str, str] = {}  # trial id -> why its scheduler stopped it
        self._watching = False
        self._warned = False

    def watch(self, scheduler: TrialScheduler) -> TrialScheduler:
        """The scheduler to give Tune: ``scheduler``, telling this searcher what it stops."""
        self._watching = True
        return _Watched(scheduler, self)

    def scheduler_stopped(self, trial_id: str, reason: str) -> None:
        """Called by the watched scheduler: it stopped ``trial_id`` before its end."""
        self._stopped[trial_id] = reason

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Tell the study the trial's end: PRUNED when the watched scheduler stopped it."""
        reason = self._stopped.pop(trial_id, None)
        ot_trial = self._ot_trials.get(trial_id)
        value = None if not result or isinstance(self.metric, list) else result.get(self.metric)
        if ot_trial is not None and value is not None and not error:
            _report_last(ot_trial, float(value), result.get(TRAINING_ITERATION))
        if reason is None or error or ot_trial is None or value is None:
            if not self._watching and not self._warned and result and not error:
                self._warned = True
                _logger.warning(
                    "PruningOptunaSearch watches no scheduler: trials a scheduler stops early "
                    "are recorded COMPLETE with their last value. Pass it to Tune as "
                    "scheduler=search.watch(ASHAScheduler(...))."
                )
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        step = result.get(TRAINING_ITERATION)
        ot_trial.set_user_attr(
            TrialAttr.PRUNE_REASON.key, f"pruned at step {step} (value {value:.6g}) by {reason}"
        )
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)
        self._ot_trials.pop(trial_id, None)


def _report_last(ot_trial: Any, value: float, step: Any) -> None:
    """Report a trial's last result at its step, unless it is there already.

    Tune hands a searcher the result that ended a trial (a scheduler's stop, a ``stop=``
    criterion) only in ``on_trial_complete``, never in ``on_trial_result``.
    """
    if not isinstance(step, int):
        return
    frozen = ot_trial.study._storage.get_trial(ot_trial._trial_id)
    if step not in frozen.intermediate_values:
        ot_trial.report(value, step)


class _Watched(TrialScheduler):
    """A scheduler as it is, telling a searcher which trials it stopped before their end.

    A stop at the scheduler's own largest budget (ASHA's ``max_t``) is the trial's end, not
    an early stop.
    """

    def __init__(self, scheduler: TrialScheduler, searcher: PruningOptunaSearch) -> None:
        self._inner = scheduler
        self._searcher = searcher

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_inner":  # copy, pickle: not the scheduler's
            raise AttributeError(name)
        return getattr(self._inner, name)  # everything else is the scheduler's own

    @property
    def metric(self) -> str | None:
        """The scheduler's metric."""
        return self._inner.metric

    @property
    def supports_buffered_results(self) -> bool:
        """Whether the scheduler takes buffered results."""
        return self._inner.supports_buffered_results

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Set the scheduler's metric and mode."""
        return self._inner.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        """As the scheduler does."""
        self._inner.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        """As the scheduler does."""
        self._inner.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        """The scheduler's decision; a STOP before the scheduler's budget is told."""
        decision = self._inner.on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and not self._at_budget(result):
            self._searcher.scheduler_stopped(trial.trial_id, type(self._inner).__name__)
        return decision

    def _at_budget(self, result: dict) -> bool:
        max_t = getattr(self._inner, "_max_t", None)
        time_attr = getattr(self._inner, "_time_attr", TRAINING_ITERATION)
        progress = result.get(time_attr)
        return max_t is not None and progress is not None and progress >= max_t

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        """As the scheduler does."""
        self._inner.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        """As the scheduler does."""
        self._inner.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """As the scheduler does."""
        return self._inner.choose_trial_to_run(tune_controller)

    def debug_string(self) -> str:
        """The scheduler's."""
        return self._inner.debug_string()

    def save(self, checkpoint_path: str) -> None:
        """Save the scheduler."""
        self._inner.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        """Restore the scheduler."""
        self._inner.restore(checkpoint_path)
