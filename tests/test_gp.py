"""The shared GP numerics (tuner._gp) under the sampler's and review's settings."""

from __future__ import annotations

import ast

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from tests.conftest import REPO
from tuner._gp import (
    GPParams,
    GPPosterior,
    fit_map,
    neg_log_posterior,
    one_blas_thread,
    single_threaded,
)
from tuner.review._surrogate import SETTINGS as REVIEW
from tuner.sampler._gp import SETTINGS as SAMPLER

SETTINGS = {"sampler": SAMPLER, "review": REVIEW}


def _data(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, dim))
    y = np.sin(3 * x).sum(1) + 0.1 * rng.standard_normal(n)
    return x, y - y.mean()


def _objective(v, x, y, settings):
    dim = x.shape[1]
    prior_mean = settings.centre(dim).vector()
    return neg_log_posterior(v, x, y, prior_mean, settings.prior_sd(dim), settings.jitter)


@pytest.mark.parametrize("which", sorted(SETTINGS))
@pytest.mark.parametrize(("n", "dim", "seed"), [(5, 1, 0), (30, 3, 1), (80, 6, 2)])
def test_the_gradient_matches_central_finite_differences(which, n, dim, seed):
    settings = SETTINGS[which]
    x, y = _data(n, dim, seed)
    rng = np.random.default_rng(seed + 100)
    lows, highs = np.array(settings.log_bounds(dim)).T
    for _ in range(3):  # points inside the bounds, away from the prior's centre
        v = lows + (highs - lows) * rng.uniform(0.3, 0.7, size=dim + 2)
        _, grad = _objective(v, x, y, settings)
        h = 1e-5
        numeric = np.empty_like(v)
        for i in range(len(v)):
            e = np.zeros_like(v)
            e[i] = h
            numeric[i] = (
                _objective(v + e, x, y, settings)[0] - _objective(v - e, x, y, settings)[0]
            ) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-5 * np.abs(numeric).max())


@pytest.mark.parametrize("which", sorted(SETTINGS))
def test_the_fit_lowers_the_objective_and_stays_inside_the_bounds(which):
    settings = SETTINGS[which]
    x, y = _data(40, 2, 3)
    centre = settings.centre(2)
    fitted = fit_map(x, y, settings)
    assert (
        _objective(fitted.vector(), x, y, settings)[0]
        < _objective(centre.vector(), x, y, settings)[0]
    )
    for value, (low, high) in zip(fitted.vector(), settings.log_bounds(2), strict=True):
        assert low - 1e-12 <= value <= high + 1e-12


def test_the_best_of_several_starts_wins():
    x, y = _data(40, 2, 4)
    starts = [GPParams.of(2, 0.5, 1.0, 0.1), GPParams.of(2, 0.05, 1e-3, 5.0)]
    alone = [fit_map(x, y, REVIEW, starts=[s]) for s in starts]
    both = fit_map(x, y, REVIEW, starts=starts)
    values = [_objective(p.vector(), x, y, REVIEW)[0] for p in alone]
    assert np.array_equal(both.vector(), alone[int(np.argmin(values))].vector())


def test_the_posterior_interpolates_with_little_noise_and_agrees_with_its_joint_form():
    x, y = _data(25, 2, 5)
    params = GPParams.of(2, 0.3, 1.0, 1e-8)
    post = GPPosterior(x, y, params, jitter=1e-10)
    mean, var = post.predict(x)
    np.testing.assert_allclose(mean, y, atol=1e-4)
    assert np.all(var < 1e-4)
    far = np.full((1, 2), 50.0)  # far from every point: the prior (mean 0, the amplitude)
    mean_far, var_far = post.predict(far)
    assert abs(mean_far[0]) < 1e-12 and var_far[0] == pytest.approx(params.amplitude)
    xs = np.random.default_rng(6).random((7, 2))
    joint_mean, cov = post.joint(xs)
    m, v = post.predict(xs)
    np.testing.assert_allclose(joint_mean, m, rtol=1e-12)
    np.testing.assert_allclose(np.diag(cov), v, rtol=1e-9)
    assert np.array_equal(cov, cov.T)
    np.testing.assert_allclose(post.mean(xs), m, rtol=1e-12)


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.mark.parametrize(("n", "dim", "seed", "noise"), [(6, 1, 0, 0.01), (40, 3, 1, 0.3)])
def test_leave_one_out_equals_refitting_without_each_point(n, dim, seed, noise):
    x, y = _data(n, dim, seed)
    params = GPParams.of(dim, 0.4, 1.3, noise)
    post = GPPosterior(x, y, params, jitter=1e-9)
    mean, var = post.leave_one_out()
    residual, predictive = post.loo_residuals()
    for i in range(n):
        keep = np.arange(n) != i
        m, v = GPPosterior(x[keep], y[keep], params, jitter=1e-9).predict(x[i : i + 1])
        assert mean[i] == pytest.approx(m[0], abs=1e-7)
        assert var[i] == pytest.approx(v[0], rel=1e-5, abs=1e-9)
        # a new run there: the latent variance plus the noise
        assert residual[i] == pytest.approx(y[i] - m[0], abs=1e-7)
        assert predictive[i] == pytest.approx(v[0] + noise + 1e-9, rel=1e-5)
    # without its own target a point's posterior is wider than with it
    assert np.all(var >= GPPosterior(x, y, params, jitter=1e-9).predict(x)[1] - 1e-12)


def test_blas_runs_single_threaded_inside_and_as_before_after():
    @single_threaded
    def threads() -> list[int]:
        return _blas_threads()

    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        assert before and all(n == 2 for n in before)
        with one_blas_thread():
            assert all(n == 1 for n in _blas_threads())
        assert all(n == 1 for n in threads())
        assert _blas_threads() == before


def test_the_numerics_import_no_stage_of_tuner():
    """tuner._gp is a leaf: the sampler (stage 5) and review (stage 7) both import it."""
    tree = ast.parse((REPO / "tuner" / "_gp.py").read_text())
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    standard = {"__future__", "collections", "contextlib", "dataclasses", "functools", "math"}
    allowed = standard | {"typing", "numpy", "scipy", "threadpoolctl"}
    assert {m.split(".")[0] for m in modules} <= allowed
