"""Settings of the surrogate network and of MAML meta-training."""

from __future__ import annotations

import dataclasses
from typing import Any

from tuner._errors import MttuneError

__all__ = ["INNER_LR_SHAPES", "MAMLConfig", "ModelConfig"]

# how the inner learning rates are shaped: one per parameter tensor, or one per element
INNER_LR_SHAPES = ("tensor", "element")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The surrogate: an ensemble of small MLPs over the encoded space.

    Attributes:
        hidden: Units per hidden layer.
        layers: Hidden layers.
        ensemble: Independently initialised members; their spread is the epistemic
            uncertainty (then calibrated on validation tasks).
    """

    hidden: int = 64
    layers: int = 2
    ensemble: int = 5

    def __post_init__(self) -> None:
        _check(1 <= self.hidden <= 4096, "hidden must be in 1..4096", self.hidden)
        _check(1 <= self.layers <= 8, "layers must be in 1..8", self.layers)
        _check(1 <= self.ensemble <= 64, "ensemble must be in 1..64", self.ensemble)


@dataclasses.dataclass(frozen=True)
class MAMLConfig:
    """MAML meta-training settings.

    Attributes:
        inner_steps: Gradient steps of the inner loop (adaptation to a task's support trials).
            ``0`` trains a plain multi-task regression (the ablation without MAML).
        inner_lr: Initial inner learning rate (learned per layer when ``learn_inner_lr``).
        learn_inner_lr: Meta-learn the inner log learning rates (shaped by ``inner_lr_shape``).
        inner_lr_shape: ``"tensor"``: one inner learning rate per parameter tensor (per
            member); ``"element"``: one per weight (Meta-SGD, Li et al. 2017), which lets
            the inner loop move only what transfers. Files without it are ``"tensor"``.
        context: CAVIA (Zintgraf et al. 2019): the size of a context vector fed to the
            network beside the config, set to 0 for each task and the only thing the inner
            loop adapts (its step size learned, from ``context_lr``); the weights are learned by
            the outer loop only. ``0`` (files without it): the inner loop adapts every weight.
        context_lr: Initial step size of the CAVIA context (Zintgraf et al. use 1.0); learned,
            at most 10 times it. Files without it are ``1.0``.
        first_order: Drop second-order terms (first-order MAML): faster, usually a bit worse.
        outer_lr: Adam learning rate of the meta-parameters.
        weight_decay: Decoupled weight decay (AdamW) of the network's meta-parameters (not of
            the inner step sizes); ``0``: plain Adam.
        meta_batch: Tasks per outer step.
        points: Trials drawn per task per step (support + query).
        max_support: Largest support set; sizes are drawn from 0 (zero-shot) to this.
        zero_shot_fraction: Share of tasks trained with an empty support set.
        max_steps: Outer steps at most.
        val_every: Evaluate on the validation tasks every this many steps.
        patience: Stop after this many evaluations without improvement.
        val_tasks: Fraction of tasks held out (at least one): together they stop the training
            and fit the calibration; cross-fitted between two halves, they give the metrics
            the prior reports (see ``tuner.prior._assess``).
        adapt_steps: Inner steps used at prediction time (default: ``inner_steps``, or 5 for
            the ablation).
    """

    inner_steps: int = 3
    inner_lr: float = 0.05
    learn_inner_lr: bool = True
    inner_lr_shape: str = "tensor"
    context: int = 0
    context_lr: float = 1.0
    first_order: bool = False
    outer_lr: float = 5e-3
    weight_decay: float = 0.0
    meta_batch: int = 8
    points: int = 64
    max_support: int = 32
    zero_shot_fraction: float = 0.2
    max_steps: int = 1500
    val_every: int = 50
    patience: int = 6
    val_tasks: float = 0.2
    adapt_steps: int | None = None

    def __post_init__(self) -> None:
        _check(0 <= self.inner_steps <= 50, "inner_steps must be in 0..50", self.inner_steps)
        _check(self.inner_lr > 0, "inner_lr must be > 0", self.inner_lr)
        _check(
            self.inner_lr_shape in INNER_LR_SHAPES,
            f"inner_lr_shape must be one of {', '.join(INNER_LR_SHAPES)}",
            self.inner_lr_shape,
        )
        _check(0 <= self.context <= 64, "context must be in 0..64", self.context)
        _check(
            self.context == 0 or self.inner_steps >= 1,
            "context (CAVIA) needs inner_steps >= 1: the inner loop is what fits it",
            self.inner_steps,
        )
        _check(self.context_lr > 0, "context_lr must be > 0", self.context_lr)
        _check(self.outer_lr > 0, "outer_lr must be > 0", self.outer_lr)
        _check(self.weight_decay >= 0, "weight_decay must be >= 0", self.weight_decay)
        _check(self.meta_batch >= 1, "meta_batch must be >= 1", self.meta_batch)
        _check(self.points >= 2, "points must be >= 2", self.points)
        _check(
            1 <= self.max_support < self.points,
            "max_support must be in 1..points-1",
            self.max_support,
        )
        _check(
            0.0 <= self.zero_shot_fraction <= 1.0,
            "zero_shot_fraction must be in [0, 1]",
            self.zero_shot_fraction,
        )
        _check(self.max_steps >= 1, "max_steps must be >= 1", self.max_steps)
        _check(self.val_every >= 1, "val_every must be >= 1", self.val_every)
        _check(self.patience >= 1, "patience must be >= 1", self.patience)
        _check(0.0 < self.val_tasks < 1.0, "val_tasks must be in (0, 1)", self.val_tasks)
        if self.adapt_steps is not None:
            _check(0 <= self.adapt_steps <= 200, "adapt_steps must be in 0..200", self.adapt_steps)

    @property
    def prediction_steps(self) -> int:
        """Inner steps used when adapting at prediction time."""
        if self.adapt_steps is not None:
            return self.adapt_steps
        return self.inner_steps if self.inner_steps > 0 else 5

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dataclasses.asdict(self)


def _check(ok: bool, rule: str, value: Any) -> None:
    if not ok:
        raise MttuneError(f"{rule}, got {value!r}.")
