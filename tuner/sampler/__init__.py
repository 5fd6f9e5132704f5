"""Stage 5: ``MetaPriorSampler``, the Optuna sampler that uses a meta-learned prior."""

from tuner.sampler._acquisition import (
    Acquisition,
    LowerConfidenceBound,
    expected_improvement,
    lower_confidence_bound,
)
from tuner.sampler._callback import PriorReport
from tuner.sampler._early import decide_early_strategy
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
    "decide_early_strategy",
    "expected_improvement",
    "lower_confidence_bound",
]
