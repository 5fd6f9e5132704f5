"""The CLI's rich consoles: no highlighting, no re-wrapping of long lines, no markup.

Study names, parameters and failure reasons are printed as they are (a reason like
``[rank0]: out of memory`` is text, not a style tag); styles are given explicitly. Output
that is not a terminal (a pipe, a file) is never cut to fit a width: tables get the width
their contents need (unless ``COLUMNS`` sets a width). A closed pipe raises
``BrokenPipeError`` to the entry point, which ends quietly (rich would exit 1 itself).
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

__all__ = ["NO_TERMINAL_WIDTH", "make_console"]

# Rich's width for output that is no terminal: wide enough that no cell is ever truncated.
NO_TERMINAL_WIDTH = 100_000


def make_console(*, stderr: bool = False) -> Console:
    """A console for messages on stdout (default) or stderr."""
    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not _is_terminal(stream) and "COLUMNS" not in os.environ:
        width = NO_TERMINAL_WIDTH
    return _Console(
        stderr=stderr, highlight=False, soft_wrap=True, markup=False, emoji=False, width=width
    )


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Leave a closed pipe to :func:`tuner.cli.main` (one exit code for every output)."""
        self.quiet = True
        raise BrokenPipeError


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
