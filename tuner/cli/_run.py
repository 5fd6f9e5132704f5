"""``mttune run``: tune a training script (Optuna locally; Ray Tune with ``--backend ray``)."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tuner._errors import MttuneError
from tuner.cli._console import make_console
from tuner.cli._main import seed_arg
from tuner.runners import DEFAULT_MAX_OUTPUT_BYTES, PRUNERS, SAMPLERS, SCHEDULERS

if TYPE_CHECKING:  # imported when the command runs: --help and usage errors answer at once
    import optuna

    from tuner.prior import MetaPrior
    from tuner.runners import RayOptions, RunSummary
    from tuner.space import SearchSpace

_DESCRIPTION = """\
Tune a training script. Each trial runs the script in a subprocess with the trial's
parameters; its result lands in an Optuna study (SQLite under studies/ by default).
Re-running the same command resumes the study: finished trials are kept, interrupted
ones are re-run, and only the missing trials (up to --n-trials) are added.

Two forms of script (see docs/scripts.md):
  a Python file defining  train(params: dict, report) -> float | dict
  any executable: gets --name value arguments and MTTUNE_PARAMS (JSON), prints JSON lines

Backends: optuna (default) runs the trials from this process; ray runs them through Ray
Tune, on a Ray started for the run or on a cluster (--address), with ASHA early stopping.
Both record every trial in the same study.
"""

_EPILOG = """\
examples:
  mttune run examples/mlp_sklearn.py --space search_spaces/mlp.yaml --n-trials 30
  mttune run examples/mlp_sklearn.py --space search_spaces/mlp.yaml \
      --prior studies/mlp.prior.safetensors      # warm-start from past studies
  mttune run examples/xgboost_sklearn.py --space search_spaces/xgboost.yaml \
      --prior xgboost                            # warm-start from a built-in prior
  mttune run train.sh --space space.yaml --study resnet --sampler random --seed 0
  mttune run train.py --space space.yaml --storage postgresql://me@db/optuna --n-jobs 4
  mttune run train.py --space space.yaml -- --epochs 5     # extra args for the script
  mttune run train.py --space space.yaml --backend ray --workers 8
  mttune run train.py --space space.yaml --backend ray --address auto --gpus-per-trial 1
"""


def configure_run(p: argparse.ArgumentParser) -> None:
    """The arguments of ``mttune run``."""
    p.description, p.epilog = _DESCRIPTION, _EPILOG
    p.add_argument("script", help="training script (.py with train(), or an executable)")
    p.add_argument(
        "script_args",
        nargs="*",
        metavar="-- ARGS",
        help="extra arguments for the script, after --",
    )
    p.add_argument("--space", required=True, help="search space YAML file")
    p.add_argument("--study", help="study name (default: the space's name)")
    p.add_argument(
        "--storage", help="Optuna storage URL or SQLite path (default: sqlite:///studies/STUDY.db)"
    )
    p.add_argument(
        "--n-trials",
        type=int,
        default=None,
        help="target number of finished trials in the study (default 20 unless "
        "--timeout is given)",
    )
    p.add_argument("--timeout", type=float, help="seconds after which no new trial starts")
    p.add_argument(
        "--trial-timeout", type=float, help="seconds after which a trial is killed and FAILED"
    )
    p.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="tpe",
        help="Optuna sampler (default tpe); with --prior, the fallback of MetaPriorSampler",
    )
    p.add_argument(
        "--prior",
        help="warm-start prior: a built-in name (mttune prior list: xgboost, mlp, ...) or a "
        ".safetensors file from mttune meta-train; tunes with MetaPriorSampler",
    )
    p.add_argument(
        "--pruner",
        choices=PRUNERS,
        default=None,
        help="Optuna backend: prune trials from their intermediate reports (default median)",
    )
    p.add_argument(
        "--seed", type=seed_arg, help="seed for the sampler and the scripts' MTTUNE_SEED"
    )
    p.add_argument(
        "--n-jobs",
        type=int,
        default=None,
        help="Optuna backend: trials run in parallel (default 1)",
    )
    p.add_argument(
        "--backend",
        choices=("optuna", "ray"),
        default="optuna",
        help="optuna: trials run from this process (default); ray: through Ray Tune",
    )
    _add_ray_arguments(p)
    _add_trial_arguments(p)
    p.set_defaults(handler=handle)


def _add_ray_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``mttune run --backend ray``, in a group of their own."""
    ray = p.add_argument_group("Ray backend (--backend ray)")
    ray.add_argument(
        "--workers",
        type=int,
        help="trials run at the same time (default: as many as the CPUs allow)",
    )
    ray.add_argument(
        "--address",
        help="join this Ray cluster (HEAD_HOST:6379, or auto for the one 'ray start --head' "
        "started on this machine); default: start Ray on this machine for the run",
    )
    ray.add_argument(
        "--cpus-per-trial", type=float, help="CPUs Ray reserves per trial (default 1)"
    )
    ray.add_argument(
        "--gpus-per-trial", type=float, help="GPUs Ray reserves per trial (default 0)"
    )
    ray.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        help="stop poor trials early from their intermediate reports: asha (default) or none",
    )
    ray.add_argument(
        "--ray-tmp",
        help="folder for the files of a local Ray (default /tmp/mttune-ray-<uid>); removed "
        "at the end of the run",
    )


