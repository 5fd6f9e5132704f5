"""The root of mttune's error hierarchy: the CLI turns these into one-line messages."""

from __future__ import annotations

__all__ = ["MttuneError"]


class MttuneError(Exception):
    """A user-facing error: the message says what was wrong, the value, and how to fix it."""
