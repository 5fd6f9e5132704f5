"""The ``tuner`` logger hierarchy, in Optuna's manner.

Every message mttune logs goes to a logger under ``tuner``: ``tuner.sampler`` (what
``MetaPriorSampler`` says: the prior's coverage, the guard handing over to the fallback) and
``tuner.runners`` (the Ray Tune searcher). mttune adds no handler: records propagate to
Python's root logger (warnings reach stderr by Python's last-resort handler when the
application configured none; ``logging.basicConfig(level=logging.INFO)`` shows the rest).

Verbosity: a message is emitted when its level is at least :func:`get_verbosity`, which is
Optuna's (``optuna.logging.set_verbosity``) unless :func:`set_verbosity` set mttune's own.
So ``optuna.logging.set_verbosity(optuna.logging.ERROR)`` silences the sampler's warnings as
it silences Optuna's. Described in ``docs/sampler.md#logging``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["get_logger", "get_verbosity", "quiet", "set_verbosity"]

ROOT = "tuner"
_own_verbosity: int | None = None


def get_verbosity() -> int:
    """The level from which mttune's messages are emitted: mttune's own, else Optuna's."""
    if _own_verbosity is not None:
        return _own_verbosity
    import optuna

    return optuna.logging.get_verbosity()


def set_verbosity(level: int | None) -> None:
    """Set mttune's verbosity (``logging.WARNING``, ...); ``None``: follow Optuna's again."""
    global _own_verbosity
    _own_verbosity = level


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Only errors from mttune and Optuna inside the block (for internal simulations)."""
    import optuna

    global _own_verbosity
    own, theirs = _own_verbosity, optuna.logging.get_verbosity()
    _own_verbosity = logging.ERROR
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        _own_verbosity = own
        optuna.logging.set_verbosity(theirs)


class _VerbosityFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= get_verbosity()


_FILTER = _VerbosityFilter()


def get_logger(name: str) -> logging.Logger:
    """The logger ``name`` (under ``tuner``), whose records follow :func:`get_verbosity`."""
    if name != ROOT and not name.startswith(ROOT + "."):
        raise ValueError(f"mttune's loggers are under {ROOT!r}, got {name!r}")
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
