"""What both runners (Optuna, Ray) share: samplers, pruners, trial bookkeeping and resume.

The trial attributes the runners write are named in :class:`tuner.studies.TrialAttr` and
documented in ``docs/attributes.md``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner._errors import MttuneError
from tuner.runners._choices import PRUNERS, SAMPLERS
from tuner.runners._liveness import runner_state
from tuner.runners._protocol import TrialOutcome
from tuner.studies import StudyAttr, TrialAttr, public_url

__all__ = [
    "StudyCounts",
    "best_trial",
    "count_trials",
    "fail_dead_local_trials",
    "fail_orphaned_trials",
    "is_interrupted",
    "is_verification",
    "make_pruner",
    "make_sampler",
    "outcome_attrs",
    "record_prior",
    "recover_interrupted",
    "storage_label",
    "trial_seed",
]


# the last 4 KiB of a failed trial's stderr are kept on the trial (TrialAttr.STDERR_TAIL)
STDERR_TAIL_CHARS = 4096


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """Build one of Optuna's samplers by its CLI name."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise MttuneError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}.")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """Build one of Optuna's pruners by its CLI name."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise MttuneError(f"unknown pruner {name!r}; choose one of {', '.join(PRUNERS)}.")


def trial_seed(base_seed: int | None, number: int) -> int:
    """The seed a trial's script gets: reproducible from ``base_seed`` and the trial number."""
    base = 0 if base_seed is None else base_seed
    return (base * 1_000_003 + number * 7919 + 17) % (2**31 - 1)


def outcome_attrs(outcome: TrialOutcome) -> dict[str, Any]:
    """The user attributes that record a script outcome on its trial."""
    attrs: dict[str, Any] = {
        TrialAttr.DURATION.key: round(outcome.duration, 3),
        TrialAttr.EXIT_CODE.key: outcome.exit_code,
    }
    metrics = {k: v for k, v in outcome.metrics.items() if _json_safe(v)}
    if metrics:
        attrs[TrialAttr.METRICS.key] = metrics  # the dict, as earlier versions wrote it
        attrs.update((TrialAttr.metric(k), v) for k, v in metrics.items() if v is not None)
    if outcome.state == "failed":
        attrs[TrialAttr.FAIL_REASON.key] = outcome.reason
        attrs[TrialAttr.STDERR_TAIL.key] = outcome.stderr_tail[-STDERR_TAIL_CHARS:]
    elif outcome.state == "pruned":
        attrs[TrialAttr.PRUNE_REASON.key] = outcome.reason
    return attrs


def _json_safe(v: Any) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    return isinstance(v, str | int | bool) or v is None


def is_verification(trial: FrozenTrial) -> bool:
    """A run of ``mttune verify`` (tagged :attr:`TrialAttr.VERIFY`), not a trial of the search."""
    return TrialAttr.VERIFY.has(trial.user_attrs)


def is_interrupted(trial: FrozenTrial) -> bool:
    """A FAILED trial that did not fail on its own: its runner was stopped or died."""
    if trial.state != TrialState.FAIL or is_verification(trial):
        return False
    attrs = trial.user_attrs
    return bool(TrialAttr.INTERRUPTED.get(attrs)) or not TrialAttr.FAIL_REASON.has(attrs)


@dataclasses.dataclass(frozen=True)
class StudyCounts:
    """Trial counts of a study, as ``mttune run`` sees them."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    interrupted: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def done(self) -> int:
        """Trials that count towards ``--n-trials`` (interrupted ones are re-run instead)."""
        return self.complete + self.pruned + self.failed


def count_trials(trials: Iterable[FrozenTrial]) -> StudyCounts:
    """Count the search's trials by state, telling interrupted failures from real ones.

    Verification runs (``mttune verify``) are not part of the search and are not counted.
    """
    c = dict(complete=0, pruned=0, failed=0, interrupted=0, running=0, waiting=0)
    for t in trials:
        if is_verification(t):
            continue
        if t.state == TrialState.COMPLETE:
            c["complete"] += 1
        elif t.state == TrialState.PRUNED:
            c["pruned"] += 1
        elif t.state == TrialState.FAIL:
            c["interrupted" if is_interrupted(t) else "failed"] += 1
        elif t.state == TrialState.RUNNING:
            c["running"] += 1
        elif t.state == TrialState.WAITING:
            c["waiting"] += 1
    return StudyCounts(**c)


def best_trial(study: optuna.Study, trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The best COMPLETE search trial (the lowest number among ties), else ``None``.

    Verification runs are left out: a lucky repeat is not a better config.
    """
    complete = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and not is_verification(t)
    ]
    if not complete:
        return None
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1.0
    return min(complete, key=lambda t: (sign * t.value, t.number))


def storage_label(study: optuna.Study) -> str:
    """The storage's masked URL, a journal's path, else its type (for messages and --json).

    A password in the URL is masked: the label is printed and written to ``--json``.
    """
    storage: Any = study._storage
    inner = getattr(storage, "_backend", storage)
    url = getattr(inner, "url", None)
    if url:
        return public_url(str(url))
    journal = getattr(inner, "_file_path", None)  # optuna's JournalFileBackend
    return str(journal) if journal else type(inner).__name__


