"""Stage 1: search spaces (YAML files -> Optuna distributions) and their unit-cube encoding."""

from tuner.space._encoding import Encoder
from tuner.space._schema import (
    Condition,
    Objective,
    Param,
    SearchSpace,
    SpaceError,
    load_space,
    parse_space,
)

__all__ = [
    "Condition",
    "Encoder",
    "Objective",
    "Param",
    "SearchSpace",
    "SpaceError",
    "load_space",
    "parse_space",
]
