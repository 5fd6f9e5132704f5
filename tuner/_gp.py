"""Gaussian-process numerics shared by the sampler and review.

Both model a function of encoded configs (the unit cube) with a zero-mean Gaussian process:
a Matern-5/2 kernel with one lengthscale per encoded dimension and a signal variance
(the amplitude), plus white observation noise. The hyperparameters are maximum a posteriori
estimates under weak log-normal priors (L-BFGS-B with the analytic gradient of
:func:`neg_log_posterior`). The priors, the bounds, the diagonal jitter and the iteration
budget are a :class:`GPSettings`; the sampler's residual GP (:mod:`tuner.sampler._gp`) and
review's noise model (:mod:`tuner.review._surrogate`) are two instances of it.

The matrices are small (hundreds of rows), where BLAS threads only add overhead: on a busy
machine OpenBLAS's spinning threads make a 200x200 Cholesky hundreds of times slower.
:func:`one_blas_thread` (and the decorator :func:`single_threaded`) is the one place that
limits them.

Pure NumPy/SciPy: no stage of :mod:`tuner` is imported, so every stage may use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from scipy import linalg, optimize
from threadpoolctl import ThreadpoolController

__all__ = [
    "GPParams",
    "GPPosterior",
    "GPSettings",
    "fit_map",
    "matern52",
    "neg_log_posterior",
    "one_blas_thread",
    "single_threaded",
]

_F = TypeVar("_F", bound=Callable[..., Any])

_SQRT5 = math.sqrt(5.0)
# The objective where the kernel matrix is not positive definite: the line search backs off.
_NOT_POSITIVE_DEFINITE = 1e10
_MIN_VARIANCE = 1e-12
_BLAS = ThreadpoolController()


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """A context in which BLAS runs on one thread (see the module docstring)."""
    return _BLAS.limit(limits=1, user_api="blas")


def single_threaded(fn: _F) -> _F:
    """Decorate ``fn`` to run in :func:`one_blas_thread`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with one_blas_thread():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class GPParams:
    """Log-hyperparameters: lengthscales ``(D,)``, amplitude and noise variances."""

    log_lengthscales: np.ndarray
    log_amplitude: float
    log_noise: float

    def vector(self) -> np.ndarray:
        """Packed for the optimiser."""
        return np.concatenate([self.log_lengthscales, [self.log_amplitude, self.log_noise]])

    @classmethod
    def from_vector(cls, v: np.ndarray) -> GPParams:
        """Inverse of :meth:`vector`."""
        return cls(np.asarray(v[:-2], dtype=np.float64), float(v[-2]), float(v[-1]))

    @classmethod
    def of(cls, dim: int, lengthscale: float, amplitude: float, noise: float) -> GPParams:
        """The same ``lengthscale`` in every dimension; arguments in natural units."""
        return cls(np.full(dim, math.log(lengthscale)), math.log(amplitude), math.log(noise))

    @property
    def amplitude(self) -> float:
        """The signal variance."""
        return math.exp(self.log_amplitude)

    @property
    def noise(self) -> float:
        """The noise variance."""
        return math.exp(self.log_noise)


@dataclasses.dataclass(frozen=True)
class GPSettings:
    """Priors, bounds, jitter and iteration budget of a fit.

    Each log-hyperparameter has a normal prior ``N(log(centre), sd^2)``; centres and bounds
    are in natural units (variances for the amplitude and the noise).

    Attributes:
        lengthscale: Prior centre of every lengthscale (unit-cube units).
        amplitude: Prior centre of the signal variance.
        noise: Prior centre of the noise variance.
        lengthscale_sd: Prior standard deviation of a log-lengthscale.
        amplitude_sd: Prior standard deviation of the log-amplitude.
        noise_sd: Prior standard deviation of the log-noise.
        lengthscale_bounds: ``(low, high)`` of every lengthscale.
        amplitude_bounds: ``(low, high)`` of the signal variance.
        noise_bounds: ``(low, high)`` of the noise variance.
        jitter: Added to the kernel matrix's diagonal besides the noise.
        max_iter: L-BFGS-B iterations per start.
    """

    lengthscale: float
    amplitude: float
    noise: float
    lengthscale_sd: float
    amplitude_sd: float
    noise_sd: float
    lengthscale_bounds: tuple[float, float]
    amplitude_bounds: tuple[float, float]
    noise_bounds: tuple[float, float]
    jitter: float
    max_iter: int

    def centre(self, dim: int) -> GPParams:
        """The priors' centre."""
        return GPParams.of(dim, self.lengthscale, self.amplitude, self.noise)

    def prior_sd(self, dim: int) -> np.ndarray:
        """The priors' standard deviations, packed like :meth:`GPParams.vector`."""
        return np.concatenate(
            [np.full(dim, self.lengthscale_sd), [self.amplitude_sd, self.noise_sd]]
        )

    def log_bounds(self, dim: int) -> list[tuple[float, float]]:
        """The bounds on the log-hyperparameters, packed like :meth:`GPParams.vector`."""
        return [_log_pair(self.lengthscale_bounds)] * dim + [
            _log_pair(self.amplitude_bounds),
            _log_pair(self.noise_bounds),
        ]


