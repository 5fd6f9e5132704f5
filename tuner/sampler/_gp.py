"""A small Gaussian process for what the adapted prior leaves unexplained.

The sampler models a study's targets as ``adapted_prior(x) + g(x)`` with ``g`` a zero-mean GP
(Matern-5/2, one lengthscale per encoded dimension, plus observation noise). The prior brings
what past studies know (early on it is almost the whole model); the GP adds the local detail
of *this* study as its trials accumulate, so late in a search mttune behaves like a
Bayesian-optimisation sampler whose mean function was meta-learned.

Hyperparameters are fitted by maximising the marginal likelihood plus weak log-normal priors
(L-BFGS with analytic gradients); the numerics are :mod:`tuner._gp`, with :data:`SETTINGS`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tuner._gp import GPParams, GPPosterior, GPSettings, fit_map

__all__ = ["SETTINGS", "GPParams", "ResidualGP", "fit_gp"]

# The residuals are in target units (rank-normalised): lengthscale 0.5 of the unit cube per
# dimension and little noise a priori; the amplitude's centre is set per fit (see fit_gp).
SETTINGS = GPSettings(
    lengthscale=0.5,
    amplitude=0.5,
    noise=1e-3,
    lengthscale_sd=1.0,
    amplitude_sd=1.0,
    noise_sd=2.0,
    lengthscale_bounds=(0.01, 20.0),
    amplitude_bounds=(1e-4, 50.0),
    noise_bounds=(1e-6, 1.0),
    jitter=1e-8,
    max_iter=40,
)


class ResidualGP(GPPosterior):
    """GP posterior of the residuals ``r = t - prior_mean`` at observed points ``x``."""

    def __init__(self, x: np.ndarray, r: np.ndarray, params: GPParams) -> None:
        super().__init__(x, r, params, jitter=SETTINGS.jitter)


def fit_gp(
    x: np.ndarray,
    r: np.ndarray,
    *,
    amplitude: float = SETTINGS.amplitude,
    init: GPParams | None = None,
    max_iter: int = SETTINGS.max_iter,
) -> GPParams:
    """MAP hyperparameters for residuals ``r`` at ``x`` (one L-BFGS-B run from ``init``).

    The amplitude's prior is centred on ``amplitude`` (the prior's unexplained variance);
    ``init`` defaults to the priors' centre.
    """
    settings = dataclasses.replace(SETTINGS, amplitude=amplitude, max_iter=max_iter)
    return fit_map(x, r, settings, starts=() if init is None else (init,))
