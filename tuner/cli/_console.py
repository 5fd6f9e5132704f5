"""The CLI's rich consoles: no syntax highlighting, and long lines (paths) never re-wrapped."""

from __future__ import annotations

from rich.console import Console

__all__ = ["make_console"]


def make_console(*, stderr: bool = False) -> Console:
    """A console for messages on stdout (default) or stderr."""
    return Console(stderr=stderr, highlight=False, soft_wrap=True)
