"""A small Gaussian process for what the adapted prior leaves unexplained.

The sampler models a study's targets as ``adapted_prior(x) + g(x)`` with ``g`` a zero-mean GP
(Matern-5/2, one lengthscale per encoded dimension, plus observation noise). The prior brings
what past studies know (early on it is almost the whole model); the GP adds the local detail
of *this* study as its trials accumulate, so late in a search mttune behaves like a
Bayesian-optimisation sampler whose mean function was meta-learned.

Hyperparameters are fitted by maximising the marginal likelihood plus weak log-normal priors
(L-BFGS with analytic gradients).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import linalg, optimize

__all__ = ["GPParams", "ResidualGP", "fit_gp"]

_SQRT5 = math.sqrt(5.0)
_JITTER = 1e-8


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
    def default(cls, dim: int, amplitude: float = 0.5) -> GPParams:
        """Lengthscale 0.5 of the unit cube per dimension, little noise."""
        return cls(np.full(dim, math.log(0.5)), math.log(amplitude), math.log(1e-3))


def _matern(x1: np.ndarray, x2: np.ndarray, p: GPParams) -> tuple[np.ndarray, np.ndarray]:
    ls = np.exp(p.log_lengthscales)
    a, b = x1 / ls, x2 / ls
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    r = np.sqrt(np.maximum(d2, 0.0))
    e = np.exp(-_SQRT5 * r)
    k = math.exp(p.log_amplitude) * (1.0 + _SQRT5 * r + 5.0 / 3.0 * r * r) * e
    return k, r


class ResidualGP:
    """GP posterior of the residuals ``r = t - prior_mean`` at observed points ``x``."""

    def __init__(self, x: np.ndarray, r: np.ndarray, params: GPParams) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.params = params
        k, _ = _matern(self.x, self.x, params)
        k[np.diag_indices_from(k)] += math.exp(params.log_noise) + _JITTER
        self.chol = linalg.cho_factor(k, lower=True, check_finite=False)
        self.alpha = linalg.cho_solve(
            self.chol, np.asarray(r, dtype=np.float64), check_finite=False
        )

    def predict(self, xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance of the latent residual at ``xc``."""
        ks, _ = _matern(np.asarray(xc, dtype=np.float64), self.x, self.params)
        mean = ks @ self.alpha
        v = linalg.solve_triangular(self.chol[0], ks.T, lower=True, check_finite=False)
        var = math.exp(self.params.log_amplitude) - (v * v).sum(0)
        return mean, np.maximum(var, 1e-12)


def _neg_log_posterior(
    v: np.ndarray, x: np.ndarray, r: np.ndarray, prior_mean: np.ndarray, prior_sd: np.ndarray
) -> tuple[float, np.ndarray]:
    p = GPParams.from_vector(v)
    n, dim = x.shape
    k, dist = _matern(x, x, p)
    noise = math.exp(p.log_noise)
    kn = k.copy()
    kn[np.diag_indices_from(kn)] += noise + _JITTER
    try:
        c, low = linalg.cho_factor(kn, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return 1e10, np.zeros_like(v)
    alpha = linalg.cho_solve((c, low), r, check_finite=False)
    nll = 0.5 * r @ alpha + np.log(np.diag(c)).sum() + 0.5 * n * math.log(2 * math.pi)
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


def fit_gp(
    x: np.ndarray,
    r: np.ndarray,
    *,
    amplitude: float = 0.5,
    init: GPParams | None = None,
    max_iter: int = 40,
) -> GPParams:
    """MAP hyperparameters for residuals ``r`` at ``x``.

    The amplitude's prior is centred on ``amplitude`` (the prior's unexplained variance).
    """
    x = np.asarray(x, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    dim = x.shape[1]
    centre = GPParams.default(dim, amplitude)
    prior_mean = centre.vector()
    prior_sd = np.concatenate([np.full(dim, 1.0), [1.0, 2.0]])
    start = (init or centre).vector()
    bounds = [(math.log(0.01), math.log(20.0))] * dim + [
        (math.log(1e-4), math.log(50.0)),
        (math.log(1e-6), math.log(1.0)),
    ]
    res = optimize.minimize(
        _neg_log_posterior,
        start,
        args=(x, r, prior_mean, prior_sd),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": max_iter},
    )
    return GPParams.from_vector(res.x)
