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
    return meta_train(
        MetaDataset.from_tasks(SPACE, tasks),
        model=ModelConfig(hidden=32, ensemble=3),
        maml=MAMLConfig(max_steps=300, val_every=50),
        seed=0,
    )