def _log_pair(pair: tuple[float, float]) -> tuple[float, float]:
    return math.log(pair[0]), math.log(pair[1])


def matern52(x1: np.ndarray, x2: np.ndarray, p: GPParams) -> tuple[np.ndarray, np.ndarray]:
    """The kernel matrix ``(n1, n2)`` and the scaled distances ``r`` behind it."""
    ls = np.exp(p.log_lengthscales)
    a, b = x1 / ls, x2 / ls
    # the operations of amp * (1 + sqrt5 r + 5/3 r^2) * exp(-sqrt5 r), in place (same values)
    r = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :]
    r -= 2.0 * a @ b.T
    np.maximum(r, 0.0, out=r)
    np.sqrt(r, out=r)
    k = np.multiply(r, _SQRT5)
    k += 1.0
    t = np.multiply(r, 5.0 / 3.0)
    t *= r
    k += t
    k *= math.exp(p.log_amplitude)
    np.multiply(r, -_SQRT5, out=t)
    k *= np.exp(t, out=t)
    return k, r


def neg_log_posterior(
    v: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    prior_mean: np.ndarray,
    prior_sd: np.ndarray,
    jitter: float,
) -> tuple[float, np.ndarray]:
    """The negative log posterior of packed log-hyperparameters ``v``, and its gradient.

    Args:
        v: Log-hyperparameters, packed like :meth:`GPParams.vector`.
        x: Inputs ``(n, D)``.
        y: Targets ``(n,)``.
        prior_mean: Means of the normal priors on ``v``.
        prior_sd: Their standard deviations.
        jitter: Added to the diagonal besides the noise.
    """
    p = GPParams.from_vector(v)
    n, dim = x.shape
    k, dist = matern52(x, x, p)
    noise = math.exp(p.log_noise)
    kn = k.copy()
    kn[np.diag_indices_from(kn)] += noise + jitter
    try:
        c, low = linalg.cho_factor(kn, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return _NOT_POSITIVE_DEFINITE, np.zeros_like(v)
    alpha = linalg.cho_solve((c, low), y, check_finite=False)
    nll = 0.5 * y @ alpha + np.log(np.diag(c)).sum() + 0.5 * n * math.log(2 * math.pi)
    inv = linalg.cho_solve((c, low), np.eye(n), check_finite=False)
    w = np.outer(alpha, alpha) - inv  # d(log lik)/dK = 0.5 * w
    grad = np.empty_like(v)
    amp = math.exp(p.log_amplitude)
    ls = np.exp(p.log_lengthscales)
    base = amp * 5.0 / 3.0 * (1.0 + _SQRT5 * dist) * np.exp(-_SQRT5 * dist)
    scaled = x / ls
    sq = (scaled * scaled).T  # (D, n)
    wb = w * base
    # sum_ij wb_ij (s_id - s_jd)^2 = 2 * (sum_i s_id^2 rowsum_i - s_d^T wb s_d), wb symmetric
    grad[:dim] = -0.5 * 2.0 * (sq @ wb.sum(1) - np.einsum("nd,nm,md->d", scaled, wb, scaled))
    grad[dim] = -0.5 * np.sum(w * k)
    grad[dim + 1] = -0.5 * np.trace(w) * noise
    # weak log-normal priors keep small data sets from producing degenerate fits
    z = (v - prior_mean) / prior_sd
    return float(nll + 0.5 * z @ z), grad + z / prior_sd


def fit_map(
    x: np.ndarray,
    y: np.ndarray,
    settings: GPSettings,
    *,
    starts: Sequence[GPParams] = (),
) -> GPParams:
    """MAP hyperparameters for targets ``y`` at ``x``: the best fit over ``starts``.

    Args:
        x: Inputs ``(n, D)``.
        y: Targets ``(n,)``.
        settings: Priors, bounds, jitter and iterations.
        starts: Where L-BFGS-B starts (default: the priors' centre); the lowest objective
            wins, the first of equals.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    dim = x.shape[1]
    centre = settings.centre(dim)
    args = (x, y, centre.vector(), settings.prior_sd(dim), settings.jitter)
    best: optimize.OptimizeResult | None = None
    for start in starts or (centre,):
        res = optimize.minimize(
            neg_log_posterior,
            start.vector(),
            args=args,
            jac=True,
            method="L-BFGS-B",
            bounds=settings.log_bounds(dim),
            options={"maxiter": settings.max_iter},
        )
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    return GPParams.from_vector(best.x)


class GPPosterior:
    """The posterior of the latent function given targets ``y`` at ``x``.

    Args:
        x: Inputs ``(n, D)``.
        y: Targets ``(n,)``.
        params: Hyperparameters.
        jitter: Added to the diagonal besides the noise.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, params: GPParams, *, jitter: float) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        self.params = params
        self.jitter = jitter
        k, _ = matern52(self.x, self.x, params)
        k[np.diag_indices_from(k)] += math.exp(params.log_noise) + jitter
        self.chol = linalg.cho_factor(k, lower=True, check_finite=False)
        self.alpha = linalg.cho_solve(self.chol, self.y, check_finite=False)

    def mean(self, xs: np.ndarray) -> np.ndarray:
        """Posterior mean at ``xs``."""
        ks, _ = matern52(np.asarray(xs, dtype=np.float64), self.x, self.params)
        return ks @ self.alpha

    def predict(self, xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and (marginal) variance at ``xc``."""
        ks = matern52(np.asarray(xc, dtype=np.float64), self.x, self.params)[0]
        mean = ks @ self.alpha
        v = linalg.solve_triangular(self.chol[0], ks.T, lower=True, check_finite=False)
        v *= v  # in place: many candidates make each new array costly
        var = math.exp(self.params.log_amplitude) - v.sum(0)
        return mean, np.maximum(var, _MIN_VARIANCE)

    def joint(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joint posterior at ``xs``: mean ``(m,)`` and covariance ``(m, m)``."""
        xs = np.asarray(xs, dtype=np.float64)
        ks, _ = matern52(xs, self.x, self.params)
        v = linalg.solve_triangular(self.chol[0], ks.T, lower=True, check_finite=False)
        cov = matern52(xs, xs, self.params)[0] - v.T @ v
        return ks @ self.alpha, 0.5 * (cov + cov.T)

    def leave_one_out(self) -> tuple[np.ndarray, np.ndarray]:
        """Leave-one-out posterior of the latent function at every conditioning point.

        Entry ``i`` is the posterior mean and variance of ``f(x_i)`` given every target but
        ``y_i`` (same hyperparameters), all from one inverse of the kernel matrix ``K``:
        ``mean_i = y_i - alpha_i / [K^-1]_ii``, ``var_i = 1 / [K^-1]_ii - noise - jitter``
        (Rasmussen & Williams 2006, eq. 5.12, less the noise).

        Returns:
            Means ``(n,)`` and variances ``(n,)``.
        """
        residual, predictive = self.loo_residuals()
        var = predictive - math.exp(self.params.log_noise) - self.jitter
        return self.y - residual, np.maximum(var, _MIN_VARIANCE)

    def loo_residuals(self) -> tuple[np.ndarray, np.ndarray]:
        """Leave-one-out residuals of the targets and their predictive variances.

        Entry ``i`` is ``y_i`` minus its prediction from every other target (same
        hyperparameters), and the variance of that difference under the model (noise
        included), from one inverse of the kernel matrix ``K`` (noise included):
        ``r_i = [K^-1 y]_i / [K^-1]_ii``, ``var_i = 1 / [K^-1]_ii`` (Rasmussen & Williams
        2006, eq. 5.12). Under the model ``r_i / sqrt(var_i)`` is standard normal.

        Returns:
            Residuals ``(n,)`` and variances ``(n,)``.
        """
        inv = linalg.cho_solve(self.chol, np.eye(len(self.y)), check_finite=False)
        d = np.diag(inv)
        return self.alpha / d, 1.0 / d
