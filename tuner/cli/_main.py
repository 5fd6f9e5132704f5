"""Entry point: parse the command line, dispatch, turn errors into messages and exit codes.

Exit codes (as the Optuna CLI: 0 success, non-zero failure):

* 0: success;
* 1: an error in the input or environment (the message says what and how to fix it);
* 2: bad command-line usage;
* 3: the run finished but no trial completed (every trial failed: see the reasons);
* 130: interrupted (Ctrl-C / SIGTERM); the study is consistent and resumes on re-run;
* 141: the reader of the output went away (``mttune review ... --json | head``): mttune stops
  quietly, as a Unix tool killed by SIGPIPE (128 + 13) does.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
import threading
import warnings
from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from tuner._errors import MttuneError
from tuner.cli._console import make_console

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_RESULT = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

_EPILOG = """\
examples:
  mttune run examples/mlp_sklearn.py --space search_spaces/mlp.yaml --n-trials 20
  mttune run train.sh --space space.yaml --storage postgresql://user@host/db --n-jobs 4
  mttune meta-train --from 'studies/past/*.db' -o p.safetensors   # space from the studies
  mttune space infer 'studies/past/*.db' -o space.yaml
  mttune prior list                                         # the built-in priors
  mttune prior show studies/mlp.prior.safetensors
  mttune space from-prior xgboost -o space.yaml             # a built-in's default space
  mttune review studies/mlp-digits.db                       # list the studies
  mttune review studies/mlp-digits.db --study mlp-digits --html report.html
  mttune verify studies/mlp-digits.db --study mlp-digits examples/mlp_sklearn.py

exit codes: 0 ok, 1 error, 2 usage, 3 no trial completed, 130 interrupted, 141 closed pipe.
"""

# command: (module, function that adds its arguments, one-line help). A command's module (and
# with it torch and Optuna, ~3 s) is imported only to parse that command: `mttune --help`
# and usage errors answer at once.
_COMMANDS = {
    "run": ("tuner.cli._run", "configure_run", "tune a training script"),
    "meta-train": (
        "tuner.cli._prior",
        "configure_meta_train",
        "meta-learn a warm-start prior from past studies (MAML)",
    ),
    "prior": ("tuner.cli._prior", "configure_prior", "list the built-in priors, inspect a prior"),
    "space": (
        "tuner.cli._space",
        "configure_space",
        "a search space as YAML: of past studies, or a prior's default",
    ),
    "review": (
        "tuner.cli._review",
        "configure_review",
        "how far to trust a study's result (read-only report)",
    ),
    "verify": (
        "tuner.cli._review",
        "configure_verify",
        "re-run the top configs with fresh seeds and perturbations",
    ),
}


def seed_arg(text: str) -> int:
    """An argparse type for ``--seed``: an integer NumPy, torch and Optuna all accept."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in 0..4294967295, got {value}")
    return value


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``mttune`` parser.

    Args:
        argv: The command line it will parse: only the command named there gets its
            arguments (``None``: every command does).
    """
    parser = argparse.ArgumentParser(
        prog="mttune",
        description="Hyperparameter tuning that learns from past tuning (Optuna / Ray Tune).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from tuner._version import __version__

    parser.add_argument("-V", "--version", action="version", version=f"mttune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = None if argv is None else next((a for a in argv if a in _COMMANDS), "")
    for name, (module, configure, summary) in _COMMANDS.items():
        p = sub.add_parser(
            name, help=summary, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        if wanted is None or name == wanted:
            getattr(importlib.import_module(module), configure)(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mttune`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except BrokenPipeError:
        return _closed_pipe()


def _main(argv: list[str]) -> int:
    args = _parse(build_parser(argv), argv)
    # mttune relies on Optuna's heartbeat on purpose; its "experimental" notices are noise here.
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    err = make_console(stderr=True)
    _quiet_storage_threads(err)
    try:
        return int(args.handler(args))
    except MttuneError as e:
        err.print(Text.assemble(("error: ", "bold red"), str(e)), soft_wrap=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.print("interrupted", style="yellow")
        return EXIT_INTERRUPTED


def _closed_pipe() -> int:
    """Stop quietly when stdout's reader went away (``| head``).

    What is still buffered for stdout goes nowhere: without this, Python's final flush would
    fail again at exit and print a traceback.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is no file descriptor (embedded, tests)
        pass
    return EXIT_BROKEN_PIPE


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; for a command that runs a script, what follows ``--`` is the script's.

    argparse alone fills the positionals in one go, so ``run f.py --space s.yaml -- --epochs
    5`` would leave ``--epochs 5`` unrecognised. When the part before ``--`` does not parse
    on its own (the script itself follows ``--``), argparse reads the whole line as before.
    """
    if "--" in argv:
        cut = argv.index("--")
        try:
            with (
                contextlib.redirect_stderr(io.StringIO()),
                contextlib.redirect_stdout(io.StringIO()),
            ):
                head = parser.parse_args(argv[:cut])
        except SystemExit:
            head = None
        if head is not None and hasattr(head, "script_args"):
            head.script_args = [*head.script_args, *argv[cut + 1 :]]
            return head
    return parser.parse_args(argv)


def _quiet_storage_threads(err: Console) -> None:
    """Background threads (Optuna's heartbeat) report storage failures in one line."""
    from tuner.studies import storage_failure

    default = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        failure = storage_failure(args.exc_value) if args.exc_value is not None else None
        if failure is None:
            default(args)
        else:
            err.print(Text.assemble(("warning: ", "yellow"), str(failure)), soft_wrap=True)

    threading.excepthook = hook


if __name__ == "__main__":
    sys.exit(main())
