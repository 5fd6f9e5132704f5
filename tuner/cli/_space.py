"""``mttune space infer`` / ``from-prior``: a search space as a YAML file to edit."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tuner._errors import MttuneError
from tuner.cli._console import make_console

_EPILOG = """\
examples:
  mttune space infer studies/past/*.db -o space.yaml
  mttune space infer postgresql://me@db/optuna --study resnet-a resnet-b -o space.yaml
  mttune space infer runs.db                      # print the YAML
"""

_FROM_PRIOR_EPILOG = """\
examples:
  mttune space from-prior xgboost -o space.yaml   # a built-in prior's default space
  mttune space from-prior p.safetensors           # print the YAML
"""


def configure_space(p: argparse.ArgumentParser) -> None:
    """The subcommands of ``mttune space``."""
    sub = p.add_subparsers(dest="space_command", metavar="SUBCOMMAND")
    sub.required = True
    infer = sub.add_parser(
        "infer",
        help="the search space of past studies (define-by-run included), as YAML",
        description=(
            "Read past studies and write their search space: the space mttune recorded on "
            "each study, else the distributions its trials used (conditional parameters "
            "detected from the trials that lack them), pooled over the studies by "
            "parameter name (union of ranges and choices)."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    infer.add_argument("sources", nargs="+", metavar="STORAGE", help="URLs, SQLite files, globs")
    infer.add_argument("--study", dest="studies", nargs="+", metavar="NAME", help="only these")
    infer.add_argument("-o", "--output", help="YAML file to write (default: print it)")
    infer.set_defaults(handler=handle_infer)
    from_prior = sub.add_parser(
        "from-prior",
        help="a prior's default search space (built-ins: one per family), as YAML",
        description=(
            "Write the search space a prior suggests for a new study: a built-in prior's "
            "default space for its family (the names users write, ranges to edit), else the "
            "space the prior was trained for."
        ),
        epilog=_FROM_PRIOR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from_prior.add_argument("prior", help="built-in name (mttune prior list) or prior file")
    from_prior.add_argument("-o", "--output", help="YAML file to write (default: print it)")
    from_prior.set_defaults(handler=handle_from_prior)


def handle_infer(args: argparse.Namespace) -> int:
    """Run ``mttune space infer``."""
    from tuner.metadataset import infer_space

    target = _writable(args.output) if args.output is not None else None
    space, report = infer_space(args.sources, studies=args.studies)
    err = make_console(stderr=True)
    for line in report.lines()[1:]:
        err.print(line, soft_wrap=True, markup=False)
    text = (
        "# inferred by `mttune space infer` from "
        + ", ".join(report.sources[:5])
        + (" ..." if len(report.sources) > 5 else "")
        + "\n"
        + space.to_yaml()
    )
    _emit(text, target, f"{len(space)} parameters")
    return 0


def handle_from_prior(args: argparse.Namespace) -> int:
    """Run ``mttune space from-prior``."""
    from tuner.prior import load_prior

    target = _writable(args.output) if args.output is not None else None
    prior = load_prior(args.prior)
    space = prior.default_space()
    lines = [f"# default search space of the prior {args.prior} (`mttune space from-prior`)"]
    lines.append("# edit the ranges freely: the prior maps any range onto what it knows;")
    lines.append("# names it knows (aliases included):")
    lines += [
        f"#   {f.name}" + (f" ({', '.join(f.aliases)})" if f.aliases else "")
        for f in prior.features
    ]
    _emit("\n".join(lines) + "\n" + space.to_yaml(), target, f"{len(space)} parameters")
    return 0


def _emit(text: str, target: Path | None, what: str) -> None:
    """Print ``text``, or write it to ``target`` atomically and say so on stderr."""
    if target is None:
        sys.stdout.write(text)
        return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise MttuneError(f"cannot write {target}: {e.strerror or e}") from None
    make_console(stderr=True).print(f"wrote {target} ({what})", markup=False)


def _writable(output: str) -> Path:
    """The output path, if a YAML file may be written there (checked before any reading)."""
    if not output.strip():
        raise MttuneError("-o/--output is empty; give a file name such as space.yaml.")
    path = Path(output)
    if path.exists() and not path.is_file():
        raise MttuneError(f"-o {output}: not a regular file; give a file name such as space.yaml.")
    if not path.parent.is_dir():
        raise MttuneError(f"-o {output}: the folder {path.parent} does not exist.")
    return path
