"""A synthetic task family with a known answer, and a small prior trained on it once."""

from __future__ import annotations

import numpy as np
import pytest

from tuner.metadataset import MetaDataset
from tuner.prior import MAMLConfig, ModelConfig, meta_train
from tuner.space import SearchSpace

SPACE = SearchSpace.from_dict(
    {
        "name": "bowl",
        "objective": {"name": "loss", "direction": "minimize"},
        "params": {
            "a": {"type": "float", "low": 0.0, "high": 1.0},
            "b": {"type": "float", "low": 0.0, "high": 1.0},
        },
    }
)
# Every task is a bowl (a - ca)^2 + (b - cb)^2 whose centre varies around (0.3, 0.7).
CENTRE = np.array([0.3, 0.7])
SMALL_MODEL = ModelConfig(hidden=32, layers=2, ensemble=3)
SMALL_MAML = MAMLConfig(max_steps=400, val_every=50, patience=4)


def bowl_task(rng: np.random.Generator, n: int, centre: np.ndarray | None = None):
    c = CENTRE + rng.uniform(-0.15, 0.15, size=2) if centre is None else centre
    x = rng.random((n, 2))
    y = ((x - c) ** 2).sum(axis=1)
    return c, [{"a": float(p[0]), "b": float(p[1])} for p in x], y


def bowl_family(n_tasks: int, n: int, seed: int) -> MetaDataset:
    rng = np.random.default_rng(seed)
    tasks = []
    for i in range(n_tasks):
        _, configs, y = bowl_task(rng, n)
        tasks.append((f"bowl-{i}", configs, y))
    return MetaDataset.from_tasks(SPACE, tasks)


@pytest.fixture(scope="session")
def bowl_prior():
    return meta_train(bowl_family(24, 60, seed=0), model=SMALL_MODEL, maml=SMALL_MAML, seed=0)
