"""The one owner of the names of every study and trial attribute mttune writes.

Every attribute mttune writes is prefixed ``mttune.`` so that it cannot collide with a user's
own attributes (``seed``, ``metrics``, ...). Studies written by earlier versions used bare
names (``seed``, ``interrupted``) and a ``mttune:`` prefix (``mttune:space``): reads accept
those too (:meth:`Attr.get`), so old studies still review and resume, and
:func:`canonical_trial_attrs` renames them for code that works on plain dictionaries.

What each attribute means is documented in ``docs/attributes.md``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["Attr", "StudyAttr", "TrialAttr", "canonical_trial_attrs"]

_MISSING: Final = object()


@dataclasses.dataclass(frozen=True)
class Attr:
    """One attribute: the key new writes use, the keys older versions wrote, its type.

    Args:
        key: The name written now.
        legacy: Names earlier versions wrote; read when ``key`` is absent.
        kind: When given, a stored value not of this type reads as absent (a tampered or
            foreign study cannot make mttune misread it). ``bool`` never counts as ``int``.
    """

    key: str
    legacy: tuple[str, ...] = ()
    kind: type | tuple[type, ...] | None = None

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        """Every name the attribute is read under, the current one first."""
        return (self.key, *self.legacy)

    def get(self, attrs: Mapping[str, Any], default: Any = None) -> Any:
        """The value in ``attrs`` under the key or a legacy name, else ``default``."""
        for name in self.names:
            value = attrs.get(name, _MISSING)
            if value is _MISSING:
                continue
            if self.kind is not None and not _is_kind(value, self.kind):
                return default
            return value
        return default

    def has(self, attrs: Mapping[str, Any]) -> bool:
        """Whether ``attrs`` holds the attribute under any of its names."""
        return any(name in attrs for name in self.names)


def _is_kind(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


class TrialAttr:
    """Trial user attributes (``trial.user_attrs``)."""

    # written by the runners (mttune run, the Ray backend, mttune verify)
    SEED: Final = Attr("mttune.seed", ("seed",), int)
    METRICS: Final = Attr("mttune.metrics", ("metrics",), dict)
    DURATION: Final = Attr("mttune.duration_s", ("duration_s",))
    EXIT_CODE: Final = Attr("mttune.exit_code", ("exit_code",))
    FAIL_REASON: Final = Attr("mttune.fail_reason", ("fail_reason",))
    STDERR_TAIL: Final = Attr("mttune.stderr_tail", ("stderr_tail",))
    PRUNE_REASON: Final = Attr("mttune.prune_reason", ("prune_reason",))
    INTERRUPTED: Final = Attr("mttune.interrupted", ("interrupted",))
    RETRY_OF: Final = Attr("mttune.retry_of", ("retry_of",), int)
    RUNNER: Final = Attr("mttune.runner", ("runner",), dict)
    VERIFY: Final = Attr("mttune.verify", ("verify",))
    # written by MetaPriorSampler
    SOURCE: Final = Attr("mttune.source")
    PRED_MEAN: Final = Attr("mttune.pred_mean")
    PRED_STD: Final = Attr("mttune.pred_std")
    GUARD: Final = Attr("mttune.guard")
    CONCORDANCE: Final = Attr("mttune.concordance")
    # the same for the prior adapted to nothing: what the adaptation contributed
    CONCORDANCE_ZERO_SHOT: Final = Attr("mttune.concordance_zero_shot")
    PORTFOLIO: Final = Attr("mttune.portfolio_index")
    POOR: Final = Attr("mttune.poor_proposal")
    PARAM_SOURCES: Final = Attr("mttune.param_sources", (), dict)
    REPEAT_OF: Final = Attr("mttune.repeat_of", (), int)
    # trial *system* attribute: the last heartbeat (time.time()) of a trial in a journal
    HEARTBEAT_KEY: Final = "mttune.heartbeat"
    # one attribute per final metric, next to METRICS: optuna-dashboard sorts and plots them
    METRIC_PREFIX: Final = "mttune.metric."

    @classmethod
    def metric(cls, name: str) -> str:
        """The attribute holding the final metric ``name`` on its own: ``mttune.metric.NAME``."""
        return cls.METRIC_PREFIX + name

    @classmethod
    def all(cls) -> tuple[Attr, ...]:
        """Every trial attribute."""
        return tuple(v for v in vars(cls).values() if isinstance(v, Attr))


class StudyAttr:
    """Study user attributes (``study.user_attrs``) and system-attribute prefixes."""

    SPACE: Final = Attr("mttune.space", ("mttune:space",), dict)
    SPACE_HASH: Final = Attr("mttune.space_hash", ("mttune:space_hash",), str)
    OBJECTIVE: Final = Attr("mttune.objective", ("mttune:objective",), str)
    PRIOR: Final = Attr("mttune.prior", ("mttune:prior",), dict)
    COVERAGE: Final = Attr("mttune.prior_coverage", (), dict)
    # study *system* attributes: one key per runner that joined the study
    RUNNER_PREFIX: Final = "mttune.runner:"
    LEGACY_RUNNER_PREFIXES: Final = ("mttune:runner:",)


def canonical_trial_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a trial's attributes with legacy names renamed to the current ones.

    Where a trial has both (a study resumed across versions), the current name wins.
    """
    out = dict(attrs)
    for attr in TrialAttr.all():
        for old in attr.legacy:
            if old in out:
                value = out.pop(old)
                out.setdefault(attr.key, value)
    return out
