"""Stage 1: search spaces (YAML files -> Optuna distributions) and their unit-cube encoding."""

from tuner.space._encoding import Encoder
from tuner.space._features import Feature, FeatureSpace
from tuner.space._schema import (
    Condition,
    Objective,
    Param,
    SearchSpace,
    SpaceError,
    load_space,
    parse_space,
)
from tuner.space._union import union_spaces

__all__ = [
    "Condition",
    "Encoder",
    "Feature",
    "FeatureSpace",
    "Objective",
    "Param",
    "SearchSpace",
    "SpaceError",
    "load_space",
    "parse_space",
    "union_spaces",
]
