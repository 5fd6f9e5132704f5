"""The CLI's rich consoles: no highlighting, no re-wrapping of long lines, no markup.

Study names, parameters and failure reasons are printed as they are (a reason like
``[rank0]: out of memory`` is text, not a style tag); styles are given explicitly.
"""

from __future__ import annotations

from rich.console import Console

__all__ = ["make_console"]


def make_console(*, stderr: bool = False) -> Console:
    """A console for messages on stdout (default) or stderr."""
    return Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False, emoji=False)
