"""``PriorReport``: an Optuna callback that says what ``MetaPriorSampler`` did, trial by trial.

For users of the plug-in sampler (``study.optimize(..., callbacks=[PriorReport()])``): what
``mttune run`` shows in its progress, from what the sampler records on the study (its
coverage, ``mttune.prior_coverage``) and on each trial (``mttune.source``, ``mttune.guard``).
"""

from __future__ import annotations

import sys
from typing import TextIO

from optuna.study import Study
from optuna.trial import FrozenTrial

from tuner.sampler._mapping import Coverage
from tuner.studies import StudyAttr, TrialAttr

__all__ = ["PriorReport"]


class PriorReport:
    """Print the prior's coverage once per study, then the guard's state after each trial.

    Lines look like::

        prior coverage: prior covers 2 of 2 parameters
        trial 7 (adapted-prior, complete 0.0132): guard trust 0.95, evidence 3, concordance 0.83

    and ``guard FIRED: the fallback sampler leads`` once the guard trusts the prior less
    than one half. Trials that no ``MetaPriorSampler`` sampled are not reported.

    Args:
        file: Where to print (default: ``sys.stderr`` at the time of each call).
    """

    def __init__(self, *, file: TextIO | None = None) -> None:
        self._file = file
        self._said: set[tuple[int, str]] = set()

    def __call__(self, study: Study, trial: FrozenTrial) -> None:
        """The callback: ``study.optimize(objective, callbacks=[PriorReport()])``."""
        source = TrialAttr.SOURCE.get(trial.user_attrs)
        if source is None:
            return
        coverage = StudyAttr.COVERAGE.get(study.user_attrs)
        if coverage is not None:
            line = _coverage_line(coverage)
            if (study._study_id, line) not in self._said:
                self._said.add((study._study_id, line))
                self._print(f"prior coverage: {line}")
        self._print(_trial_line(trial, source))

    def _print(self, line: str) -> None:
        print(line, file=self._file or sys.stderr, flush=True)


def _coverage_line(coverage: dict) -> str:
    try:
        return Coverage(
            covered=tuple(coverage["covered"]),
            fallback=dict(coverage["fallback"]),
            notes=tuple(coverage["notes"]),
        ).summary()
    except (KeyError, TypeError):
        return "unreadable (a foreign mttune.prior_coverage attribute)"


def _trial_line(trial: FrozenTrial, source: str) -> str:
    value = "-" if trial.value is None else f"{trial.value:.6g}"
    head = f"trial {trial.number} ({source}, {trial.state.name.lower()} {value})"
    guard = TrialAttr.GUARD.get(trial.user_attrs)
    if not isinstance(guard, dict):
        return head
    parts = [f"guard trust {guard.get('trust', 0.0):.2f}", f"evidence {guard.get('evidence')}"]
    if guard.get("concordance") is not None:
        parts.append(f"concordance {guard['concordance']:.2f}")
    line = f"{head}: {', '.join(parts)}"
    return line + ("; guard FIRED: the fallback sampler leads" if guard.get("fired") else "")
