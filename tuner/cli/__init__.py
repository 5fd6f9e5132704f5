"""The ``mttune`` command line (``mttune --help``)."""

from tuner.cli._main import main

__all__ = ["main"]
