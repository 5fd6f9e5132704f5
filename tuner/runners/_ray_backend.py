"""The Ray Tune runner: ``mttune run --backend ray`` (trials on a local or remote Ray cluster).

Trials run the same training-script protocol as the Optuna backend (each one a subprocess
started by :func:`~tuner.runners.run_script`, here from a Ray worker), through a Ray Tune
``Tuner`` with an ``OptunaSearch`` on mttune's own study and sampler, and ASHA early stopping
fed by the script's intermediate reports.

The driver (this process) owns the Optuna trials: it asks for each trial when Ray has room
for it and tells its result when Ray reports the trial finished, so every trial lands in the
study exactly as the Optuna backend records it (same states, values, intermediate values and
user attributes) and ``mttune review`` cannot tell the backends apart. Ray never retries a
trial on its own; a trial whose Ray worker died is recorded as interrupted and re-run once
under a new number (``retry_of``), so nothing is lost or counted twice. An interrupted run
resumes, like the Optuna backend, by running the same command again.

The modules: :mod:`tuner.runners._ray` brings up the cluster, :mod:`tuner.runners._ray_tune`
holds the Ray Tune side and is imported only when a Ray run starts (importing Ray Tune
takes seconds): ``import tuner`` stays fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

import optuna
from optuna.trial import FrozenTrial

from tuner.runners._core import RunOptions, RunSummary, running
from tuner.runners._progress import NullProgress, Progress
from tuner.runners._protocol import ScriptSpec
from tuner.runners._ray import RayBackendError, RayOptions, ray_cluster, results_dir
from tuner.space import SearchSpace

__all__ = ["run_ray"]


def run_ray(
    study: optuna.Study,
    script: ScriptSpec,
    space: SearchSpace,
    options: RunOptions,
    ray_options: RayOptions,
    *,
    progress: Progress | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    resources: Mapping[str, float] | None = None,
) -> RunSummary:
    """Run trials of ``script`` in ``study`` through Ray Tune until ``options`` says stop.

    The budget and limits are those of the Optuna backend (``options.n_trials`` is the target
    number of finished trials in the study, interrupted trials of earlier runs are re-run
    first, ``options.timeout`` stops new trials); ``ray_options`` says where and how wide.
    ``options.n_jobs`` must stay 1: ``ray_options.workers`` sets the parallelism. Ctrl-C or
    SIGTERM stops the run: running trials are recorded as interrupted and re-run next time.

    Args:
        study: The study, with its sampler set.
        script: The training script.
        space: The search space.
        options: Budget, limits and seeds.
        ray_options: Where and how wide Ray runs the trials.
        progress: Receives the run's messages and finished trials.
        on_trial: Called with each finished trial.
        resources: The resources a :func:`~tuner.runners.ray_cluster` block of the caller
            yielded: the run uses that cluster and leaves it to the block. Without them the
            run enters ``ray_cluster(ray_options)`` itself, for its duration.

    Raises:
        RayBackendError: if Ray cannot run the trials (see :func:`ray_cluster`).
    """
    if options.n_jobs != 1:
        raise RayBackendError(
            f"n_jobs is for the Optuna backend (got {options.n_jobs}); with Ray, set the "
            "parallelism with --workers (RayOptions.workers)."
        )
    progress = progress or NullProgress()
    with contextlib.ExitStack() as cluster:
        if resources is None:
            resources = cluster.enter_context(ray_cluster(ray_options, log=progress.message))
        from tuner.runners._ray_tune import tune_study

        with (
            running(study, options, progress=progress, on_trial=on_trial) as book,
            results_dir(ray_options) as folder,
        ):
            interrupted = tune_study(
                study,
                script,
                space,
                ray_options,
                book=book,
                resources=resources,
                results_dir=folder,
            )
    return book.summary(interrupted=interrupted)
