"""The meta-learned prior: predictions with calibrated uncertainty, adaptation, proposals."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from tuner.metadataset import observation_targets
from tuner.prior._config import MAMLConfig, ModelConfig
from tuner.prior._coverage import PortfolioCoverage
from tuner.prior._fast import FastEnsemble
from tuner.space import Encoder, FeatureSpace, SearchSpace

__all__ = [
    "AdaptedPrior",
    "Calibration",
    "MetaPrior",
    "Prediction",
    "diverse_top",
    "observation_targets",
]

# Support-size buckets with their own calibration: zero-shot, few-shot, more, many.
BUCKETS = (0, 1, 5, 20)


def bucket_of(k: int) -> int:
    """Index of the calibration bucket for ``k`` observations."""
    return max(i for i, lo in enumerate(BUCKETS) if k >= lo)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Predictive variance ``a * var_ensemble + b`` per support-size bucket (see BUCKETS)."""

    a: tuple[float, ...] = (1.0,) * len(BUCKETS)
    b: tuple[float, ...] = (0.1,) * len(BUCKETS)

    def variance(self, var_ens: np.ndarray, k: int) -> np.ndarray:
        """Calibrated predictive variance for ``k`` observations."""
        i = bucket_of(k)
        return self.a[i] * var_ens + self.b[i]

    def bucket(self, k: int) -> int:
        """Index of the bucket used with ``k`` observations."""
        return bucket_of(k)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"buckets": list(BUCKETS), "a": list(self.a), "b": list(self.b)}


@dataclasses.dataclass
class Prediction:
    """Predictions for candidate configs, in *target units* (lower is better).

    Attributes:
        mean: Ensemble mean ``(n,)``.
        std: Calibrated predictive standard deviation ``(n,)``.
        members: Each member's prediction ``(M, n)``.
        incumbent: The best observed target (``None`` without observations).
    """

    mean: np.ndarray
    std: np.ndarray
    members: np.ndarray
    incumbent: float | None


