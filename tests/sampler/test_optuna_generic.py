"""Optuna's own generic sampler test cases, run against MetaPriorSampler.

Multi-objective studies are documented to go to the fallback sampler entirely.
"""

from __future__ import annotations

import pytest
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    MultiObjectiveSamplerTestCase,
    RelativeSamplerTestCase,
)

from tuner.sampler import MetaPriorSampler


class TestMetaPriorSampler(
    BasicSamplerTestCase, RelativeSamplerTestCase, MultiObjectiveSamplerTestCase
):
    @pytest.fixture
    def sampler(self, xy_prior):
        return lambda: MetaPriorSampler(xy_prior, seed=0, n_candidates=128)
