"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package that re-exports its public names this way imports the module behind a name only
when the name is first used: ``import tuner``, ``from tuner.prior import MAMLConfig`` and
``from tuner.runners import SAMPLERS`` cost no torch, Optuna or Ray, which matters for the
CLI's ``--help``, trial subprocesses and Ray workers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, modules: Mapping[str, Sequence[str]], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package that re-exports names lazily.

    Args:
        package: The package's ``__name__`` (for the error of an unknown name).
        modules: Module -> the public names it defines.
        namespace: The package's ``globals()``: a resolved name is cached there.
    """
    exports = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:  # noqa: N807 (the module hook PEP 562 names)
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(exports) | set(namespace.get("__all__", ())))

    return __getattr__, __dir__
