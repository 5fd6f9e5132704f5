"""The signals that stop a run as Ctrl-C does: SIGINT, SIGTERM and SIGHUP.

SIGHUP is what a runner gets when its terminal closes (an ssh session that drops): it stops
the run cleanly, as SIGTERM does, instead of killing the runner and orphaning its scripts.
Both backends and ``mttune verify`` install their handlers with :func:`on_stop_signals`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["STOP_SIGNALS", "interrupt", "on_stop_signals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

Handler = Callable[[int, Any], None]


def interrupt(signum: int, frame: Any) -> None:
    """A handler that stops the main thread as Ctrl-C does (``KeyboardInterrupt``)."""
    raise KeyboardInterrupt


def on_stop_signals(
    handler: Handler = interrupt, signals: Iterable[signal.Signals] = STOP_SIGNALS
) -> Callable[[], None]:
    """Handle ``signals`` with ``handler``; a function that restores the previous handlers.

    Only the main thread can install signal handlers: elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.signal(sig, handler) for sig in signals}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
