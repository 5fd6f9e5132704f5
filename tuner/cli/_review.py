"""``mttune review`` (the trust report, read-only) and ``mttune verify`` (measure it)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tuner.cli._console import make_console
from tuner.cli._main import seed_arg

if TYPE_CHECKING:  # imported when the command runs: --help and usage errors answer at once
    from tuner.review import Review, VerifyResult

_REVIEW_DESCRIPTION = """\
Report how far to trust a study's result. Strictly read-only: works on any Optuna storage
(SQLite file, database URL, journal file), never writes to it, and works on a read-only file.

Without --study: list the studies with their size and best value.
With --study: the best observed and the recommended config (best worst case, not the
luckiest draw) and why they differ; a confidence interval for the recommended config and
its probability of being the best of the top-k; robustness to small changes of each
hyperparameter; importance; convergence; failures; and, when the study ran with a prior,
how well the prior predicted it.
"""

_REVIEW_EPILOG = """\
examples:
  mttune review studies/mlp-digits.db                       # list the studies
  mttune review studies/mlp-digits.db --study mlp-digits    # the report in the terminal
  mttune review studies/mlp-digits.db --study mlp-digits --html report.html
  mttune review postgresql://me@db/optuna --study resnet --json > review.json
"""

_VERIFY_DESCRIPTION = """\
Re-run the top configs of a study with fresh seeds, and once at perturbed neighbours (each
numeric hyperparameter moved by -/+ PERTURB of its range), through the same script
protocol as mttune run. The runs are stored in the study as trials tagged 'verify'; the
measured intervals and robustness are printed, and mttune review uses them from then on.
"""

_VERIFY_EPILOG = """\
examples:
  mttune verify studies/mlp-digits.db --study mlp-digits examples/mlp_sklearn.py
  mttune verify studies/s.db --study s train.sh --top-k 1 --repeats 10 --perturb 0
  mttune verify studies/s.db --study s train.py --seed 0 -- --epochs 5
"""


def configure_review(p: argparse.ArgumentParser) -> None:
    """The arguments of ``mttune review``."""
    p.description, p.epilog = _REVIEW_DESCRIPTION, _REVIEW_EPILOG
    p.add_argument("storage", help="Optuna storage: SQLite file, database URL or journal file")
    p.add_argument("--study", help="the study to review (default: list the studies)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--html", metavar="PATH", help="also write a self-contained HTML page")
    p.add_argument(
        "--top-k",
        type=int,
        default=5,
        help="candidates compared for P(best) (default 5)",
    )
    p.add_argument(
        "--perturb",
        type=float,
        default=0.05,
        help="robustness: move of each parameter, as a share of its range (default 0.05)",
    )
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the estimates (default 0)")
    p.set_defaults(handler=handle_review)


def configure_verify(v: argparse.ArgumentParser) -> None:
    """The arguments of ``mttune verify``."""
    v.description, v.epilog = _VERIFY_DESCRIPTION, _VERIFY_EPILOG
    v.add_argument("storage", help="Optuna storage of the study (it is written to)")
    v.add_argument("--study", required=True, help="the study to verify")
    v.add_argument("script", help="training script (.py with train(), or an executable)")
    v.add_argument(
        "script_args", nargs="*", metavar="-- ARGS", help="extra arguments for the script"
    )
    v.add_argument("--top-k", type=int, default=3, help="configs to verify (default 3)")
    v.add_argument(
        "--trials",
        type=_trial_numbers,
        default=(),
        metavar="N,M",
        help="verify the configs of these trial numbers instead of the top-k (e.g. the "
        "'promising, verify it' ones review lists)",
    )
    v.add_argument("--repeats", type=int, default=5, help="fresh-seed runs each (default 5)")
    v.add_argument(
        "--perturb",
        type=float,
        default=0.05,
        help="move of each numeric parameter for the neighbours, as a share of its range "
        "(default 0.05; 0: no neighbours)",
    )
    v.add_argument("--seed", type=seed_arg, help="seed of the fresh seeds (default: random)")
    v.add_argument(
        "--trial-timeout", type=float, help="seconds after which a run is killed and FAILED"
    )
    v.add_argument(
        "--objective",
        help="metric to read from the script (default: the one the study was tuned on)",
    )
    v.add_argument(
        "--protocol",
        choices=("auto", "python", "command"),
        default="auto",
        help="script form (default: auto-detect)",
    )
    v.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    v.set_defaults(handler=handle_verify)


def _trial_numbers(text: str) -> tuple[int, ...]:
    """``--trials 25,31``: trial numbers, comma-separated."""
    try:
        numbers = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        numbers = ()
    if not numbers or min(numbers) < 0:
        raise argparse.ArgumentTypeError(
            f"--trials takes trial numbers separated by commas, e.g. 25,31; got {text!r}"
        )
    return numbers


def _check_review_args(args: argparse.Namespace) -> None:
    from tuner._errors import MttuneError

    if args.top_k < 1:
        raise MttuneError(f"--top-k must be >= 1, got {args.top_k}.")
    if not 0.0 <= args.perturb <= 0.5:
        raise MttuneError(
            f"--perturb must be between 0 and 0.5 (a share of each range), got {args.perturb}."
        )
    if args.html:
        _check_html_target(Path(args.html), args.storage)


def _check_html_target(target: Path, storage: str) -> None:
    """Refuse an ``--html`` path that is the study's own storage, or any SQLite database."""
    from tuner._errors import MttuneError
    from tuner.studies import normalize_url, sqlite_path

    if not target.is_file():
        return  # a new file; a folder or a FIFO fails when written, before anything prints
    url = normalize_url(storage)
    db = sqlite_path(url) if "://" in url else Path(url)
    own = [] if db is None else [db, *(Path(f"{db}{s}") for s in ("-wal", "-shm", "-journal"))]
    if any(p.exists() and os.path.samefile(p, target) for p in own):
        raise MttuneError(
            f"--html {target}: that is the study's own storage file, which the report would "
            "replace. Pass another path, e.g. --html report.html."
        )
    with open(target, "rb") as f:
        if f.read(16) == b"SQLite format 3\x00":
            raise MttuneError(
                f"--html {target}: that file is an SQLite database; mttune does not overwrite "
                "it with a report. Pass another path, e.g. --html report.html."
            )