def _add_trial_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``mttune run`` about the trials' protocol, limits and display."""
    p.add_argument(
        "--protocol",
        choices=("auto", "python", "command"),
        default="auto",
        help="script form (default: auto-detect)",
    )
    p.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="progress display (default: a live bar on a terminal)",
    )
    p.add_argument(
        "--max-output-bytes",
        type=int,
        default=DEFAULT_MAX_OUTPUT_BYTES,
        help=f"stdout limit per trial (default {DEFAULT_MAX_OUTPUT_BYTES // 2**20} MiB)",
    )
    p.add_argument(
        "--heartbeat",
        type=int,
        default=10,
        help="seconds between trial heartbeats; trials of a killed run are "
        "re-run after 2x this (default 10)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def handle(args: argparse.Namespace) -> int:
    """Run the ``mttune run`` command."""
    import optuna

    from tuner._logging import set_verbosity
    from tuner.cli._main import EXIT_INTERRUPTED, EXIT_NO_RESULT, EXIT_OK
    from tuner.prior import load_prior
    from tuner.runners import (
        RunOptions,
        ScriptSpec,
        make_progress,
        make_pruner,
        ray_cluster,
        run_ray,
        run_study,
    )
    from tuner.space import load_space
    from tuner.studies import default_storage_url, normalize_url

    space = load_space(args.space)
    prior = load_prior(args.prior) if args.prior else None
    study_name = args.study or space.name or Path(args.script).stem
    storage = normalize_url(args.storage) if args.storage else default_storage_url(study_name)
    script = ScriptSpec.detect(
        args.script, args=args.script_args, objective=space.objective.name, form=args.protocol
    )
    n_trials = args.n_trials
    if n_trials is None and args.timeout is None:
        n_trials = 20
    ray_options = _ray_options(args)
    options = RunOptions(
        n_trials=n_trials,
        timeout=args.timeout,
        trial_timeout=args.trial_timeout,
        n_jobs=1 if args.n_jobs is None else args.n_jobs,
        seed=args.seed,
        max_output_bytes=args.max_output_bytes,
        heartbeat=args.heartbeat,
    )
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # not its per-trial lines
    set_verbosity(logging.WARNING)  # but the sampler's warnings (the guard, coverage)
    console = make_console(stderr=True)
    progress = make_progress(args.progress, console)
    if ray_options is None:
        pruner = make_pruner(args.pruner or "median")
        study = _open_study(args, storage, study_name, space, prior, pruner)
        summary = run_study(study, script, space, options, progress=progress)
    else:
        # Ray first: a cluster that cannot run the trials is refused before the study is made.
        with ray_cluster(ray_options, log=progress.message) as resources:
            study = _open_study(args, storage, study_name, space, prior, make_pruner("none"))
            summary = run_ray(
                study, script, space, options, ray_options, progress=progress, resources=resources
            )
    command = _review_command(summary)
    if args.json:
        print(json.dumps(_summary_dict(summary, command), indent=2))
    else:
        _print_summary(summary, command, make_console())
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if summary.best is None:
        console.print(
            f"no trial completed: {summary.counts.failed} failed, {summary.counts.pruned} "
            f"pruned. See the reasons with: {command}"
        )
        return EXIT_NO_RESULT
    return EXIT_OK


def _open_study(
    args: argparse.Namespace,
    storage: str,
    study_name: str,
    space: SearchSpace,
    prior: MetaPrior | None,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study:
    """Open or create the study and give it its sampler (the same for both backends)."""
    from tuner.runners import create_or_resume_study, make_sampler, record_prior, sampler_seed
    from tuner.sampler import MetaPriorSampler

    study = create_or_resume_study(
        storage, study_name, space, None, pruner, heartbeat=args.heartbeat
    )
    seed = sampler_seed(study, args.seed)  # resume-aware, apart from the other runners
    study.sampler = make_sampler(args.sampler, seed)
    if prior is not None:
        study.sampler = MetaPriorSampler(prior, fallback=study.sampler, seed=seed, space=space)
        record_prior(study, prior, args.prior)
    return study


_RAY_FLAGS = {
    "workers": "--workers",
    "address": "--address",
    "cpus_per_trial": "--cpus-per-trial",
    "gpus_per_trial": "--gpus-per-trial",
    "scheduler": "--scheduler",
    "ray_tmp": "--ray-tmp",
}


def _ray_options(args: argparse.Namespace) -> RayOptions | None:
    """The Ray options for ``--backend ray`` (``None`` for Optuna); refuses mixed options."""
    from tuner.runners import RayOptions

    given = [flag for attr, flag in _RAY_FLAGS.items() if getattr(args, attr) is not None]
    if args.backend == "optuna":
        if given:
            raise MttuneError(
                f"{given[0]} is an option of the Ray backend, and this run uses the Optuna "
                "backend. Add --backend ray, or drop "
                f"{' '.join(given)} (the Optuna backend runs trials in parallel with --n-jobs)."
            )
        return None
    if args.n_jobs is not None:
        raise MttuneError(
            f"--n-jobs is for the Optuna backend, got --n-jobs {args.n_jobs} with --backend "
            f"ray. Use --workers {args.n_jobs} to run that many trials at once on Ray."
        )
    if args.pruner is not None:
        raise MttuneError(
            f"--pruner is for the Optuna backend, got --pruner {args.pruner} with --backend "
            "ray. Ray stops poor trials early with --scheduler asha (the default), or not "
            "with --scheduler none."
        )
    values: dict[str, Any] = {
        "workers": args.workers,
        "address": args.address,
        "temp_dir": args.ray_tmp,
    }
    if args.cpus_per_trial is not None:
        values["cpus_per_trial"] = args.cpus_per_trial
    if args.gpus_per_trial is not None:
        values["gpus_per_trial"] = args.gpus_per_trial
    if args.scheduler is not None:
        values["scheduler"] = args.scheduler
    return RayOptions(**values)


def _review_command(summary: RunSummary) -> str:
    return (
        f"mttune review {shlex.quote(summary.storage)} --study {shlex.quote(summary.study_name)}"
    )


def _summary_dict(summary: RunSummary, command: str) -> dict:
    best = summary.best
    return {
        "study": summary.study_name,
        "storage": summary.storage,
        "direction": summary.direction,
        "trials": {
            "complete": summary.counts.complete,
            "pruned": summary.counts.pruned,
            "failed": summary.counts.failed,
            "interrupted": summary.counts.interrupted,
            "ran_now": summary.ran,
        },
        "best": None
        if best is None
        else {"number": best.number, "value": best.value, "params": best.params},
        "elapsed_s": round(summary.elapsed, 3),
        "interrupted": summary.interrupted,
        "review": command,
    }


def _print_summary(summary: RunSummary, command: str, console: Console) -> None:
    c = summary.counts
    head = "interrupted" if summary.interrupted else "done"
    console.print(
        Text(summary.study_name, style="bold"),
        f": {head} in {summary.elapsed:.1f}s, ran {summary.ran} "
        f"trial(s); the study has {c.complete} complete, {c.pruned} pruned, {c.failed} failed"
        + (f", {c.interrupted} interrupted" if c.interrupted else ""),
        sep="",
    )
    if summary.recovered:
        console.print(f"re-ran interrupted trial(s): {summary.recovered}")
    if summary.best is None:
        console.print("no completed trial yet", style="red")
    else:
        best = summary.best
        table = Table(title=f"best trial #{best.number}: {best.value:.6g} ({summary.direction})")
        table.add_column("parameter")
        table.add_column("value", justify="right")
        for k, v in best.params.items():
            table.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
        console.print(table)
    from optuna.storages import InMemoryStorage  # loaded already: the run used optuna

    if summary.storage == InMemoryStorage.__name__:
        console.print("the study was in memory: it ends with this run (--storage FILE keeps it)")
    else:
        console.print("review it: ", Text(command, style="bold"), sep="")
    if summary.interrupted:
        console.print("resume it: run the same command again")
