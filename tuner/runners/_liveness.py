"""Whether the runner of a RUNNING trial is alive: by its process where that can be told.

A runner tags each trial it runs with :func:`runner_attr`: its host name, PID, and what
makes that PID mean one process, the kernel's boot id, the PID namespace and the process's
start time. Another runner can tell that the tagging runner died only when it sees the same
processes (same boot, same PID namespace: one machine, one container) and the PID is gone or
now another process (a start time that differs). Containers that share a host name, another
machine, a tag of an older mttune, a platform without ``/proc``: unknown, and the trial is
left to the heartbeat check, which recovers it once its grace period passes.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from typing import Any, Literal

__all__ = ["runner_attr", "runner_state"]

State = Literal["alive", "dead", "unknown"]


@functools.cache
def _boot_and_namespace() -> tuple[str, str] | None:
    """This kernel's boot id and this process's PID namespace, where ``/proc`` tells them."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return (boot, namespace) if boot and namespace else None


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot), else ``None``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the name in parentheses may hold spaces
    try:
        return int(fields[19])  # field 22 of proc(5); the fields here start at field 3
    except (IndexError, ValueError):
        return None


def runner_attr() -> dict[str, Any]:
    """Who runs a trial (:attr:`~tuner.studies.TrialAttr.RUNNER`): see the module docstring."""
    tag: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    where = _boot_and_namespace()
    start = _start_time(os.getpid())
    if where is not None and start is not None:
        tag.update(boot=where[0], pidns=where[1], start=start)
    return tag


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def runner_state(tag: Any) -> State:
    """Whether the runner that wrote ``tag`` (a :func:`runner_attr`) is alive, dead or unknown."""
    where = _boot_and_namespace()
    if not isinstance(tag, dict) or where is None:
        return "unknown"
    pid, start = tag.get("pid"), tag.get("start")
    if (
        tag.get("host") != socket.gethostname()
        or [tag.get("boot"), tag.get("pidns")] != list(where)
        or not isinstance(pid, int)
        or isinstance(pid, bool)
        or not isinstance(start, int)
    ):
        return "unknown"
    if pid == os.getpid():
        return "alive"
    if not _pid_alive(pid):
        return "dead"
    now = _start_time(pid)
    if now is None:
        return "unknown"
    return "alive" if now == start else "dead"  # another process got the PID
