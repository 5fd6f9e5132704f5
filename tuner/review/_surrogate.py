"""The noise model of ``mttune review``: a Gaussian process fitted to a study's trials.

Review needs, for configs that were run once, how far their observed value may be from their
*true* (noise-free) value. It fits ``y = f(x) + e`` with ``f`` a Gaussian process (Matern-5/2,
one lengthscale per encoded dimension) and ``e ~ N(0, noise^2)``. The posterior of ``f`` at a
config pools the config's own run with its neighbours': a lucky draw far below its
neighbours is pulled back up, and the interval is as wide as the fit is unsure.

Hyperparameters (lengthscales, signal amplitude, noise) are maximum a posteriori estimates
under weak log-normal priors (L-BFGS, analytic gradients), fitted on at most 200 trials;
the posterior conditions on at most 600 (the best half and a random rest), so large studies
review in seconds. Values are standardised first; values worse than ``Q3 + 3 IQR`` (diverged
runs) are capped, so that they do not distort the fit of the good region.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from scipy import linalg, optimize

__all__ = ["GaussianProcess", "fit_gaussian_process", "spread_subset"]

_F = TypeVar("_F", bound=Callable[..., Any])

_SQRT5 = math.sqrt(5.0)
_JITTER = 1e-9
_FIT_POINTS = 200
_POSTERIOR_POINTS = 600
# Weak priors on the log-hyperparameters (standardised targets, unit-cube inputs).
_PRIOR_LS = (math.log(0.5), 1.5)
_PRIOR_AMP = (0.0, 1.5)
_PRIOR_NOISE = (math.log(0.1), 2.5)
_BOUNDS_LS = (math.log(0.01), math.log(50.0))
_BOUNDS_AMP = (math.log(1e-4), math.log(1e3))
_BOUNDS_NOISE = (math.log(1e-6), math.log(10.0))


def single_threaded(fn: _F) -> _F:
    """Run ``fn`` with one BLAS thread.

    The matrices here are small (<= 600 rows): threads only add overhead, and on a busy
    machine OpenBLAS's spinning threads make a 200x200 Cholesky hundreds of times slower.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _one_thread():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _one_thread() -> contextlib.AbstractContextManager[Any]:
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _kernel(a: np.ndarray, b: np.ndarray, ls: np.ndarray, amp: float) -> np.ndarray:
    sa, sb = a / ls, b / ls
    d2 = (sa * sa).sum(1)[:, None] + (sb * sb).sum(1)[None, :] - 2.0 * sa @ sb.T
    r = np.sqrt(np.maximum(d2, 0.0))
    return amp * (1.0 + _SQRT5 * r + 5.0 / 3.0 * r * r) * np.exp(-_SQRT5 * r)


