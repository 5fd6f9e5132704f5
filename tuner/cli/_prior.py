"""``mttune meta-train`` (past studies -> prior file), ``mttune prior list`` and ``show``."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from tuner._errors import MttuneError
from tuner.cli._console import make_console
from tuner.cli._main import seed_arg
from tuner.prior import MAMLConfig, ModelConfig  # plain settings: no torch
from tuner.prior._config import INNER_LR_SHAPES

if TYPE_CHECKING:  # imported when the command runs: --help and usage errors answer at once
    from tuner.prior import MetaPrior

_TRAIN_EPILOG = """\
examples:
  mttune meta-train --from 'studies/past/*.db' -o p.safetensors     # space from the studies
  mttune meta-train --space search_spaces/mlp.yaml --from 'studies/past/*.db' -o p.safetensors
  mttune meta-train --space space.yaml --from postgresql://me@db/optuna --study a b -o p.st
  mttune meta-train --space space.yaml --from 'runs/*.db' -o p.safetensors --device cuda --seed 1
"""


def configure_meta_train(p: argparse.ArgumentParser) -> None:
    """The arguments of ``mttune meta-train``."""
    p.description = (
        "Read past tuning studies (each study is one task; their spaces may differ: "
        "parameters are pooled by name), meta-train a MAML prior over the hyperparameters, "
        "validate it on held-out studies and write it to a safetensors file."
    )
    p.epilog = _TRAIN_EPILOG
    p.add_argument(
        "--space",
        help="search space YAML file (default: inferred from the studies, as "
        "'mttune space infer' prints it)",
    )
    p.add_argument(
        "--from",
        dest="sources",
        nargs="+",
        required=True,
        metavar="URL_OR_GLOB",
        help="storages of past studies: URLs, SQLite files or globs",
    )
    p.add_argument(
        "--study",
        dest="studies",
        nargs="+",
        metavar="NAME",
        help="only these studies (default: all)",
    )
    p.add_argument("-o", "--output", required=True, help="prior file to write (.safetensors)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument(
        "--min-trials",
        type=int,
        default=5,
        help="usable trials a study needs to count as a task (default 5)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=MAMLConfig.max_steps,
        help=f"outer MAML steps at most (default {MAMLConfig.max_steps})",
    )
    p.add_argument(
        "--inner-steps",
        type=int,
        default=MAMLConfig.inner_steps,
        help=f"inner-loop steps (default {MAMLConfig.inner_steps}; 0 = no MAML)",
    )
    p.add_argument("--first-order", action="store_true", help="first-order MAML")
    p.add_argument(
        "--outer-lr",
        type=float,
        default=MAMLConfig.outer_lr,
        help=f"Adam learning rate of the meta-parameters (default {MAMLConfig.outer_lr})",
    )
    p.add_argument(
        "--weight-decay",
        type=float,
        default=MAMLConfig.weight_decay,
        help="decoupled weight decay (AdamW) of the network's meta-parameters "
        f"(default {MAMLConfig.weight_decay}: plain Adam)",
    )
    p.add_argument(
        "--inner-lr-shape",
        choices=INNER_LR_SHAPES,
        default=MAMLConfig.inner_lr_shape,
        help="learned inner step sizes: one per parameter tensor, or one per weight "
        f"(element: Meta-SGD) (default {MAMLConfig.inner_lr_shape})",
    )
    p.add_argument(
        "--context",
        type=int,
        default=MAMLConfig.context,
        help="CAVIA: a context vector of this size is all the inner loop adapts "
        f"(default {MAMLConfig.context}: the inner loop adapts every weight)",
    )
    p.add_argument(
        "--context-lr",
        type=float,
        default=MAMLConfig.context_lr,
        help="CAVIA: initial step size of the context, learned up to 10 times it "
        f"(default {MAMLConfig.context_lr})",
    )
    p.add_argument(
        "--max-support",
        type=int,
        default=MAMLConfig.max_support,
        help="largest support set of a meta-training episode (default "
        f"{MAMLConfig.max_support}; below --points)",
    )
    p.add_argument(
        "--points",
        type=int,
        default=MAMLConfig.points,
        help=f"trials per meta-training episode, support + query (default {MAMLConfig.points})",
    )
    p.add_argument(
        "--ensemble",
        type=int,
        default=ModelConfig.ensemble,
        help=f"ensemble members (default {ModelConfig.ensemble})",
    )
    p.add_argument(
        "--hidden",
        type=int,
        default=ModelConfig.hidden,
        help=f"hidden units (default {ModelConfig.hidden})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=handle_meta_train)


def configure_prior(p: argparse.ArgumentParser) -> None:
    """The subcommands of ``mttune prior``."""
    sub = p.add_subparsers(dest="prior_command", metavar="SUBCOMMAND")
    sub.required = True
    listing = sub.add_parser(
        "list",
        help="the built-in priors, one line each",
        description="List the priors shipped with mttune (use their names with --prior).",
    )
    listing.set_defaults(handler=handle_list)
    s = sub.add_parser(
        "show",
        help="what a prior was trained on and how well it validated",
        description="Print a prior's source studies, settings and validation.",
    )
    s.add_argument("prior", help="prior file (.safetensors) or built-in name (mttune prior list)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(handler=handle_show)


def handle_list(args: argparse.Namespace) -> int:
    """Run ``mttune prior list``."""
    from tuner.prior import builtin_names, load_prior

    console = make_console()
    for name in builtin_names():
        prior = load_prior(name)
        about = prior.info.get("builtin", {})
        params = ", ".join(f.name for f in prior.features)
        console.print(
            f"{name:<14} {about.get('summary', '')}; {about.get('trials', '?')} trials; "
            f"params {params}",
            markup=False,
            soft_wrap=True,
        )
    return 0


def handle_meta_train(args: argparse.Namespace) -> int:
    """Run ``mttune meta-train``."""
    from tuner.metadataset import build_metadataset
    from tuner.prior import check_prior_target, meta_train, save_prior
    from tuner.sampler import decide_early_strategy
    from tuner.space import load_space

    console = make_console(stderr=True)
    model, maml = _settings(args)  # settings first: no waiting for the studies to hear of a typo
    check_prior_target(args.output)  # and where the prior goes: never onto an input
    space = load_space(args.space) if args.space else None
    dataset = build_metadataset(
        args.sources, space, studies=args.studies, min_trials=args.min_trials
    )
    for line in dataset.report.lines():
        console.print(line)
    if args.quiet:
        prior = meta_train(dataset, model=model, maml=maml, seed=args.seed, device=args.device)
    else:
        with Progress(
            TextColumn("meta-training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("val loss {task.fields[val]}"),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("train", total=maml.max_steps, val="-")

            def progress(step: int, total: int, val: float | None) -> None:
                if val is None:
                    bar.update(task, completed=step)
                else:
                    bar.update(task, completed=step, val=f"{val:.4f}")

            prior = meta_train(
                dataset,
                model=model,
                maml=maml,
                seed=args.seed,
                device=args.device,
                progress=progress,
            )
    prior.info["early_strategy"] = decide_early_strategy(prior, dataset)
    path = save_prior(prior, args.output)
    _print_prior(prior, make_console())
    make_console().print(f"wrote {path}")
    return 0


def _settings(args: argparse.Namespace) -> tuple[ModelConfig, MAMLConfig]:
    """The network and MAML settings from the flags, and the device, checked up front."""
    from tuner.prior import resolve_device

    try:
        model = ModelConfig(hidden=args.hidden, ensemble=args.ensemble)
        maml = MAMLConfig(
            max_steps=args.max_steps,
            inner_steps=args.inner_steps,
            first_order=args.first_order,
            outer_lr=args.outer_lr,
            weight_decay=args.weight_decay,
            inner_lr_shape=args.inner_lr_shape,
            max_support=args.max_support,
            context=args.context,
            context_lr=args.context_lr,
            points=args.points,
        )
    except MttuneError as e:
        field, _, rest = str(e).partition(" ")
        # a setting given by a flag is named as the flag (``max_steps``: ``--max-steps``)
        flag = f"--{field.replace('_', '-')}" if hasattr(args, field) else field
        raise MttuneError(f"{flag} {rest}") from None
    resolve_device(args.device)
    return model, maml


def handle_show(args: argparse.Namespace) -> int:
    """Run ``mttune prior show``."""
    from tuner.prior import load_prior

    prior = load_prior(args.prior)
    if args.json:
        print(json.dumps(prior.describe(), indent=2))
    else:
        _print_prior(prior, make_console())
    return 0


def _print_prior(prior: MetaPrior, console: Console) -> None:
    info = prior.info
    sources = info.get("sources", {})
    used = sources.get("used", [])
    training = info.get("training", {})
    about = info.get("builtin")
    if about:
        console.print(
            Text(f"built-in prior {about.get('name')}", style="bold"),
            f": {about.get('summary')}; {about.get('source')}",
            f"; objective {about.get('objective')}",
            sep="",
            soft_wrap=True,
        )
        console.print(about.get("attribution", ""), markup=False, soft_wrap=True)
    console.print(
        "prior for space ",
        Text(prior.space.name or "?", style="bold"),
        f" (hash {prior.space.hash}, {len(prior.space)} params, objective "
        f"{prior.space.objective.name} {prior.space.objective.direction})",
        sep="",
    )
    console.print(
        f"learned from {len(used)} studies / {sum(u.get('trials', 0) for u in used)} trials "
        f"({_roles(info)}); {len(sources.get('skipped_studies', []))} studies skipped"
    )
    for s in sources.get("skipped_studies", [])[:5]:
        console.print(f"  skipped {s.get('study')}: {s.get('reason')}")
    for f in prior.features:
        presence = ", sometimes absent" if f.masked else ""
        aliases = f" (aliases {', '.join(f.aliases)})" if f.aliases else ""
        meaning = f": {f.help}" if f.help else ""
        console.print(
            f"  {f.name}{aliases}: {f.kind} {f.describe()}{presence}{meaning}", markup=False
        )
    maml = prior.maml
    method = (
        f"MAML {'first' if maml.first_order else 'second'}-order, {maml.inner_steps} inner steps"
        if maml.inner_steps
        else f"no MAML (multi-task regression, {maml.prediction_steps} adaptation steps)"
    )
    console.print(
        f"ensemble of {prior.model.ensemble} MLPs ({prior.model.layers}x{prior.model.hidden}), "
        f"{method}"
        + (" (Meta-SGD step sizes)" if maml.inner_lr_shape == "element" else "")
        + (f" (CAVIA context of {maml.context})" if maml.context else "")
        + f"; trained {training.get('steps', '?')} steps "
        f"(best {training.get('best_step', '?')})"
        + (f" in {training['seconds']} s" if "seconds" in training else "")
        + " on "
        f"{training.get('device', '?')}, seed {training.get('seed', '?')}"
    )
    _print_splits(info, console)
    validation = info.get("validation", {})
    if validation:
        crossed = info.get("splits", {}).get("scheme") == "cross-fitted"
        where = "held-out studies, cross-fitted" if crossed else "held-out studies"
        table = Table(title=f"validation on {where} (targets in support units)")
        for col in ("shots", "kendall tau", "mse", "nll", "68% cover", "95% cover"):
            table.add_column(col, justify="right")
        for k, m in validation.items():
            tau = m.get("kendall_tau")
            table.add_row(
                k,
                "-" if tau is None else f"{tau:.3f}",
                f"{m['mse']:.3f}",
                f"{m['nll']:.3f}",
                f"{m['coverage_68']:.2f}",
                f"{m['coverage_95']:.2f}",
            )
        console.print(table)
    _print_check(info.get("calibration_check"), console)
    _print_early(info.get("early_strategy"), console)
    versions = info.get("versions", {})
    if versions:
        console.print("made with " + ", ".join(f"{k} {v}" for k, v in versions.items()))


def _print_early(record: dict | None, console: Console) -> None:
    """How the first trials are chosen (``early_strategy="auto"``), and the measurement."""
    if not record:
        console.print("first trials: model (not measured for this prior)")
        return
    regret = record.get("mean_regret")
    if not regret:
        console.print(f"first trials: {record.get('choice')} ({record.get('note')})")
        return
    numbers = ", ".join(f"{k} {v:.3f}" for k, v in regret.items())
    reason = f"; {record['reason']}" if record.get("reason") else ""
    console.print(
        f"first trials: {record.get('choice')}; {record.get('note')}: {numbers}{reason}",
        markup=False,
    )


def _roles(info: dict) -> str:
    """How many tasks trained and were held out (old files: train, validation)."""
    splits = info.get("splits")
    if splits is None:
        tasks = info.get("tasks", {})
        n_train, n_val = len(tasks.get("train", [])), len(tasks.get("validation", []))
        return f"{n_train} train, {n_val} validation tasks"
    n_train, n_held = (len(splits.get(k, [])) for k in ("train", "held_out"))
    folds = "/".join(str(len(f)) for f in splits.get("folds", []))
    how = "cross-fitted " + folds if splits.get("scheme") == "cross-fitted" else "no cross-fit"
    return f"{n_train} train, {n_held} held-out tasks ({how})"


def _print_splits(info: dict, console: Console) -> None:
    """What the held-out tasks did: the split's note, or that an old file has no record."""
    splits = info.get("splits")
    if splits is None:
        console.print(
            "held-out tasks: no split record (a prior made before the cross-fitted "
            "validation): the figures below were measured on the tasks that stopped the "
            "training and fitted the calibration, so they are optimistic; meta-train it again "
            "for honest ones",
            markup=False,
            soft_wrap=True,
        )
        return
    label = Text("warning: ", style="bold yellow") if splits.get("degraded") else Text("")
    note = Text(str(splits.get("note", "")))
    console.print(label, Text("held-out tasks: "), note, sep="", soft_wrap=True)


def _print_check(check: dict | None, console: Console) -> None:
    """The calibration's coverage on tasks it was not fitted on, next to what it claims."""
    if not check:
        return
    nominal, reported = check.get("nominal", {}), check.get("reported", {})
    in_sample, held_out = check.get("in_sample", {}), check.get("held_out")
    for name, label in (("coverage_95", "95%"), ("coverage_68", "68%")):
        fitted = f"{in_sample.get(name, float('nan')):.2f} on the tasks it was fitted on"
        if held_out is None:
            where = f"not checked on other tasks (too few); {fitted}"
        else:
            where = (
                f"{held_out.get(name, float('nan')):.2f} on tasks it was not fitted on, {fitted}"
            )
        console.print(
            f"calibration check, {label} intervals: {where}; nominal "
            f"{nominal.get(name, float('nan')):.2f}, reported above "
            f"{reported.get(name, float('nan')):.2f}",
            markup=False,
            soft_wrap=True,
        )
