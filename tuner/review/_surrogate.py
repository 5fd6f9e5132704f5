"""The noise model of ``mttune review``: a Gaussian process fitted to a study's trials.

Review needs, for configs that were run once, how far their observed value may be from their
*true* (noise-free) value. It fits ``y = f(x) + e`` with ``f`` a Gaussian process (Matern-5/2,
one lengthscale per encoded dimension) and ``e ~ N(0, noise^2)``. The posterior of ``f`` at a
config pools the config's own run with its neighbours': a lucky draw far below its
neighbours is pulled back up, and the interval is as wide as the fit is unsure.

Hyperparameters (lengthscales, signal amplitude, noise) are maximum a posteriori estimates
under weak log-normal priors (L-BFGS, analytic gradients; the numerics are :mod:`tuner._gp`,
with :data:`SETTINGS`), fitted on at most 200 trials; the posterior conditions on at most
600 (the best half and a random rest), so large studies review in seconds. Values are
standardised first; values worse than ``Q3 + 3 IQR`` (diverged runs) are capped, so that
they do not distort the fit of the good region.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

from tuner._gp import GPParams, GPPosterior, GPSettings, fit_map, single_threaded

__all__ = ["SETTINGS", "GaussianProcess", "fit_gaussian_process", "rank_luck", "spread_subset"]

_FIT_POINTS = 200
_POSTERIOR_POINTS = 600
# Weak priors on the hyperparameters (standardised targets, unit-cube inputs).
SETTINGS = GPSettings(
    lengthscale=0.5,
    amplitude=1.0,
    noise=0.1,
    lengthscale_sd=1.5,
    amplitude_sd=1.5,
    noise_sd=2.5,
    lengthscale_bounds=(0.01, 50.0),
    amplitude_bounds=(1e-4, 1e3),
    noise_bounds=(1e-6, 10.0),
    jitter=1e-9,
    max_iter=100,
)
# (lengthscale, amplitude, noise) of the L-BFGS-B starts; the best fit wins.
_STARTS = ((0.5, 1.0, 0.1), (1.5, 2.0, 0.5), (0.2, 1.0, 0.01))


@dataclasses.dataclass
class GaussianProcess:
    """A fitted GP: predicts the noise-free objective (in the oriented, lower-better units).

    Attributes:
        process: The posterior of the standardised objective ``(y - center) / scale``.
        center: The standardisation's shift (objective units).
        scale: The standardisation's scale (objective units).
        n_fit: Trials the hyperparameters were fitted on.
        n_posterior: Trials the posterior conditions on.
        capped: Trials whose value was capped as an outlier.
    """

    process: GPPosterior
    center: float
    scale: float
    n_fit: int
    n_posterior: int
    capped: int

    @property
    def lengthscales(self) -> np.ndarray:
        """Per encoded dimension (unit cube)."""
        return np.exp(self.process.params.log_lengthscales)

    @property
    def noise_sd(self) -> float:
        """One run's noise standard deviation (objective units)."""
        return math.sqrt(self.process.params.noise) * self.scale

    @single_threaded
    def mean(self, xs: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Posterior mean of the noise-free objective at ``xs`` (oriented units)."""
        out = np.empty(len(xs))
        for lo in range(0, len(xs), chunk):
            out[lo : lo + chunk] = self.process.mean(xs[lo : lo + chunk])
        return self.center + self.scale * out

    @single_threaded
    def posterior(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joint posterior of the noise-free objective at ``xs``: mean ``(m,)``, cov ``(m, m)``."""
        mean, cov = self.process.joint(xs)
        return self.center + self.scale * mean, self.scale**2 * cov

    @single_threaded
    def selection_aware(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The posterior at ``xs`` with each config's own run debiased for its rank.

        A config among the conditioning points was made a candidate by its own noisy run, so
        that run is likely a lucky draw (the winner's curse). Its posterior mean is a blend
        ``(1 - w) * loo + w * y`` of the leave-one-out prediction from the other runs
        (:meth:`~tuner._gp.GPPosterior.leave_one_out`) and its own run ``y``, with
        ``w = var_loo / (var_loo + noise)``. Here ``y`` is first moved, in the pessimistic
        direction, by the luck expected of the run that ranks ``r``-th of the ``n`` runs when
        the true values vary as the study's values do: regression to the mean,
        ``noise / var(y) * sd(y) * |Phi^-1((r - 3/8) / (n + 1/4))|`` (Blom's approximation
        of the ``r``-th normal order statistic; nothing for the worse half). Configs not
        conditioned on (or run more than once) keep the plain posterior; the covariance is
        the joint posterior's.

        Returns:
            Mean ``(m,)`` and covariance ``(m, m)`` in objective units.
        """
        xs = np.asarray(xs, dtype=np.float64)
        mean, cov = self.process.joint(xs)
        _, loo_var = self.process.leave_one_out()
        noise = self.process.params.noise
        luck = rank_luck(self.process.y) * noise  # standardised values: var(y) = 1
        for j, rows in enumerate(_own_rows(self.process.x, xs)):
            if len(rows) == 1:
                i = rows[0]
                mean[j] += loo_var[i] / (loo_var[i] + noise + self.process.jitter) * luck[i]
        return self.center + self.scale * mean, self.scale**2 * cov

    def describe(self) -> str:
        """One line for reports."""
        return (
            f"Gaussian process (Matern-5/2, per-dimension lengthscales, white noise) fitted "
            f"to {self.n_fit} trials, conditioned on {self.n_posterior}"
        )


def rank_luck(z: np.ndarray) -> np.ndarray:
    """Expected rank of each value among ``z`` as a normal score (>= 0; 0 for the worse half).

    Blom's approximation of the normal order statistics: ``|Phi^-1((r - 3/8) / (n + 1/4))|``
    for the ``r``-th lowest of ``n``.
    """
    rank = stats.rankdata(z, method="max")
    return np.maximum(-stats.norm.ppf((rank - 0.375) / (len(z) + 0.25)), 0.0)


def _own_rows(x: np.ndarray, xs: np.ndarray) -> list[np.ndarray]:
    """For each row of ``xs``, the rows of ``x`` with exactly the same encoding."""
    keys: dict[bytes, list[int]] = {}
    for i, row in enumerate(x):
        keys.setdefault(row.tobytes(), []).append(i)
    return [np.asarray(keys.get(row.tobytes(), []), dtype=np.int64) for row in xs]


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
    fit_idx = spread_subset(z, _FIT_POINTS, rng)
    starts = [GPParams.of(x.shape[1], *start) for start in _STARTS]
    params = fit_map(x[fit_idx], z[fit_idx], SETTINGS, starts=starts)
    post_idx = spread_subset(z, _POSTERIOR_POINTS, rng)
    return GaussianProcess(
        process=GPPosterior(x[post_idx], z[post_idx], params, jitter=SETTINGS.jitter),
        center=center,
        scale=scale,
        n_fit=len(fit_idx),
        n_posterior=len(post_idx),
        capped=capped,
    )
