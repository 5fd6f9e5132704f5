"""The CLI's rich consoles: no highlighting, no re-wrapping of long lines, no markup.

Study names, parameters and failure reasons are printed as they are (a reason like
``[rank0]: out of memory`` is text, not a style tag); styles are given explicitly. A closed
pipe raises ``BrokenPipeError`` to the entry point, which ends quietly (rich would exit 1
itself).
"""

from __future__ import annotations

from rich.console import Console

__all__ = ["make_console"]


def make_console(*, stderr: bool = False) -> Console:
    """A console for messages on stdout (default) or stderr."""
    return _Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False, emoji=False)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Leave a closed pipe to :func:`tuner.cli.main` (one exit code for every output)."""
        self.quiet = True
        raise BrokenPipeError