def handle_review(args: argparse.Namespace) -> int:
    """Run ``mttune review``."""
    from tuner.review import build_review, list_studies, print_review, print_studies, write_html
    from tuner.studies import public_url

    _check_review_args(args)
    out = make_console()
    if args.study is None:
        studies = list_studies(args.storage)
        if args.json:
            print(json.dumps({"studies": [s.to_dict() for s in studies]}, indent=2))
        else:
            print_studies(studies, public_url(args.storage), out)
        return 0
    review = build_review(
        args.storage, args.study, top_k=args.top_k, perturb=args.perturb, seed=args.seed
    )
    # the page first: a path that cannot be written fails the command before it prints
    path = write_html(review, args.html) if args.html else None
    if args.json:
        print(review.to_json())
    else:
        print_review(review.to_dict(), out)
    if path is not None:
        make_console(stderr=True).print(f"wrote {path}")
    return 0


def handle_verify(args: argparse.Namespace) -> int:
    """Run ``mttune verify``."""
    from tuner.cli._main import EXIT_NO_RESULT
    from tuner.review import VerifyOptions, read_study, verify_study
    from tuner.runners import ScriptSpec

    options = VerifyOptions(
        top_k=args.top_k,
        repeats=args.repeats,
        perturb=args.perturb,
        seed=args.seed,
        trial_timeout=args.trial_timeout,
        trials=args.trials,
    )
    objective = args.objective or read_study(args.storage, args.study).objective
    script = ScriptSpec.detect(
        args.script, args=args.script_args, objective=objective, form=args.protocol
    )
    err = make_console(stderr=True)
    result = verify_study(args.storage, args.study, script, options, log=err.print)
    if args.json:
        print(json.dumps(_verify_dict(result), indent=2, allow_nan=False))
    else:
        _print_verify(result, make_console())
    if not any(r.state == "complete" for r in result.runs):
        err.print("no verification run completed: see the reasons above")
        return EXIT_NO_RESULT
    return 0


def _verify_dict(result: VerifyResult) -> dict[str, Any]:
    from tuner.review._report import estimate_dict, jsonable, robustness_dict

    analysis = result.review.analysis
    return jsonable(
        {
            "format": "mttune-verify/1",
            "study": analysis.data.name,
            "runs": [r.to_dict() for r in result.runs],
            "verified": [estimate_dict(e, analysis) for e in result.verified],
            "robustness": {str(k): robustness_dict(v) for k, v in result.robustness.items()},
            "review": result.review.to_dict(),
        }
    )


def _print_verify(result: VerifyResult, console: Console) -> None:
    from tuner.review._report import estimate_dict
    from tuner.review._terminal import fmt_value, print_promising, worse_by

    review: Review = result.review
    analysis = review.analysis
    done = sum(r.state == "complete" for r in result.runs)
    console.print(
        f"verify: {len(result.runs)} runs ({done} complete, {len(result.runs) - done} failed) "
        "added to study ",
        Text(analysis.data.name, style="bold"),
        sep="",
    )
    table = Table(title="measured on fresh seeds")
    for col in ("trial", "repeats", "mean", "95% interval", "sd across seeds", "P(best)"):
        table.add_column(col, justify="right")
    for e in result.verified:
        d = estimate_dict(e, analysis)
        iv = d["interval"]
        table.add_row(
            f"#{d['number']}",
            str(d["runs_used"]) + ("" if e.method == "verify-repeats" else f" ({e.method})"),
            fmt_value(d["mean"]),
            "-" if iv is None else f"[{fmt_value(iv[0])}, {fmt_value(iv[1])}]",
            fmt_value(d["sd"]),
            "-" if d["p_best"] is None else f"{100 * d['p_best']:.0f}%",
        )
    console.print(table)
    for number, rob in result.robustness.items():
        measured = [p for p in rob.params if p.method == "verify"]
        if not measured:
            continue
        t = Table(title=f"robustness of #{number}: parameters moved by ±{rob.perturb:g}")
        for col in ("parameter", "worse at -move", "worse at +move", "fragile"):
            t.add_column(col, justify="left" if col == "parameter" else "right")
        for p in measured:
            sides = {s["sign"]: s for s in p.sides}
            t.add_row(
                p.name,
                *[
                    "-"
                    if sides.get(sg) is None
                    else worse_by(sides[sg], fmt_value)
                    if sides[sg].get("failed_runs") and not sides[sg]["runs"]
                    else f"{fmt_value(sides[sg]['degradation'])} ± {fmt_value(sides[sg]['se'])}"
                    for sg in (-1, 1)
                ],
                Text("FRAGILE", style="bold red") if p.fragile else "ok",
            )
        console.print(t)
    rec = review.report["recommended"]
    if rec is not None:
        iv = rec["interval"]
        console.print(
            f"recommended now: trial #{rec['number']}'s config, {fmt_value(rec['mean'])} "
            + ("" if iv is None else f"[{fmt_value(iv[0])}, {fmt_value(iv[1])}] ")
            + f"({rec['method']})"
        )
    print_promising(review.report, console)
    console.print(
        f"full report: mttune review {analysis.data.storage} --study {analysis.data.name}"
    )
