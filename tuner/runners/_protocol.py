"""The training-script protocol: run one trial of a user script in a subprocess.

Two forms of script are supported (see ``docs/scripts.md``):

(a) **Python**: a ``.py`` file with a top-level ``def train(params, report)``. It runs in a fresh
    interpreter under :mod:`tuner.runners._harness`; ``report(step, value)`` gives intermediate
    values; the return value (a number or a dict of metrics) is the result.
(b) **Command**: any executable (or a ``.py`` file without ``train``). Parameters arrive as
    ``--name value`` arguments and as JSON in ``MTTUNE_PARAMS``; the script prints its metrics
    as JSON lines on stdout: ``{"step": 3, "val_loss": 0.41}`` for an intermediate value and
    ``{"val_loss": 0.38}`` (no ``step``) for the final one.

Every trial also gets ``MTTUNE_SEED``, ``MTTUNE_TRIAL_NUMBER`` and ``MTTUNE_STUDY``.
Each failure mode (non-zero exit, signal, timeout, NaN/inf, no or garbage output, output
over the limit) gives a FAILED outcome with a one-line reason and the stderr tail; the
process group is always killed so no child outlives its trial, and on Linux so are the
processes that left it (``setsid`` daemons), found by the ``MTTUNE_TRIAL_TOKEN`` variable
each trial's processes inherit.
"""

from __future__ import annotations

import ast
import collections
import contextlib
import ctypes
import dataclasses
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from tuner._errors import MttuneError
from tuner.runners._harness import RESULT_KEY as _RESULT_KEY

__all__ = [
    "ScriptError",
    "ScriptSpec",
    "TrialOutcome",
    "parse_metrics_line",
    "run_script",
]

_HARNESS = Path(__file__).with_name("_harness.py")
_STDERR_TAIL_BYTES = 4096
_KILL_GRACE_SECONDS = 3.0
# Every process of a trial inherits this variable: the ones that left its process group
# (setsid daemons) are found by it when the trial ends.
_TOKEN_VAR = "MTTUNE_TRIAL_TOKEN"
DEFAULT_MAX_OUTPUT_BYTES = 8 * 1024 * 1024

Form = Literal["python", "command"]


class ScriptError(MttuneError, ValueError):
    """The training script cannot be used (missing, not executable, wrong form)."""


@dataclasses.dataclass(frozen=True)
class ScriptSpec:
    """How to start a training script for one trial.

    Attributes:
        path: The script (absolute).
        form: ``"python"`` (defines ``train``) or ``"command"`` (prints JSON lines).
        args: Extra arguments passed to the script before the parameters.
        objective: Metric key holding the objective (``"value"`` is always accepted too).
        python: Interpreter used for ``.py`` files.
    """

    path: Path
    form: Form
    args: tuple[str, ...] = ()
    objective: str = "value"
    python: str = sys.executable

    @classmethod
    def detect(
        cls,
        script: str | os.PathLike[str],
        *,
        args: Sequence[str] = (),
        objective: str = "value",
        form: Literal["auto", "python", "command"] = "auto",
        python: str | None = None,
    ) -> ScriptSpec:
        """Resolve ``script`` and pick its protocol form.

        ``auto`` chooses ``python`` for a ``.py`` file with a top-level ``train`` function and
        ``command`` otherwise.

        Raises:
            ScriptError: if the script does not exist, cannot be parsed for ``python`` form,
                or is not executable for ``command`` form.
        """
        path = Path(script).expanduser().resolve()
        if not path.is_file():
            raise ScriptError(
                f"training script {str(script)!r} not found. Pass the path of a Python file "
                "defining train(params, report) or of an executable that prints JSON lines."
            )
        is_py = path.suffix == ".py"
        defines_train = is_py and _defines_train(path)
        if form == "auto":
            form = "python" if defines_train else "command"
        if form == "python" and not defines_train:
            raise ScriptError(
                f"{path}: --protocol python needs a top-level 'def train(params, report)'; "
                "none was found. Define it, or use --protocol command and print JSON lines."
            )
        if form == "command" and not is_py and not os.access(path, os.X_OK):
            raise ScriptError(
                f"{path}: the script is not executable. Run 'chmod +x {path}' or give a .py file."
            )
        return cls(path, form, tuple(args), objective, python or sys.executable)

    def argv(self, params: Mapping[str, Any]) -> list[str]:
        """The command line for one trial."""
        if self.form == "python":
            return [self.python, str(_HARNESS), str(self.path), *self.args]
        head = [self.python, str(self.path)] if self.path.suffix == ".py" else [str(self.path)]
        tail: list[str] = []
        for name, value in params.items():
            tail += [f"--{name}", _format_arg(value)]
        return [*head, *self.args, *tail]


