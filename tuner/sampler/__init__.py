"""Stage 5: ``MetaPriorSampler``, the Optuna sampler that uses a meta-learned prior."""

from tuner.sampler._acquisition import (
    Acquisition,
    LowerConfidenceBound,
    expected_improvement,
    lower_confidence_bound,
)
from tuner.sampler._callback import PriorReport
from tuner.sampler._guard import GuardState, NegativeTransferGuard, concordance
from tuner.sampler._sampler import MetaPriorSampler

__all__ = [
    "Acquisition",
    "GuardState",
    "LowerConfidenceBound",
    "MetaPriorSampler",
    "NegativeTransferGuard",
    "PriorReport",
    "concordance",
    "expected_improvement",
    "lower_confidence_bound",
]
