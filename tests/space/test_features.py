"""FeatureSpace encoding of categorical choices: by type and value, whatever the lookup path."""

import numpy as np
import pytest

from tuner.space import Feature, FeatureSpace


@pytest.fixture
def space():
    return FeatureSpace([Feature(name="c", kind="categorical", choices=("a", True, 1.0, None, 3))])


@pytest.mark.parametrize(
    ("value", "column"),
    [
        ("a", 0),
        (True, 1),
        (1.0, 2),
        (1, 2),
        (np.float64(1.0), 2),
        (3.0, 4),
        (np.int64(3), 4),
        (np.int32(1), 2),
        (np.str_("a"), 0),
        (np.True_, 1),
    ],
)
def test_a_value_sets_its_choice_column_and_numbers_compare_by_value(space, value, column):
    row = space.encode([{"c": value}])[0]
    assert row.tolist() == [1.0 if j == column else 0.0 for j in range(5)]


@pytest.mark.parametrize("value", ["b", False, 2, [1], float("nan"), np.False_, np.int64(2)])
def test_a_value_that_is_no_choice_sets_no_column(space, value):
    assert not space.encode([{"c": value}]).any()


def test_true_is_not_one_and_one_is_not_true():
    space = FeatureSpace([Feature(name="c", kind="categorical", choices=(1, True))])
    assert space.encode([{"c": True}, {"c": 1}]).tolist() == [[0.0, 1.0], [1.0, 0.0]]