def recover_interrupted(
    study: optuna.Study, on_retry: Callable[[FrozenTrial], None] | None = None
) -> list[int]:
    """Enqueue a re-run of every interrupted trial that has none yet.

    Returns:
        The numbers of the trials that were re-queued.
    """
    trials = study.get_trials(deepcopy=False)
    retried = {TrialAttr.RETRY_OF.get(t.user_attrs) for t in trials}
    queued: list[int] = []
    for t in trials:
        # a re-run interrupted before it got its parameters still has them as enqueued
        params = t.params or t.system_attrs.get("fixed_params") or {}
        if is_interrupted(t) and t.number not in retried and params:
            study.enqueue_trial(dict(params), user_attrs={TrialAttr.RETRY_OF.key: t.number})
            queued.append(t.number)
            if on_retry is not None:
                on_retry(t)
    return queued


def join_study(study: optuna.Study) -> int:
    """Register this runner with the study; a seed offset that sets it apart from the others.

    ``0`` when no other runner has joined the study (a single run keeps its seed: same seed,
    same suggestions), else a number drawn from this runner's unique id. Runners that start
    together on one study with the same ``--seed`` thus never share a seed, whatever the
    order they register in or their clocks.
    """
    token = uuid.uuid4().hex
    key = f"{StudyAttr.RUNNER_PREFIX}{token}"
    storage, study_id = study._storage, study._study_id
    storage.set_study_system_attr(study_id, key, time.time())
    attrs = storage.get_study_system_attrs(study_id)
    prefixes = (StudyAttr.RUNNER_PREFIX, *StudyAttr.LEGACY_RUNNER_PREFIXES)
    others = [k for k in attrs if k.startswith(prefixes) and k != key]
    return 1 + int(token[:8], 16) % (2**31 - 1) if others else 0


def fail_dead_local_trials(study: optuna.Study) -> list[int]:
    """Mark RUNNING trials whose runner process is known to have died as interrupted FAILs.

    Only runners whose processes this one sees can be known dead (:func:`runner_state`);
    the trials of the others are left to the heartbeat check.

    Returns:
        The numbers of the trials marked.
    """
    marked: list[int] = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if runner_state(TrialAttr.RUNNER.get(t.user_attrs)) != "dead":
            continue
        if _fail_interrupted(study, t):
            marked.append(t.number)
    return marked


def _fail_interrupted(study: optuna.Study, trial: FrozenTrial, reason: str | None = None) -> bool:
    """Fail a RUNNING trial whose runner is gone, as interrupted (so it is re-run).

    Returns:
        Whether it was failed here: ``False`` when another process finished it first.
    """
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, TrialAttr.INTERRUPTED.key, True)
        if reason is not None:
            storage.set_trial_user_attr(trial._trial_id, TrialAttr.FAIL_REASON.key, reason)
        storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    return True


def fail_orphaned_trials(
    study: optuna.Study, grace_period: float, log: Callable[[str], None] | None = None
) -> list[int]:
    """Recover RUNNING trials left by a runner killed before it could tag them.

    A trial whose runner died between its creation and its first line of bookkeeping has no
    ``runner`` attribute; only its heartbeat tells whether it is alive. Such trials are
    failed (and so re-run) once their heartbeat is older than ``grace_period``: this waits
    at most that long, and only when such trials exist.

    Returns:
        The numbers of the trials failed.
    """
    from optuna.storages import fail_stale_trials
    from optuna.storages._heartbeat import is_heartbeat_enabled

    def orphans() -> list[FrozenTrial]:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return [t for t in running if not TrialAttr.RUNNER.has(t.user_attrs)]

    if not is_heartbeat_enabled(study._storage) or not orphans():
        return []
    before = {t.number for t in orphans()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fail_stale_trials(study)
        if orphans():
            if log is not None:
                log(
                    f"waiting up to {grace_period:.0f}s for {len(orphans())} trial(s) of a "
                    "stopped run to miss their heartbeat"
                )
            deadline = time.monotonic() + grace_period + 1.0
            while orphans() and time.monotonic() < deadline:
                time.sleep(min(1.0, grace_period / 4))
                fail_stale_trials(study)
    # Killed even before its first heartbeat: Optuna never finds it stale. A live runner
    # tags its trial at once; one still untagged after the whole grace period is dead.
    for t in orphans():
        if t.number in before:
            _fail_interrupted(study, t, "its runner stopped before the trial started")
    return sorted(before - {t.number for t in orphans()})


def record_prior(study: optuna.Study, prior: Any, path: str | None = None) -> None:
    """Note on the study which prior drove it (:attr:`StudyAttr.PRIOR`), for ``mttune review``."""
    info = prior.info if isinstance(getattr(prior, "info", None), dict) else {}
    used = info.get("sources", {}).get("used", [])
    study.set_user_attr(
        StudyAttr.PRIOR.key,
        {
            "path": None if path is None else str(path),
            "space_hash": prior.space.hash,
            "sources": [u.get("task") for u in used][:200],
            "source_trials": sum(int(u.get("trials", 0)) for u in used),
            "validation": info.get("validation", {}),
        },
    )
