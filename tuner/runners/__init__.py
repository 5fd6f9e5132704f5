"""Stage 6: runners that execute training scripts as trials (Optuna locally, Ray Tune)."""

from typing import TYPE_CHECKING

from tuner._lazy import lazy_exports

if TYPE_CHECKING:
    from tuner.runners._choices import PRUNERS, SAMPLERS, SCHEDULERS
    from tuner.runners._core import RunOptions, RunSummary, create_or_resume_study, sampler_seed
    from tuner.runners._optuna import TrialFailed, run_study
    from tuner.runners._progress import (
        LineProgress,
        NullProgress,
        Progress,
        RichProgress,
        make_progress,
    )
    from tuner.runners._protocol import (
        DEFAULT_MAX_OUTPUT_BYTES,
        ScriptError,
        ScriptSpec,
        TrialOutcome,
        run_script,
    )
    from tuner.runners._ray import (
        RayBackendError,
        RayOptions,
        default_ray_temp_dir,
        ray_cluster,
    )
    from tuner.runners._ray_backend import run_ray
    from tuner.runners._ray_search import PruningOptunaSearch
    from tuner.runners._signals import on_stop_signals
    from tuner.runners._study import (
        StudyCounts,
        count_trials,
        is_verification,
        join_study,
        make_pruner,
        make_sampler,
        outcome_attrs,
        record_prior,
        trial_seed,
    )

_EXPORTS = {
    "tuner.runners._choices": ("PRUNERS", "SAMPLERS", "SCHEDULERS"),
    "tuner.runners._core": ("RunOptions", "RunSummary", "create_or_resume_study", "sampler_seed"),
    "tuner.runners._optuna": ("TrialFailed", "run_study"),
    "tuner.runners._progress": (
        "LineProgress",
        "NullProgress",
        "Progress",
        "RichProgress",
        "make_progress",
    ),
    "tuner.runners._protocol": (
        "DEFAULT_MAX_OUTPUT_BYTES",
        "ScriptError",
        "ScriptSpec",
        "TrialOutcome",
        "run_script",
    ),
    "tuner.runners._ray": ("RayBackendError", "RayOptions", "default_ray_temp_dir", "ray_cluster"),
    "tuner.runners._ray_backend": ("run_ray",),
    "tuner.runners._ray_search": ("PruningOptunaSearch",),
    "tuner.runners._signals": ("on_stop_signals",),
    "tuner.runners._study": (
        "StudyCounts",
        "count_trials",
        "is_verification",
        "join_study",
        "make_pruner",
        "make_sampler",
        "outcome_attrs",
        "record_prior",
        "trial_seed",
    ),
}

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "PRUNERS",
    "SAMPLERS",
    "SCHEDULERS",
    "LineProgress",
    "NullProgress",
    "Progress",
    "PruningOptunaSearch",
    "RayBackendError",
    "RayOptions",
    "RichProgress",
    "RunOptions",
    "RunSummary",
    "ScriptError",
    "ScriptSpec",
    "StudyCounts",
    "TrialFailed",
    "TrialOutcome",
    "count_trials",
    "create_or_resume_study",
    "default_ray_temp_dir",
    "is_verification",
    "join_study",
    "make_progress",
    "make_pruner",
    "make_sampler",
    "on_stop_signals",
    "outcome_attrs",
    "ray_cluster",
    "record_prior",
    "run_ray",
    "run_script",
    "run_study",
    "sampler_seed",
    "trial_seed",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
