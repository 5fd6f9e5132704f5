"""Small priors for sampler tests: a 2-D bowl family over x, y in [-1, 1]."""

from __future__ import annotations

import numpy as np
import pytest

from tuner.metadataset import MetaDataset
from tuner.prior import MAMLConfig, ModelConfig, meta_train
from tuner.space import SearchSpace

SPACE = SearchSpace.from_dict(
    {
        "name": "xy-bowl",
        "objective": {"name": "value", "direction": "minimize"},
        "params": {
            "x": {"type": "float", "low": -1.0, "high": 1.0},
            "y": {"type": "float", "low": -1.0, "high": 1.0},
        },
    }
)
CENTRE = np.array([0.4, -0.3])


def bowl(x: float, y: float, centre: np.ndarray) -> float:
    return float((x - centre[0]) ** 2 + (y - centre[1]) ** 2)


def family_centre(rng: np.random.Generator) -> np.ndarray:
    return CENTRE + rng.uniform(-0.2, 0.2, size=2)


@pytest.fixture(scope="session")
def xy_prior():
    rng = np.random.default_rng(0)
    tasks = []
    for i in range(16):
        c = family_centre(rng)
        pts = rng.uniform(-1, 1, size=(50, 2))
        configs = [{"x": float(a), "y": float(b)} for a, b in pts]
        tasks.append((f"t{i}", configs, [bowl(a, b, c) for a, b in pts]))
    return _train(SPACE, tasks, hidden=32, ensemble=3, steps=300)


def _train(space, tasks, *, hidden: int, ensemble: int, steps: int):
    return meta_train(
        MetaDataset.from_tasks(space, tasks),
        model=ModelConfig(hidden=hidden, ensemble=ensemble),
        maml=MAMLConfig(max_steps=steps, val_every=50),
        seed=0,
    )


# A grid of 100 configs: two log-scale ints 1..10, a bowl in log space (issue 17).
GRID_SPACE = SearchSpace.from_dict(
    {
        "name": "grid-bowl",
        "objective": {"name": "value", "direction": "minimize"},
        "params": {
            "a": {"type": "int", "low": 1, "high": 10, "log": True},
            "b": {"type": "int", "low": 1, "high": 10, "log": True},
        },
    }
)
GRID_CENTRE = np.log([4.0, 2.5])


def grid_bowl(a: int, b: int, centre: np.ndarray) -> float:
    return float((np.log(a) - centre[0]) ** 2 + 0.7 * (np.log(b) - centre[1]) ** 2)


@pytest.fixture(scope="session")
def grid_prior():
    rng = np.random.default_rng(0)
    tasks = []
    for i in range(8):
        c = GRID_CENTRE + rng.uniform(-0.5, 0.5, size=2)
        ab = rng.integers(1, 11, size=(40, 2))  # past studies repeat configs, as TPE's do
        configs = [{"a": int(a), "b": int(b)} for a, b in ab]
        tasks.append((f"g{i}", configs, [grid_bowl(a, b, c) for a, b in ab]))
    return _train(GRID_SPACE, tasks, hidden=16, ensemble=2, steps=150)
