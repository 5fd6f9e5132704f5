"""Journal-file storages that survive a cut-off write and keep heartbeats.

Optuna's :class:`~optuna.storages.journal.JournalFileBackend` appends one JSON operation a
line. A writer that stops in the middle of a line (disk full, a file-size limit, a kill)
leaves a *torn tail*: Optuna skips it while reading, but the next writer appends onto it, and
the merged line then makes every later read fail, which loses the whole study. Here:

* before appending (under the journal's own lock) a torn tail is healed: a whole operation
  that only lacks its newline gets it, a cut-off one is removed, and either is logged;
* while reading, a line that is not an operation (a torn tail that an older writer appended
  onto) is skipped, keeping the operation appended onto it: finished trials stay readable.

:class:`HeartbeatJournalStorage` gives journal studies the trial heartbeat Optuna gives only
to its RDB storages, so that a runner killed on another host has its RUNNING trials
recovered as it has with SQLite. The heartbeat is a trial system attribute
(:data:`~tuner.studies.TrialAttr.HEARTBEAT_KEY`, the writer's wall clock): hosts that share a
journal must have clocks that agree to well within the grace period.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import time
from collections.abc import Callable, Generator
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import FrozenTrial, TrialState

from tuner.studies._attrs import TrialAttr

__all__ = ["HeartbeatJournalStorage", "SafeJournalFileBackend"]

_log = logging.getLogger(__name__)

# every operation Optuna writes starts with these bytes (json.dumps, compact separators)
_OP_START = b'{"op_code":'
# what a line that is not an operation reads as: an operation the replay skips
_NO_OP = {"op_code": JournalOperation.DISCARD_TRIALS}
_TAIL_CHUNK = 1 << 16


class SafeJournalFileBackend(JournalFileBackend):
    """A journal file whose torn tail is healed before writing and skipped while reading.

    Attributes:
        skipped_lines: Line numbers (0-based) read as no operation.
    """

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        self.skipped_lines: set[int] = set()

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        """The operations from number ``log_number_from`` on, as Optuna's reader gives them.

        A line without its newline is not read (it is being written, or torn); a complete
        line that is no operation reads as a no-op, or as the operation appended onto it.
        """
        offsets = self._log_number_offset
        with open(self._file_path, "rb") as f:
            remaining = os.fstat(f.fileno()).st_size
            start = log_number_from if log_number_from in offsets else 0
            f.seek(offsets[start])
            remaining -= offsets[start]
            for number, line in enumerate(f, start=start):
                remaining -= len(line)
                if remaining < 0 or not line.endswith(b"\n"):
                    return
                offsets.setdefault(number + 1, offsets[number] + len(line))
                if number >= log_number_from:
                    yield self._operation(number, line)

    def _operation(self, number: int, line: bytes) -> dict[str, Any]:
        op = _parse_op(line)
        if op is None:
            # a torn line that the next write was appended onto: keep that write
            at = line.find(_OP_START, 1)
            op = _parse_op(line[at:]) if at > 0 else None
            if number not in self.skipped_lines:
                self.skipped_lines.add(number)
                _log.warning(
                    "%s: line %d is not a whole journal operation (a write was cut off); %s",
                    self._file_path,
                    number + 1,
                    "kept the operation written after it" if op else "skipped it",
                )
        return _NO_OP if op is None else op

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Append ``logs`` as Optuna does, after healing a torn tail (under the lock)."""
        with get_lock_file(self._lock):
            self._heal_tail()
            blob = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
            with open(self._file_path, "ab") as f:
                f.write(blob.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())

    def _heal_tail(self) -> None:
        """End the file with a newline: finish a whole last operation, drop a cut-off one."""
        with open(self._file_path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            start = max(0, size - _TAIL_CHUNK)
            while True:
                f.seek(start)
                cut = f.read(size - start).rfind(b"\n")
                if cut >= 0 or start == 0:
                    break
                start = max(0, start - _TAIL_CHUNK)
            keep = start + cut + 1  # 0 when the file is one torn line
            f.seek(keep)
            tail = f.read()
            if _parse_op(tail + b"\n") is not None:
                f.write(b"\n")
                what = "its newline was missing; added it"
            else:
                f.truncate(keep)
                what = f"removed that cut-off operation ({len(tail)} bytes)"
            f.flush()
            os.fsync(f.fileno())
        _log.warning("%s: the last write to the journal was cut off; %s", self._file_path, what)


def _parse_op(line: bytes) -> dict[str, Any] | None:
    """``line`` as a journal operation, else ``None``."""
    try:
        op = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(op, dict) or not isinstance(op.get("op_code"), int):
        return None
    return op


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A journal storage with trial heartbeats, as Optuna's RDB storages have.

    Args:
        backend: The journal.
        heartbeat_interval: Seconds between a running trial's heartbeats.
        grace_period: Seconds without a heartbeat after which a RUNNING trial is stale.
        stale_trial_callback: Called by Optuna with each stale trial it fails.
    """

    def __init__(
        self,
        backend: SafeJournalFileBackend,
        *,
        heartbeat_interval: int,
        grace_period: int,
        stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    ) -> None:
        super().__init__(backend)
        self._heartbeat_interval = heartbeat_interval
        self._grace_period = grace_period
        self._stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        """Note that the trial's runner is alive (nothing once the trial has finished)."""
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, TrialAttr.HEARTBEAT_KEY, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """RUNNING trials whose last heartbeat (or start) is older than the grace period."""
        now = time.time()
        stale = []
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = t.system_attrs.get(TrialAttr.HEARTBEAT_KEY)
            if not isinstance(beat, int | float):
                start = t.datetime_start or datetime.datetime.now()
                beat = start.timestamp()
            if now - beat > self._grace_period:
                stale.append(t._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        """Seconds between heartbeats."""
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        """What Optuna calls with each stale trial it failed."""
        return self._stale_trial_callback