def _objective(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Negative log posterior of the log-hyperparameters, and its gradient."""
    n, dim = x.shape
    ls = np.exp(theta[:dim])
    amp, noise = math.exp(theta[dim]), math.exp(theta[dim + 1])
    s = x / ls
    d2 = (s * s).sum(1)[:, None] + (s * s).sum(1)[None, :] - 2.0 * s @ s.T
    r = np.sqrt(np.maximum(d2, 0.0))
    e = np.exp(-_SQRT5 * r)
    kf = amp * (1.0 + _SQRT5 * r + 5.0 / 3.0 * r * r) * e
    k = kf.copy()
    k[np.diag_indices(n)] += noise + _JITTER
    try:
        chol = linalg.cho_factor(k, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return 1e25, np.zeros_like(theta)
    alpha = linalg.cho_solve(chol, y, check_finite=False)
    nll = 0.5 * y @ alpha + np.log(np.diag(chol[0])).sum() + 0.5 * n * math.log(2 * math.pi)
    w = np.outer(alpha, alpha) - linalg.cho_solve(chol, np.eye(n), check_finite=False)
    grad = np.empty_like(theta)
    wb = w * (amp * 5.0 / 3.0 * (1.0 + _SQRT5 * r) * e)
    sq = s * s
    # d nll / d log ls_d = -1/2 sum_ij w_ij b_ij (s_id - s_jd)^2
    grad[:dim] = -(sq.T @ wb.sum(1) - np.einsum("id,ij,jd->d", s, wb, s))
    grad[dim] = -0.5 * float(np.sum(w * kf))
    grad[dim + 1] = -0.5 * float(np.trace(w)) * noise
    mean = np.concatenate([np.full(dim, _PRIOR_LS[0]), [_PRIOR_AMP[0], _PRIOR_NOISE[0]]])
    sd = np.concatenate([np.full(dim, _PRIOR_LS[1]), [_PRIOR_AMP[1], _PRIOR_NOISE[1]]])
    z = (theta - mean) / sd
    return float(nll + 0.5 * z @ z), grad + z / sd


@dataclasses.dataclass
class GaussianProcess:
    """A fitted GP: predicts the noise-free objective (in the oriented, lower-better units).

    Attributes:
        lengthscales: Per encoded dimension (unit cube).
        noise_sd: Standard deviation of one run's noise, in objective units.
        n_fit: Trials the hyperparameters were fitted on.
        n_posterior: Trials the posterior conditions on.
        capped: Trials whose value was capped as an outlier.
    """

    lengthscales: np.ndarray
    amplitude: float
    noise_var: float
    x: np.ndarray
    alpha: np.ndarray
    chol: np.ndarray
    center: float
    scale: float
    n_fit: int
    n_posterior: int
    capped: int

    @property
    def noise_sd(self) -> float:
        """One run's noise standard deviation (objective units)."""
        return math.sqrt(self.noise_var) * self.scale

    @single_threaded
    def mean(self, xs: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Posterior mean of the noise-free objective at ``xs`` (oriented units)."""
        out = np.empty(len(xs))
        for lo in range(0, len(xs), chunk):
            ks = _kernel(xs[lo : lo + chunk], self.x, self.lengthscales, self.amplitude)
            out[lo : lo + chunk] = ks @ self.alpha
        return self.center + self.scale * out

    @single_threaded
    def posterior(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joint posterior of the noise-free objective at ``xs``: mean ``(m,)``, cov ``(m, m)``."""
        ks = _kernel(xs, self.x, self.lengthscales, self.amplitude)
        v = linalg.solve_triangular(self.chol, ks.T, lower=True, check_finite=False)
        cov = _kernel(xs, xs, self.lengthscales, self.amplitude) - v.T @ v
        cov = 0.5 * (cov + cov.T)
        return self.center + self.scale * (ks @ self.alpha), self.scale**2 * cov

    def describe(self) -> str:
        """One line for reports."""
        return (
            f"Gaussian process (Matern-5/2, per-dimension lengthscales, white noise) fitted "
            f"to {self.n_fit} trials, conditioned on {self.n_posterior}"
        )


def spread_subset(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``k`` points: the best half and a random sample of the rest."""
    if len(y) <= k:
        return np.arange(len(y))
    order = np.argsort(y, kind="stable")
    best = order[: k // 2]
    rest = rng.choice(order[k // 2 :], k - len(best), replace=False)
    return np.sort(np.concatenate([best, rest]))


@single_threaded
def fit_gaussian_process(x: np.ndarray, y: np.ndarray, *, seed: int = 0) -> GaussianProcess | None:
    """Fit the GP to encoded configs ``x`` and oriented (lower-better) values ``y``.

    Returns:
        The fitted process, or ``None`` when the values do not vary (nothing to model).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    q1, q3 = np.percentile(y, [25, 75])
    cap = q3 + 3.0 * (q3 - q1) if q3 > q1 else math.inf
    capped = int((y > cap).sum())
    y = np.minimum(y, cap)
    center = float(np.mean(y))
    scale = float(np.std(y))
    if not math.isfinite(scale) or scale <= 0.0:
        return None
    z = (y - center) / scale
    rng = np.random.default_rng(seed)
    dim = x.shape[1]
    fit_idx = spread_subset(z, _FIT_POINTS, rng)
    bounds = [_BOUNDS_LS] * dim + [_BOUNDS_AMP, _BOUNDS_NOISE]
    best: optimize.OptimizeResult | None = None
    for ls0, amp0, noise0 in ((0.5, 1.0, 0.1), (1.5, 2.0, 0.5), (0.2, 1.0, 0.01)):
        start = np.concatenate([np.full(dim, math.log(ls0)), [math.log(amp0), math.log(noise0)]])
        res = optimize.minimize(
            _objective,
            start,
            args=(x[fit_idx], z[fit_idx]),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 100},
        )
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    theta = best.x
    ls = np.exp(theta[:dim])
    amp, noise = math.exp(theta[dim]), math.exp(theta[dim + 1])
    post_idx = spread_subset(z, _POSTERIOR_POINTS, rng)
    xp, zp = x[post_idx], z[post_idx]
    k = _kernel(xp, xp, ls, amp)
    k[np.diag_indices(len(xp))] += noise + _JITTER
    chol = linalg.cholesky(k, lower=True, check_finite=False)
    alpha = linalg.cho_solve((chol, True), zp, check_finite=False)
    return GaussianProcess(
        lengthscales=ls,
        amplitude=amp,
        noise_var=noise,
        x=xp,
        alpha=alpha,
        chol=chol,
        center=center,
        scale=scale,
        n_fit=len(fit_idx),
        n_posterior=len(post_idx),
        capped=capped,
    )
