"""The target map: rank-normalised, relative to the support set (one owner for all users)."""

from __future__ import annotations

import numpy as np
import torch
from torch.func import vmap

from tuner.metadataset import observation_targets, rank_normalize, relative_to_support


def test_targets_are_shifted_by_the_mean_of_the_support_points_only():
    z = np.array([1.0, 3.0, -2.0, 10.0])
    support = np.array([1.0, 1.0, 0.0, 0.0])
    assert relative_to_support(z, support).tolist() == [-1.0, 1.0, -4.0, 8.0]
    assert relative_to_support(z, np.zeros(4)).tolist() == z.tolist()  # zero-shot: unchanged


def test_numpy_and_torch_under_vmap_agree_per_episode():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 30))
    support = (rng.random((6, 30)) < 0.3).astype(np.float64)
    support[0] = 0.0  # an episode without support points
    expected = np.stack([relative_to_support(z[i], support[i]) for i in range(6)])
    batched = vmap(relative_to_support)(torch.as_tensor(z), torch.as_tensor(support))
    np.testing.assert_allclose(batched.numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(expected[0], z[0])
    assert np.allclose((expected * support).sum(1)[1:], 0.0)  # the support's mean is 0


def test_observation_targets_are_the_rank_transform_relative_to_all_trials():
    values = [0.3, 0.1, 0.2, 0.9, 0.5]
    t = observation_targets(values, "minimize")
    z = rank_normalize(np.array(values))
    np.testing.assert_array_equal(t, z - z.mean())
    np.testing.assert_allclose(observation_targets(values, "maximize"), -t, atol=1e-15)
    assert observation_targets([], "minimize").shape == (0,)
