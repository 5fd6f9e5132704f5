"""NegativeTransferGuard: trust from the prior's prequential evidence."""

from __future__ import annotations

import math
import warnings

import pytest

from tuner import MttuneError
from tuner.sampler import NegativeTransferGuard


def test_trust_follows_the_evidence():
    guard = NegativeTransferGuard()
    assert guard.assess([]).trust == guard.ceiling  # no evidence yet: the prior's benefit
    good = guard.assess([0.9] * 10)
    chance = guard.assess([0.4, 0.6] * 5)
    bad = guard.assess([0.1] * 10)
    assert good.trust == guard.ceiling and not good.fired
    assert bad.trust == guard.floor and bad.fired
    assert bad.trust < chance.trust < good.trust


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_a_single_piece_of_evidence_gives_a_finite_verdict(value):
    """``min_evidence=1`` is allowed: one trial's evidence has no spread, not a NaN one."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = NegativeTransferGuard(min_evidence=1).assess([value])
    assert math.isfinite(state.trust) and math.isfinite(state.z)
    assert state.fired == (value < 0.5 + 0.15)  # needs z >= 1 to keep half the trials


def test_only_the_window_counts():
    guard = NegativeTransferGuard(window=5)
    assert guard.assess([0.0] * 20 + [1.0] * 5).trust == guard.ceiling


def test_bad_settings_are_clear_errors():
    with pytest.raises(MttuneError, match="min_evidence must be >= 1, got 0"):
        NegativeTransferGuard(min_evidence=0)
    with pytest.raises(MttuneError, match=r"window \(3\) must be >= min_evidence \(5\)"):
        NegativeTransferGuard(window=3)
    with pytest.raises(MttuneError, match="need 0 <= floor <= ceiling <= 1"):
        NegativeTransferGuard(floor=0.6, ceiling=0.5)
