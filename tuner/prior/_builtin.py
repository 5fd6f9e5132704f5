"""Built-in priors: prior files shipped with mttune, known by name (``xgboost``, ``mlp``, ...).

Each is an ordinary prior file in ``tuner/prior/builtin/`` (package data), meta-trained on
public tables of real training runs (see ``NOTICE`` and ``docs/builtin-priors.md``); its
name is the file's stem. ``benchmarks/build_builtin_priors.py`` rebuilds them bit for bit.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["BUILTIN_DIR", "builtin_names", "builtin_path"]

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
_SUFFIX = ".safetensors"


def builtin_names() -> list[str]:
    """The names of the built-in priors, sorted."""
    return sorted(p.name.removesuffix(_SUFFIX) for p in BUILTIN_DIR.glob(f"*{_SUFFIX}"))


def builtin_path(name: str | os.PathLike[str]) -> Path | None:
    """The file of the built-in prior ``name``, or ``None`` when there is no such built-in."""
    text = os.fspath(name)
    if text not in builtin_names():
        return None
    return BUILTIN_DIR / f"{text}{_SUFFIX}"