class MetaPrior:
    """A meta-learned warm-start prior over named hyperparameters.

    The network sees configs in the prior's own coordinates (:attr:`features`: every
    hyperparameter it knows by name, with the range of values it was trained on), so any
    study's space maps onto it (see :class:`tuner.space.FeatureSpace`). ``space`` is the
    search space it was trained for: its default space for new studies.

    Create one with :func:`tuner.prior.meta_train` or :func:`tuner.prior.load_prior`.

    Args:
        space: The search space the prior was trained for.
        model: Network settings.
        maml: MAML settings used to train it.
        params: Ensemble parameters stacked along a leading member axis.
        log_lrs: Inner-loop log learning rates, per member: ``(M,)`` per parameter tensor,
            or the parameter's shape with ``maml.inner_lr_shape == "element"``;
            with ``maml.context`` (CAVIA) only the context's, under ``"context"``.
        calibration: Predictive-variance calibration.
        portfolio: The source studies' best configs in the prior's coordinates ``(P, D)``.
        info: Provenance and validation metrics (JSON-serialisable).
        features: The prior's coordinates (default: those of ``space``, no presence columns).
        portfolio_configs: The portfolio's configs in natural units (default: decoded from
            ``portfolio`` in ``space``).
        coverage: How each portfolio config did on each source study, for hedging the
            first trials (priors meta-trained before it was recorded have none).
    """

    def __init__(
        self,
        space: SearchSpace,
        model: ModelConfig,
        maml: MAMLConfig,
        params: Mapping[str, torch.Tensor],
        log_lrs: Mapping[str, torch.Tensor],
        calibration: Calibration,
        portfolio: np.ndarray,
        info: dict[str, Any] | None = None,
        *,
        features: FeatureSpace | None = None,
        portfolio_configs: Sequence[Mapping[str, Any]] | None = None,
        coverage: PortfolioCoverage | None = None,
    ) -> None:
        self.space = space
        self.encoder = Encoder(space)
        self.features = features or FeatureSpace.from_space(space)
        self.model = model
        self.maml = maml
        self.params = {k: v.detach().to("cpu", torch.float32) for k, v in params.items()}
        self.log_lrs = {k: v.detach().to("cpu", torch.float32) for k, v in log_lrs.items()}
        self.calibration = calibration
        self.portfolio = np.asarray(portfolio, dtype=np.float64).reshape(-1, self.features.dim)
        if portfolio_configs is None:
            portfolio_configs = self.encoder.decode_many(self.portfolio)
        self.portfolio_configs = [dict(c) for c in portfolio_configs]
        if coverage is not None and len(coverage.values) != len(self.portfolio):
            raise ValueError(
                f"coverage has {len(coverage.values)} rows for a portfolio of "
                f"{len(self.portfolio)} configs"
            )
        self.coverage = coverage
        self.info = dict(info or {})
        self._fast = FastEnsemble.from_torch(self.params, self.log_lrs, context=self.maml.context)

    # ------------------------------------------------------------------ prediction
    def adapt(
        self,
        x_obs: np.ndarray | None = None,
        t_obs: np.ndarray | None = None,
        *,
        steps: int | None = None,
    ) -> AdaptedPrior:
        """Adapt the ensemble to observations: configs in prior coordinates, target units.

        With no observations the result predicts zero-shot. Runs on the NumPy path
        (:mod:`tuner.prior._fast`), a few milliseconds per call.
        """
        n_steps = self.maml.prediction_steps if steps is None else steps
        if x_obs is None or len(x_obs) == 0:
            return AdaptedPrior(self, self._fast, 0, None)
        x = np.asarray(x_obs, dtype=np.float64).reshape(-1, self.features.dim)
        t = np.asarray(t_obs, dtype=np.float64).reshape(-1)
        return AdaptedPrior(self, self._fast.adapt(x, t, n_steps), len(t), float(t.min()))

    def predict_targets(
        self,
        x_new: np.ndarray,
        x_obs: np.ndarray | None = None,
        t_obs: np.ndarray | None = None,
        *,
        steps: int | None = None,
    ) -> Prediction:
        """Predict configs (prior coordinates) adapted to observations in target units."""
        return self.adapt(x_obs, t_obs, steps=steps).predict(x_new)

    def predict(
        self,
        configs: Sequence[Mapping[str, Any]],
        observed: Sequence[tuple[Mapping[str, Any], float]] = (),
        *,
        direction: str | None = None,
    ) -> Prediction:
        """Predict configs of a new task, adapted to its ``(config, value)`` observations.

        Args:
            configs: Configs to predict.
            observed: Finished trials of the new task as ``(params, objective value)``.
            direction: The new task's direction (default: the space's).

        Returns:
            Predictions in target units: rank-normalised, relative to the observations,
            lower is better (see :func:`observation_targets`).
        """
        direction = direction or self.space.objective.direction
        x_new = self.features.encode(list(configs))
        if observed:
            x_obs = self.features.encode([c for c, _ in observed])
            t_obs = observation_targets([v for _, v in observed], direction)
        else:
            x_obs, t_obs = None, None
        return self.predict_targets(x_new, x_obs, t_obs)

    # ------------------------------------------------------------------ proposals
    def zero_shot(
        self,
        n: int,
        *,
        seed: int = 0,
        n_random: int = 2048,
        min_distance: float = 0.15,
    ) -> list[dict[str, Any]]:
        """``n`` diverse configs the prior expects to be good on a new task, best first.

        Candidates are the source studies' best configs plus random ones; they are ranked by
        the zero-shot prediction and taken greedily, skipping any closer than
        ``min_distance`` (RMS distance in the unit cube) to one already taken.
        """
        rng = np.random.default_rng(seed)
        random = self.encoder.decode_many(self.encoder.sample(n_random, rng))
        configs = self.portfolio_configs + random
        cands = np.vstack([self.portfolio, self.features.encode(random)])
        pred = self.predict_targets(cands)
        picked = diverse_top(cands, pred.mean, n, min_distance)
        return [dict(configs[i]) for i in picked]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_fast"]  # derived from params: rebuilt on load
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fast = FastEnsemble.from_torch(self.params, self.log_lrs, context=self.maml.context)

    def without_source(self, s: int) -> MetaPrior:
        """This prior as a study unlike source study ``s`` would see it (same network).

        Its portfolio and coverage lose what ``s`` contributed (leave-one-study-out), so a
        simulation on ``s`` does not find ``s``'s own best configs. Needs :attr:`coverage`.
        """
        if self.coverage is None:
            raise ValueError("without_source needs a prior with coverage")
        keep, coverage = self.coverage.without_study(s)
        out = copy.copy(self)
        out.portfolio = self.portfolio[keep]
        out.portfolio_configs = [self.portfolio_configs[i] for i in keep]
        out.coverage = coverage
        return out

    @property
    def n_members(self) -> int:
        """Ensemble size."""
        return next(iter(self.params.values())).shape[0]

    def default_space(self) -> SearchSpace:
        """The search space to start a new study with (``mttune space from-prior``).

        The one the prior's maker recorded (``info.default_space``: built-ins bring one per
        family, in the names users write, with ranges a person would pick), else the space
        it was trained for.

        Raises:
            SpaceError: if the recorded default space is malformed.
        """
        recorded = self.info.get("default_space")
        if recorded is None:
            return self.space
        return SearchSpace.from_dict(recorded, source="the prior's default_space")

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (what ``mttune prior show`` prints)."""
        return {
            "space": {
                "name": self.space.name,
                "hash": self.space.hash,
                "params": self.space.names,
            },
            "features": self.features.to_list(),
            "model": dataclasses.asdict(self.model),
            "maml": self.maml.to_dict(),
            "calibration": self.calibration.to_dict(),
            "portfolio_size": len(self.portfolio),
            **self.info,
        }


class AdaptedPrior:
    """A prior adapted to one study's observations; predicts many candidates cheaply."""

    def __init__(
        self, prior: MetaPrior, ensemble: FastEnsemble, k: int, incumbent: float | None
    ) -> None:
        self.prior = prior
        self.ensemble = ensemble
        self.k = k
        self.incumbent = incumbent

    def predict(self, x_new: np.ndarray) -> Prediction:
        """Predictions for configs in the prior's coordinates ``(n, D)``, in target units."""
        x = np.asarray(x_new, dtype=np.float64).reshape(-1, self.prior.features.dim)
        members = self.ensemble.predict(x)
        mean = members.mean(axis=0)
        var_ens = members.var(axis=0) if members.shape[0] > 1 else np.zeros_like(mean)
        std = np.sqrt(self.prior.calibration.variance(var_ens, self.k))
        return Prediction(mean=mean, std=std, members=members, incumbent=self.incumbent)


def diverse_top(
    cands: np.ndarray,
    score: np.ndarray,
    n: int,
    min_distance: float,
    taken: np.ndarray | None = None,
) -> list[int]:
    """Indices of up to ``n`` best (lowest-score) candidates, pairwise ``>= min_distance`` apart.

    ``taken`` are points already chosen elsewhere (e.g. running trials) to keep away from.
    """
    order = np.argsort(score, kind="stable")
    dim = cands.shape[1]
    chosen: list[int] = []
    ref = [] if taken is None else list(np.asarray(taken).reshape(-1, dim))
    for i in order:
        if len(chosen) == n:
            break
        if ref:
            d = np.sqrt(((np.asarray(ref) - cands[i]) ** 2).mean(axis=1)).min()
            if d < min_distance:
                continue
        chosen.append(int(i))
        ref.append(cands[i])
    if len(chosen) < n:  # not enough far-apart candidates: fill with the next best
        rest = [int(i) for i in order if int(i) not in chosen]
        chosen += rest[: n - len(chosen)]
    return chosen