def _defines_train(path: Path) -> bool:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError) as e:
        raise ScriptError(f"{path}: the Python file does not parse: {e}") from None
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "train"
        for node in tree.body
    )


def _format_arg(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return str(value)


@dataclasses.dataclass
class TrialOutcome:
    """What one run of the script produced.

    Attributes:
        state: ``complete``, ``failed`` or ``pruned``.
        value: The objective value (``complete`` only).
        metrics: All final metrics the script reported.
        intermediate: ``(step, value)`` pairs in the order reported.
        reason: Why the trial failed or was pruned (one line).
        stderr_tail: The last few KiB of the script's stderr.
        exit_code: The process exit code (negative: killed by that signal).
        duration: Wall-clock seconds.
    """

    state: Literal["complete", "failed", "pruned"]
    value: float | None = None
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    intermediate: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    reason: str | None = None
    stderr_tail: str = ""
    exit_code: int | None = None
    duration: float = 0.0


def parse_metrics_line(line: str) -> dict[str, Any] | None:
    """Parse one stdout line; ``None`` when it is not a JSON object (free text is allowed)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def _objective_of(record: Mapping[str, Any], objective: str) -> Any:
    if objective in record:
        return record[objective]
    return record.get("value")


def _step_of(record: Mapping[str, Any]) -> Any:
    return record.get("step", record.get("epoch"))


def _as_float(value: Any) -> float | None:
    """A reported number as a float (an int too big for one is +-inf); ``None`` if no number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


# steps are stored as 64-bit signed integers (SQLite's INTEGER)
_MAX_STEP = 2**63 - 1


def _bad_step(step: int | float) -> str | None:
    """Why a numeric step cannot be stored (not finite, beyond 64 bits), else ``None``."""
    if isinstance(step, float) and not math.isfinite(step):
        return f"step {step} of an intermediate report is not a number"
    if abs(int(step)) > _MAX_STEP:
        text = str(step)
        text = text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"
        return f"step {text} of an intermediate report is beyond 64-bit integers"
    return None


class _Thinning:
    """Which intermediate reports reach ``on_report``: every one while they are few or cheap.

    Recording a report costs the runner a storage write and the pruner's look at the study,
    which grows with the reports recorded so far. Past the first ``first`` reports, one is
    recorded only while the runner has spent at most ``share`` of the trial's time on them:
    a script that reports thousands of steps a second then costs O(1) a step and is slowed
    down by ``share`` at most, and one that reports every few seconds has all its reports
    recorded. The last report is always kept (:meth:`_Run.outcome`).
    """

    def __init__(self, *, first: int = 20, share: float = 0.1) -> None:
        self.first, self.share = first, share
        self.recorded = 0
        self.spent_s = 0.0
        self.started = time.monotonic()

    def due(self, now: float) -> bool:
        """Whether a report that arrives ``now`` (``time.monotonic()``) is recorded."""
        return self.recorded < self.first or self.spent_s <= self.share * (now - self.started)

    def spent(self, seconds: float) -> None:
        """Count one recorded report that took ``seconds``."""
        self.recorded += 1
        self.spent_s += seconds


class _Run:
    """State of one running trial process (parent side)."""

    def __init__(
        self,
        spec: ScriptSpec,
        on_report: Callable[[int, float], bool] | None,
        max_output_bytes: int,
    ) -> None:
        self.spec = spec
        self.on_report = on_report
        self.max_output_bytes = max_output_bytes
        self.stdout_bytes = 0
        self.pending = bytearray()
        self.stderr_tail: collections.deque[bytes] = collections.deque()
        self.stderr_len = 0
        self.records: list[dict[str, Any]] = []
        self.text_lines = 0
        self.last_text = ""
        self.intermediate: list[tuple[int, float]] = []
        self.thinning = _Thinning()
        self.unrecorded: tuple[int, float] | None = None  # the last report, if thinned out
        self.stop_reason: str | None = None
        self.stop_state: Literal["failed", "pruned"] | None = None

    def stop(self, state: Literal["failed", "pruned"], reason: str) -> None:
        if self.stop_state is None:
            self.stop_state, self.stop_reason = state, reason

    def feed_stderr(self, data: bytes) -> None:
        self.stderr_tail.append(data)
        self.stderr_len += len(data)
        while self.stderr_len - len(self.stderr_tail[0]) > _STDERR_TAIL_BYTES:
            self.stderr_len -= len(self.stderr_tail.popleft())

    def stderr_text(self) -> str:
        blob = b"".join(self.stderr_tail)[-_STDERR_TAIL_BYTES:]
        return blob.decode("utf-8", errors="replace")

    def feed_stdout(self, data: bytes, *, final: bool = False) -> None:
        self.stdout_bytes += len(data)
        if self.stdout_bytes > self.max_output_bytes:
            self.stop(
                "failed",
                f"the script printed more than {self.max_output_bytes} bytes on stdout; print "
                "only JSON metric lines there and send logs to stderr "
                "(or raise --max-output-bytes)",
            )
            return
        self.pending += data
        *lines, rest = self.pending.split(b"\n")
        self.pending = bytearray(rest)
        if final and rest:
            lines.append(bytes(rest))
            self.pending = bytearray()
        for raw in lines:
            self._line(raw.decode("utf-8", errors="replace"))
            if self.stop_state is not None:
                return

    def _line(self, line: str) -> None:
        record = parse_metrics_line(line)
        if record is None:
            if line.strip():
                self.text_lines += 1
                self.last_text = line.strip()[:200]
            return
        if self.spec.form == "python" and set(record) == {_RESULT_KEY}:
            # the harness's final line: a returned dict is the result, whatever its keys
            if isinstance(record[_RESULT_KEY], dict):
                self.records.append(record[_RESULT_KEY])
            return
        step = _step_of(record)
        if step is None:
            self.records.append(record)
            return
        value = _as_float(_objective_of(record, self.spec.objective))
        if isinstance(step, bool) or not isinstance(step, int | float) or value is None:
            return  # an intermediate line without a usable value: ignore it, keep going
        bad = _bad_step(step)
        if bad is not None:
            self.stop("failed", f"{bad}; report steps as whole numbers like 0, 1, 2")
            return
        if not math.isfinite(value):
            self.stop("failed", f"intermediate value at step {step} is {value}")
            return
        now = time.monotonic()
        if not self.thinning.due(now):
            self.unrecorded = (int(step), value)
            return
        self.unrecorded = None
        self.intermediate.append((int(step), value))
        if self.on_report is not None:
            pruned = self.on_report(int(step), value)
            self.thinning.spent(time.monotonic() - now)
            if pruned:
                self.stop("pruned", f"pruned at step {int(step)} (value {value:.6g})")

    def outcome(self, exit_code: int | None, duration: float) -> TrialOutcome:
        if self.unrecorded is not None:  # the last report is kept, thinned out or not
            self.intermediate.append(self.unrecorded)
            self.unrecorded = None
        base = dict(
            intermediate=self.intermediate,
            stderr_tail=self.stderr_text(),
            exit_code=exit_code,
            duration=duration,
        )
        if self.stop_state is not None:
            return TrialOutcome(self.stop_state, reason=self.stop_reason, **base)
        if exit_code is None:
            return TrialOutcome("failed", reason="the script did not finish", **base)
        if exit_code != 0:
            return TrialOutcome(
                "failed", reason=_exit_reason(exit_code, self.stderr_text()), **base
            )
        metrics: dict[str, Any] = {}
        for record in self.records:
            metrics.update(record)
        if not metrics and self.intermediate:
            # A script that only printed step lines: its last value is the result.
            metrics = {"value": self.intermediate[-1][1]}
        if not metrics:
            if self.text_lines:
                why = (
                    f"no JSON metrics on stdout ({self.text_lines} line(s) of other text, "
                    f"last: {self.last_text!r})"
                )
            elif self.stdout_bytes:
                why = "no JSON metrics on stdout (output was not valid text lines)"
            else:
                why = "the script printed nothing on stdout"
            return TrialOutcome(
                "failed",
                reason=f'{why}; print a line like {{"{self.spec.objective}": 0.123}}',
                **base,
            )
        raw = _objective_of(metrics, self.spec.objective)
        if raw is None:
            return TrialOutcome(
                "failed",
                metrics=metrics,
                reason=(
                    f"the metrics have no {_key_names(self.spec.objective)} key; got "
                    f"keys {sorted(metrics)[:10]}"
                ),
                **base,
            )
        value = _as_float(raw)
        if value is None:
            return TrialOutcome(
                "failed",
                metrics=metrics,
                reason=f"objective '{self.spec.objective}' is {raw!r}, not a number",
                **base,
            )
        if not math.isfinite(value):
            return TrialOutcome(
                "failed",
                metrics=metrics,
                reason=f"objective '{self.spec.objective}' is {value}",
                **base,
            )
        return TrialOutcome("complete", value=value, metrics=metrics, **base)


def _key_names(objective: str) -> str:
    return "'value'" if objective == "value" else f"'{objective}' (or 'value')"


def _exit_reason(code: int, stderr: str) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        reason = f"the script was killed by {name}"
    else:
        reason = f"the script exited with code {code}"
    last = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if last:
        reason += f": {last[-1][:300]}"
    return reason


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the trial's process group, then SIGKILL whatever is left after ``grace``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # children that ignored SIGTERM, too
    proc.wait()


def _kill_strays(token: str) -> None:
    """SIGKILL the trial's processes that escaped its process group (``setsid`` daemons).

    They are found by the trial's token in their environment (Linux ``/proc``; elsewhere,
    and for a process that exec'd with a fresh environment, this finds nothing).
    """
    needle = f"{_TOKEN_VAR}={token}".encode()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
        except OSError:  # gone, or another user's
            continue
        if needle in environ.split(b"\0"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def run_script(
    spec: ScriptSpec,
    params: Mapping[str, Any],
    *,
    seed: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    on_report: Callable[[int, float], bool] | None = None,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    kill_grace: float = _KILL_GRACE_SECONDS,
    cwd: str | os.PathLike[str] | None = None,
    cancel: threading.Event | None = None,
    die_with_parent: bool = False,
) -> TrialOutcome:
    """Run one trial of ``spec`` with ``params`` and collect its outcome.

    Args:
        spec: The script and its protocol form.
        params: The trial's parameters.
        seed: Passed to the script as ``MTTUNE_SEED``.
        env: Extra environment variables (e.g. ``MTTUNE_TRIAL_NUMBER``).
        timeout: Seconds before the trial is killed and FAILED (``None``: no limit).
        on_report: Called with each intermediate ``(step, value)``; returning ``True`` stops
            the trial as PRUNED.
        max_output_bytes: Stdout beyond this fails the trial.
        kill_grace: Seconds between SIGTERM and SIGKILL when stopping the script.
        cwd: Working directory of the script (default: the current one).
        cancel: When set (from another thread), the script is killed and the trial FAILED
            with reason ``cancelled``.
        die_with_parent: Have the kernel SIGKILL the script when the thread that started it
            dies (Linux; ignored elsewhere): a runner killed outright, such as a Ray worker,
            leaves no orphaned script behind.

    Returns:
        The :class:`TrialOutcome`. This function does not raise for script faults.
    """
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env["MTTUNE_PARAMS"] = json.dumps(dict(params))
    if seed is not None:
        child_env["MTTUNE_SEED"] = str(seed)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    child_env[_TOKEN_VAR] = uuid.uuid4().hex
    run = _Run(spec, on_report, max_output_bytes)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            spec.argv(params),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_parent_death_signal() if die_with_parent else None,
        )
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in an argument
        return TrialOutcome("failed", reason=f"cannot start the script: {e}", duration=0.0)
    try:
        _pump(
            proc,
            run,
            timeout=timeout,
            deadline=None if timeout is None else start + timeout,
            cancel=cancel,
        )
    except BaseException:
        _kill_group(proc, kill_grace)
        raise
    if run.stop_state is not None or proc.poll() is None:
        _kill_group(proc, kill_grace)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # reap orphaned children of the script
    exit_code = proc.wait()
    _kill_strays(child_env[_TOKEN_VAR])
    for stream in (proc.stdout, proc.stderr):
        stream.close()
    return run.outcome(exit_code, time.monotonic() - start)


def _pump(
    proc: subprocess.Popen[bytes],
    run: _Run,
    *,
    timeout: float | None,
    deadline: float | None,
    cancel: threading.Event | None,
) -> None:
    """Feed the script's output to ``run`` until it ends, is stopped, times out or is cancelled."""
    assert proc.stdout is not None and proc.stderr is not None
    sel = selectors.DefaultSelector()
    for stream in (proc.stdout, proc.stderr):
        os.set_blocking(stream.fileno(), False)
        sel.register(stream, selectors.EVENT_READ)
    limits = _Limits(timeout, deadline, cancel)
    exited_at: float | None = None  # then: when output last came (drained until quiet)
    try:
        while sel.get_map():
            now = time.monotonic()
            if limits.reached(run, now, proc):
                break
            if exited_at is not None and now - exited_at > 1.0:
                break  # the script exited and a child of it holds the pipes open, quiet
            for key, _ in sel.select(timeout=limits.poll_interval(now)):
                data = _read_some(key.fileobj)
                if data is None:
                    continue
                if not data:
                    sel.unregister(key.fileobj)
                elif key.fileobj is proc.stdout:
                    run.feed_stdout(data)
                else:
                    run.feed_stderr(data)
                if data and exited_at is not None:
                    exited_at = time.monotonic()
            if run.stop_state is not None:
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = time.monotonic()
        if run.stop_state is None:
            _await_exit(proc, run, limits)
        if run.stop_state is None:
            run.feed_stdout(b"", final=True)
    finally:
        sel.close()


@dataclasses.dataclass(frozen=True)
class _Limits:
    """When a running trial must stop: its deadline (``--trial-timeout``) or a cancel."""

    timeout: float | None
    deadline: float | None
    cancel: threading.Event | None

    def reached(self, run: _Run, now: float, proc: subprocess.Popen[bytes]) -> bool:
        """Stop ``run`` (saying why) once cancelled, or past the deadline while ``proc`` runs.

        The timeout measures the script: one that exited in time is read to the end.
        """
        if self.deadline is not None and now >= self.deadline and proc.poll() is None:
            run.stop("failed", f"timed out after {self.timeout:g} s (--trial-timeout); killed")
        elif self.cancel is not None and self.cancel.is_set():
            run.stop("failed", "cancelled: the runner is stopping")
        return run.stop_state is not None

    def poll_interval(self, now: float) -> float:
        """Seconds to wait for output before looking at the limits again."""
        if self.deadline is None or now >= self.deadline:
            return 0.2
        return min(0.2, self.deadline - now)


def _await_exit(proc: subprocess.Popen[bytes], run: _Run, limits: _Limits) -> None:
    """Wait for a script that closed its output but runs on: a result it printed counts."""
    while proc.poll() is None:
        now = time.monotonic()
        if limits.reached(run, now, proc):
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=limits.poll_interval(now))


_PR_SET_PDEATHSIG = 1


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking for SIGKILL when the starting thread dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent, sigkill = os.getpid(), int(signal.SIGKILL)

    def preexec() -> None:  # runs in the child between fork and exec: keep it minimal
        prctl(_PR_SET_PDEATHSIG, sigkill)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), sigkill)

    return preexec


def _read_some(stream: Any) -> bytes | None:
    try:
        return os.read(stream.fileno(), 65536)
    except BlockingIOError:
        return None
