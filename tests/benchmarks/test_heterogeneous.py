"""The heterogeneous-history benchmark's perturbed spaces: what it claims to build."""

from __future__ import annotations

import math

import pytest

from benchmarks.heterogeneous import history_space, target_space, with_fixed
from tests.conftest import REPO
from tuner.space import load_space


@pytest.fixture(scope="module")
def xgb_space():
    return load_space(REPO / "search_spaces" / "rbv2_xgboost.yaml")


@pytest.mark.parametrize("i", range(8))
def test_a_history_space_cuts_fixes_and_drops_a_log_flag(xgb_space, i):
    space, fixed = history_space(xgb_space, i)
    assert 1 <= len(fixed) <= 2 and not set(fixed) & set(space.params)
    assert set(space.params) | set(fixed) == set(xgb_space.params)
    was_log = [n for n in space.params if getattr(xgb_space.params[n].distribution, "log", 0)]
    assert sum(not space.params[n].distribution.log for n in was_log) == 1
    for name, p in space.params.items():
        full, cut = xgb_space.params[name].distribution, p.distribution
        if hasattr(cut, "low"):
            assert full.low <= cut.low < cut.high <= full.high, name
            log = full.log
            width = (lambda d: math.log(d.high / d.low)) if log else (lambda d: d.high - d.low)
            # ints round to the grid, so the 40 % floor holds up to one step
            assert width(cut) >= 0.4 * width(full) - (1.01 if full.step == 1 and not log else 0.3)
    assert history_space(xgb_space, i) == (space, fixed)  # seeded


def test_target_spaces_differ_from_the_history_and_full_is_untouched(xgb_space):
    assert target_space(xgb_space, 0, "full") == (xgb_space, {})
    space, fixed = target_space(xgb_space, 0, "perturbed")
    assert len(fixed) == 1 and space != history_space(xgb_space, 0)[0]


def test_fixed_values_reach_the_objective_only_where_their_condition_holds(xgb_space):
    fixed = {"eta": 0.03, "lambda": 1.0}
    linear = with_fixed(xgb_space, {"booster": "gblinear"}, fixed)
    assert linear == {"booster": "gblinear", "lambda": 1.0}
    tree = with_fixed(xgb_space, {"booster": "gbtree"}, fixed)
    assert tree == {"booster": "gbtree", "eta": 0.03, "lambda": 1.0}
