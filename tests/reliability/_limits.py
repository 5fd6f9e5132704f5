"""Limits the reliability tests put on the processes they start."""

from __future__ import annotations

import resource
import signal
from collections.abc import Callable


def limit_file_size(limit: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes writes past ``limit`` bytes fail as on a full disk (EFBIG)."""

    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec
