"""Live progress of a run: trials done, best so far, ETA (rich on a terminal, lines otherwise)."""

from __future__ import annotations

import time
from typing import Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import (
    Progress as RichProgressBar,
)

from tuner.runners._study import StudyCounts
from tuner.studies import TrialAttr

__all__ = ["LineProgress", "NullProgress", "Progress", "RichProgress", "make_progress"]


class Progress(Protocol):
    """Receives run events; implementations must be thread-safe (trials finish in threads)."""

    def start(
        self,
        study: optuna.Study,
        counts: StudyCounts,
        n_trials: int | None,
        timeout: float | None,
    ) -> None:
        """The run starts with ``counts`` trials already in the study."""

    def trial_finished(
        self, trial: FrozenTrial, counts: StudyCounts, best: FrozenTrial | None
    ) -> None:
        """A trial finished; ``counts`` and ``best`` describe the whole study now."""

    def stop(self) -> None:
        """The run ended (normally or not)."""

    def message(self, text: str) -> None:
        """A one-off notice for the user."""


class NullProgress:
    """Reports nothing."""

    def start(self, study, counts, n_trials, timeout) -> None:
        pass

    def trial_finished(self, trial, counts, best) -> None:
        pass

    def stop(self) -> None:
        pass

    def message(self, text: str) -> None:
        pass


def _trial_line(trial: FrozenTrial) -> str:
    if trial.state == TrialState.COMPLETE:
        return f"trial {trial.number} finished: {trial.value:.6g}"
    if trial.state == TrialState.PRUNED:
        return f"trial {trial.number} pruned ({TrialAttr.PRUNE_REASON.get(trial.user_attrs, '')})"
    if TrialAttr.INTERRUPTED.get(trial.user_attrs):
        return f"trial {trial.number} interrupted (it will be re-run)"
    return f"trial {trial.number} FAILED: {TrialAttr.FAIL_REASON.get(trial.user_attrs, 'unknown')}"


class RichProgress:
    """A live bar with trials done / target, best value so far, elapsed time and ETA."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, markup=False, emoji=False)
        self._bar: RichProgressBar | None = None
        self._task = None
        self._base = 0

    def start(self, study, counts, n_trials, timeout) -> None:
        self._base = counts.done
        self._bar = RichProgressBar(
            SpinnerColumn(),
            TextColumn("{task.description}", style="bold", markup=False),  # the study name
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("best [cyan]{task.fields[best]}"),
            TextColumn("[dim]{task.fields[states]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(
            study.study_name,
            total=n_trials,
            completed=counts.done,
            best="-",
            states=_states(counts),
        )

    def trial_finished(self, trial, counts, best) -> None:
        if self._bar is None:
            return
        if trial.state != TrialState.COMPLETE:
            self._bar.console.print(_trial_line(trial), style="yellow", markup=False, emoji=False)
        self._bar.update(
            self._task,
            completed=counts.done,
            best="-" if best is None else f"{best.value:.6g} (#{best.number})",
            states=_states(counts),
        )

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def message(self, text: str) -> None:
        self.console.print(text)


class LineProgress:
    """One plain line per finished trial (for logs and non-terminal output)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False, markup=False, emoji=False)
        self._target: int | None = None
        self._t0 = 0.0
        self._base = 0

    def start(self, study, counts, n_trials, timeout) -> None:
        self._target, self._t0, self._base = n_trials, time.monotonic(), counts.done
        already = f" ({counts.done} trials already done)" if counts.done else ""
        self.console.print(f"study {study.study_name}: starting{already}")

    def trial_finished(self, trial, counts, best) -> None:
        elapsed = time.monotonic() - self._t0
        ran = counts.done - self._base
        eta = ""
        if self._target is not None and ran > 0:
            left = max(0, self._target - counts.done)
            eta = f", ETA {left * elapsed / ran:.0f}s"
        target = f"/{self._target}" if self._target is not None else ""
        best_txt = "-" if best is None else f"{best.value:.6g}"
        self.console.print(f"[{counts.done}{target}] {_trial_line(trial)}; best {best_txt}{eta}")

    def stop(self) -> None:
        pass

    def message(self, text: str) -> None:
        self.console.print(text)


def _states(counts: StudyCounts) -> str:
    parts = []
    if counts.pruned:
        parts.append(f"{counts.pruned} pruned")
    if counts.failed:
        parts.append(f"{counts.failed} failed")
    return ", ".join(parts)


def make_progress(kind: str, console: Console | None = None) -> Progress:
    """``auto`` (a live bar on a terminal, lines otherwise), ``bar``, ``lines`` or ``none``."""
    if kind == "none":
        return NullProgress()
    console = console or Console(stderr=True, markup=False, emoji=False)
    if kind == "bar" or (kind == "auto" and console.is_terminal):
        return RichProgress(console)
    return LineProgress(console)
