"""The negative-transfer guard: how well does the prior serve *this* study?

The guard trusts the prior as far as it predicts the study's own trials and its proposals
pay.

Evidence is prequential: when a trial finishes, the prior adapted to the trials that had
finished before it started predicts the new trial and those earlier trials. The trial's
*concordance* is the share of earlier trials it is ranked correctly against
(``sign(pred_new - pred_old) == sign(value_new - value_old)``; ties count one half). A prior
that knows nothing scores 0.5 on average, a helpful one more, a misleading one less. The
sampler scores a trial the prior proposed 0 instead when it landed among the worst quarter of
the trials before it: a misleading prior, once adapted to a few trials, can rank the study's
trials well while the proposals it leads to stay poor (measured on the transfer benchmark).

Over the last ``window`` trials with evidence, the mean evidence ``c`` and its standard
error give ``z = (c - 0.5) / se``; the trust is ``Phi(z + optimism)`` clipped to
``[floor, ceiling]``. Each trial then uses the prior with probability ``trust``, else the
fallback sampler. Until ``min_evidence`` trials have evidence the trust is ``ceiling``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import special

from tuner._errors import MttuneError

__all__ = ["GuardState", "NegativeTransferGuard", "concordance"]


@dataclasses.dataclass(frozen=True)
class GuardState:
    """The guard's verdict for the next trial.

    Attributes:
        trust: Probability that the next trial uses the prior.
        evidence: Trials the verdict rests on.
        concordance: Their mean evidence: concordance, 0 for poor proposals of the prior
            (``None`` without evidence).
        z: Standardised distance of the concordance from chance.
        fired: Whether the guard distrusts the prior (trust below one half).
    """

    trust: float
    evidence: int
    concordance: float | None
    z: float | None
    fired: bool

    def to_dict(self) -> dict[str, object]:
        """JSON form (recorded on every trial)."""
        return {
            "trust": round(self.trust, 4),
            "evidence": self.evidence,
            "concordance": None if self.concordance is None else round(self.concordance, 4),
            "z": None if self.z is None else round(self.z, 3),
            "fired": self.fired,
        }


def concordance(
    pred_new: float, value_new: float, pred_old: np.ndarray, value_old: np.ndarray
) -> float | None:
    """Share of earlier trials the new one is ranked correctly against (lower is better)."""
    if len(pred_old) == 0:
        return None
    dp = np.sign(pred_new - np.asarray(pred_old))
    dv = np.sign(value_new - np.asarray(value_old))
    score = np.where(dv == 0, 0.5, np.where(dp == dv, 1.0, np.where(dp == 0, 0.5, 0.0)))
    return float(score.mean())


@dataclasses.dataclass(frozen=True)
class NegativeTransferGuard:
    """Shift trust from the prior to the fallback when the prior mispredicts the study.

    Args:
        min_evidence: Trials with evidence needed before the guard acts.
        window: Only the most recent trials with evidence count.
        optimism: Shift of the z-score: how much benefit of the doubt the prior gets. The
            default (-1) asks the prior to *show* that it ranks the study better than chance:
            a prior no better than chance gets a trust of 0.16; one clearly better (z >= 2.6)
            the ceiling. Measured on the transfer benchmark, this costs a helpful prior little
            and keeps a misleading one from wasting the budget.
        floor: Lowest trust (keeps testing the prior now and then).
        ceiling: Highest trust (keeps some fallback trials as a reference).
    """

    min_evidence: int = 5
    window: int = 40
    optimism: float = -1.0
    floor: float = 0.02
    ceiling: float = 0.95

    def __post_init__(self) -> None:
        if self.min_evidence < 1:
            raise MttuneError(f"min_evidence must be >= 1, got {self.min_evidence!r}.")
        if self.window < self.min_evidence:
            raise MttuneError(
                f"window ({self.window}) must be >= min_evidence ({self.min_evidence})."
            )
        if not 0.0 <= self.floor <= self.ceiling <= 1.0:
            raise MttuneError(
                f"need 0 <= floor <= ceiling <= 1, got floor={self.floor}, ceiling={self.ceiling}."
            )

    def assess(self, concordances: Sequence[float]) -> GuardState:
        """The verdict from the concordances of finished trials, oldest first."""
        recent = np.asarray(list(concordances)[-self.window :], dtype=np.float64)
        n = len(recent)
        if n < self.min_evidence:
            c = float(recent.mean()) if n else None
            return GuardState(self.ceiling, n, c, None, False)
        c = float(recent.mean())
        spread = float(recent.std(ddof=1)) if n > 1 else 0.0
        se = max(spread, 0.15) / math.sqrt(n)
        z = (c - 0.5) / se
        trust = float(np.clip(special.ndtr(z + self.optimism), self.floor, self.ceiling))
        return GuardState(trust, n, c, z, trust < 0.5)
