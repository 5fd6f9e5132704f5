"""Meta-training: MAML over the tasks of a meta-dataset, early stopping, calibration."""

from __future__ import annotations

import dataclasses
import functools
import math
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from tuner._errors import MttuneError
from tuner.metadataset import MetaDataset, relative_to_support
from tuner.prior._assess import cross_fit, fold_losses, split_tasks
from tuner.prior._config import MAMLConfig, ModelConfig
from tuner.prior._coverage import coverage_of
from tuner.prior._fast import FastEnsemble
from tuner.prior._maml import CONTEXT, batched_query_loss, init_ensemble, inner_lr_shape
from tuner.prior._prior import Calibration, MetaPrior

__all__ = [
    "Episode",
    "evaluate_episodes",
    "meta_train",
    "resolve_device",
    "validation_episodes",
]

ProgressFn = Callable[[int, int, float | None], None]
# One meta-batch: x (M, T, P, D), z, support and query masks (M, T, P).
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
# Support sizes of the fixed validation episodes (capped by each task's size).
VAL_SHOTS = (0, 1, 3, 5, 10, 20)
PORTFOLIO_PER_TASK = 3


@dataclasses.dataclass
class Episode:
    """One evaluation episode: a task, its support points and its query points."""

    task: int
    k: int
    x_s: np.ndarray
    z_s: np.ndarray
    x_q: np.ndarray
    z_q: np.ndarray


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto``; a clear error when CUDA is missing."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MttuneError(
            f"--device {device} asked for, but this torch build sees no CUDA GPU "
            f"(torch {torch.__version__}). Use --device cpu."
        )
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise MttuneError(f"unknown --device {device!r}: {e}") from None


def meta_train(
    dataset: MetaDataset,
    *,
    model: ModelConfig | None = None,
    maml: MAMLConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: ProgressFn | None = None,
) -> MetaPrior:
    """Meta-train a :class:`MetaPrior` on ``dataset``.

    Whole tasks are held out (:func:`tuner.prior._assess.split_tasks`): they stop the
    training early and fit the calibration. The metrics stored in the prior are cross-fitted
    between two halves of them (each half measured with the step and the calibration chosen
    on the other), so that they are what a new study will see. ``info["splits"]`` records the
    tasks per role (and, with a single held-out task, that no cross-fit was possible);
    ``info["calibration_check"]`` the check. Same dataset + same seed + same device gives
    the same prior.

    Args:
        dataset: The meta-dataset (at least 3 tasks).
        model: Network settings.
        maml: Meta-training settings.
        seed: Seeds the task split, initialisation and episode sampling.
        device: ``cpu``, ``cuda`` or ``auto``.
        progress: Called as ``progress(step, max_steps, val_loss)``.
    """
    model = model or ModelConfig()
    maml = maml or MAMLConfig()
    if len(dataset.tasks) < 3:
        raise MttuneError(f"meta-training needs at least 3 tasks, got {len(dataset.tasks)}.")
    dev = resolve_device(device)
    t0 = time.monotonic()
    splits = split_tasks(len(dataset.tasks), maml, seed)
    gen = torch.Generator().manual_seed(seed)
    tasks = _task_tensors(dataset.subset(splits.train), dev)
    learner = _Learner.init(tasks[0].shape[2], model, maml, gen, dev)
    # episodes numbered by dataset task index, so that the folds can find them
    episodes = [
        dataclasses.replace(ep, task=splits.held_out[ep.task])
        for ep in validation_episodes(dataset.subset(splits.held_out), seed)
    ]
    sample = functools.partial(_sample_batch, *tasks, model.ensemble, maml, gen, dev)
    fit = _fit(learner, sample, episodes, splits.folds, maml, progress)
    train_seconds = time.monotonic() - t0
    prior, metrics, check = _calibrated_prior(dataset, model, maml, fit, episodes, splits.folds)
    prior.info = {
        "sources": dataset.report.to_dict(),
        "splits": splits.to_dict([t.name for t in dataset.tasks], seed),
        "normalization": "per task: direction-aware Gaussian-copula of ranks, then relative "
        "to the support set (see tuner.metadataset._normalize)",
        "training": fit.to_dict(seed=seed, device=dev, seconds=train_seconds),
        "validation": metrics,
        "calibration_check": check,
        "versions": {
            "mttune": _mttune_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    return prior


def _task_tensors(
    train_set: MetaDataset, dev: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training tasks, zero-padded: ``x (T, N, D)`` and ``z (T, N)`` on ``dev``, counts."""
    x_np, z_np, counts_np = train_set.padded()
    x_all = torch.as_tensor(x_np, device=dev)
    z_all = torch.as_tensor(z_np, device=dev)
    return x_all, z_all, torch.as_tensor(counts_np)


@dataclasses.dataclass
class _Learner:
    """The meta-parameters being trained (network and inner learning rates), their optimiser."""

    base: torch.nn.Module
    params: dict[str, torch.Tensor]
    log_lrs: dict[str, torch.Tensor]
    trainable: list[torch.Tensor]
    opt: torch.optim.Optimizer
    maml: MAMLConfig

    @classmethod
    def init(
        cls,
        dim: int,
        model: ModelConfig,
        maml: MAMLConfig,
        gen: torch.Generator,
        dev: torch.device,
    ) -> _Learner:
        """A freshly initialised ensemble (seeded by ``gen``) and Adam (AdamW) over it."""
        inputs = dim + maml.context
        base, params = init_ensemble(inputs, model.hidden, model.layers, model.ensemble, gen)
        params = {k: v.to(dev).requires_grad_(True) for k, v in params.items()}
        if maml.context:  # CAVIA: one step size (or one per coordinate) for the context
            shapes = {CONTEXT: inner_lr_shape((model.ensemble, maml.context), maml)}
        else:
            shapes = {k: inner_lr_shape(v.shape, maml) for k, v in params.items()}
        log_lrs = {
            k: torch.full(
                shape,
                math.log(maml.context_lr if k == CONTEXT else maml.inner_lr),
                device=dev,
                requires_grad=maml.learn_inner_lr,
            )
            for k, shape in shapes.items()
        }
        steps = list(log_lrs.values()) if maml.learn_inner_lr else []
        trainable = list(params.values()) + steps
        opt: torch.optim.Optimizer
        if maml.weight_decay:
            groups = [{"params": list(params.values())}, {"params": steps, "weight_decay": 0.0}]
            opt = torch.optim.AdamW(groups, lr=maml.outer_lr, weight_decay=maml.weight_decay)
        else:
            opt = torch.optim.Adam(trainable, lr=maml.outer_lr)
        return cls(base, params, log_lrs, trainable, opt, maml)

    def step(self, batch: Batch) -> None:
        """One outer step: adapt to each task's support points, descend the query loss."""
        x, z, sup, qry = batch
        maml = self.maml
        losses = batched_query_loss(
            self.params,
            self.log_lrs,
            self.base,
            x,
            z,
            sup,
            qry,
            maml.inner_steps,
            maml.first_order,
        )
        loss = losses.mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable, 10.0)
        self.opt.step()
        with torch.no_grad():
            for k, v in self.log_lrs.items():
                high = 10.0 * maml.context_lr if k == CONTEXT else 1.0  # CAVIA: 10x its start
                v.clamp_(math.log(1e-4), math.log(high))

    def snapshot(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Copies of the parameters and the inner log learning rates."""
        return _clone(self.params), _clone(self.log_lrs)


# a snapshot of the learner: the parameters and the inner log learning rates
_State = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]


@dataclasses.dataclass
class _Fit:
    """The outer loop's record: the validation losses, the best state and when it was."""

    patience: int
    steps: int = 0
    history: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    best_loss: float = math.inf
    best_step: int = 0
    best: _State | None = None
    bad_evals: int = 0
    # per fold of the held-out tasks: the best loss, its step and state (for the cross-fit)
    fold_best: list[tuple[float, int, _State | None]] = dataclasses.field(default_factory=list)

    def record(self, step: int, val: float, folds: list[float], learner: _Learner) -> bool:
        """Note the validation losses (and the best states); whether to go on.

        ``val`` (every held-out task) decides the shipped state and when to stop; ``folds``
        (each half alone) pick the states the cross-fitted metrics are measured on.
        """
        if not self.fold_best:
            self.fold_best = [(math.inf, 0, None)] * len(folds)
        for i, v in enumerate(folds):
            if v < self.fold_best[i][0] - 1e-4:
                self.fold_best[i] = (v, step, learner.snapshot())
        if val < self.best_loss - 1e-4:
            self.best_loss, self.best_step, self.bad_evals = val, step, 0
            self.best = learner.snapshot()
            return True
        self.bad_evals += 1
        return self.bad_evals < self.patience

    def to_dict(self, *, seed: int, device: torch.device, seconds: float) -> dict[str, Any]:
        """The prior's ``training`` record."""
        return {
            "seed": seed,
            "device": str(device),
            "steps": self.steps,
            "best_step": self.best_step,
            "fold_best_steps": [step for _, step, _ in self.fold_best],
            "seconds": round(seconds, 2),
            "val_history": [[s, round(v, 5)] for s, v in self.history],
        }


def _fit(
    learner: _Learner,
    sample: Callable[[], Batch],
    episodes: list[Episode],
    folds: Sequence[Sequence[int]],
    maml: MAMLConfig,
    progress: ProgressFn | None,
) -> _Fit:
    """Outer steps until ``max_steps`` or early stopping on the validation loss."""
    fit = _Fit(patience=maml.patience)
    tasks = [ep.task for ep in episodes]
    for step in range(1, maml.max_steps + 1):
        fit.steps = step
        learner.step(sample())
        if step % maml.val_every == 0 or step == maml.max_steps:
            losses = _val_losses(learner.params, learner.log_lrs, episodes, maml)
            val = float(np.mean(losses))
            fit.history.append((step, val))
            if progress is not None:
                progress(step, maml.max_steps, val)
            if not fit.record(step, val, fold_losses(losses, tasks, folds), learner):
                break
        elif progress is not None:
            progress(step, maml.max_steps, None)
    if fit.best is None:
        last = fit.history[-1][1] if fit.history else math.nan
        raise MttuneError(
            f"meta-training diverged: the validation loss was {last} at every check "
            f"({len(fit.history)} checks, {fit.steps} steps). Lower the learning rates "
            f"(outer_lr={maml.outer_lr}, inner_lr={maml.inner_lr}) or the inner steps "
            f"({maml.inner_steps})."
        )
    return fit


def _calibrated_prior(
    dataset: MetaDataset,
    model: ModelConfig,
    maml: MAMLConfig,
    fit: _Fit,
    episodes: list[Episode],
    folds: Sequence[Sequence[int]],
) -> tuple[MetaPrior, dict[str, Any], dict[str, Any]]:
    """The prior of the best state calibrated on the held-out episodes, metrics, the check."""
    assert fit.best is not None
    portfolio, owners = _portfolio(dataset)
    portfolio_x = dataset.features.encode(portfolio)
    coverage = coverage_of(
        portfolio_x, owners, [t.x for t in dataset.tasks], [t.z for t in dataset.tasks]
    )

    def prior_of(state: _State) -> MetaPrior:
        return MetaPrior(
            dataset.space,
            model,
            maml,
            *state,
            Calibration(),
            portfolio_x,
            info={},
            features=dataset.features,
            portfolio_configs=portfolio,
            coverage=coverage,
        )

    def evaluate(j: int, tasks: Sequence[int]) -> list[dict[str, Any]]:
        """The prior stopped by fold ``j`` alone, on the episodes of ``tasks``."""
        state = fit.fold_best[j][2] or fit.best
        return evaluate_episodes(prior_of(state), [ep for ep in episodes if ep.task in tasks])

    prior = prior_of(fit.best)
    calibration, metrics, check = cross_fit(evaluate, evaluate_episodes(prior, episodes), folds)
    prior.calibration = calibration
    return prior, metrics, check


def _mttune_version() -> str:
    from tuner._version import __version__

    return __version__


def _clone(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in d.items()}


def _sample_batch(
    x_all: torch.Tensor,
    z_all: torch.Tensor,
    counts: torch.Tensor,
    members: int,
    maml: MAMLConfig,
    gen: torch.Generator,
    dev: torch.device,
) -> Batch:
    """Random episodes: per member and task, ``points`` trials split into support/query."""
    n_tasks, n_max = z_all.shape
    m, b, p = members, maml.meta_batch, min(maml.points, n_max)
    task = torch.randint(0, n_tasks, (m, b), generator=gen)
    cnt = counts[task]  # (m, b)
    scores = torch.rand((m, b, n_max), generator=gen)
    scores = scores.masked_fill(torch.arange(n_max) >= cnt[..., None], 2.0)
    pts = scores.argsort(-1)[..., :p]  # valid points first, in random order
    n_valid = cnt.clamp(max=p)
    max_k = torch.clamp(n_valid - 1, min=0).clamp(max=maml.max_support)
    k = (torch.rand((m, b), generator=gen) * (max_k + 1).float()).floor().long()
    zero = torch.rand((m, b), generator=gen) < maml.zero_shot_fraction
    k = torch.where(zero, torch.zeros_like(k), k)
    pos = torch.arange(p)
    support = (pos < k[..., None]).float()
    query = ((pos >= k[..., None]) & (pos < n_valid[..., None])).float()
    task_d, pts_d = task.to(dev), pts.to(dev)
    x = x_all[task_d[..., None], pts_d]  # (m, b, p, D)
    z = z_all[task_d[..., None], pts_d]
    return x, z, support.to(dev), query.to(dev)


def validation_episodes(dataset: MetaDataset, seed: int, shots=VAL_SHOTS) -> list[Episode]:
    """Fixed episodes over the validation tasks: support sizes ``shots``, query = the rest."""
    rng = np.random.default_rng(seed + 7919)
    eps: list[Episode] = []
    for i, task in enumerate(dataset.tasks):
        for k in shots:
            if k >= task.n:
                continue
            order = rng.permutation(task.n)
            s, q = order[:k], order[k:]
            eps.append(Episode(i, k, task.x[s], task.z[s], task.x[q], task.z[q]))
    return eps


def _episode_targets(ep: Episode) -> tuple[np.ndarray, np.ndarray]:
    """Support and query targets of an episode, relative to its support set."""
    z = np.concatenate([ep.z_s, ep.z_q])
    mask = np.zeros_like(z)
    mask[: ep.k] = 1.0
    # on tensors, as in the meta-training loop: torch's sums, not NumPy's
    t = relative_to_support(torch.as_tensor(z), torch.as_tensor(mask)).numpy()
    return t[: ep.k], t[ep.k :]


def evaluate_episodes(prior: MetaPrior, episodes: list[Episode]) -> list[dict[str, Any]]:
    """Predictions of ``prior`` on each episode's query points (in support units)."""
    out = []
    for ep in episodes:
        t_s, t_q = _episode_targets(ep)
        pred = prior.predict_targets(ep.x_q, ep.x_s, t_s)
        out.append(
            {
                "k": ep.k,
                "task": ep.task,
                "t": t_q,
                "mean": pred.mean,
                "var_ens": pred.members.var(axis=0),
                "std": pred.std,
            }
        )
    return out


def _val_losses(params, log_lrs, episodes, maml: MAMLConfig) -> list[float]:
    """Query MSE of the ensemble-mean prediction on each validation episode.

    Runs on the NumPy inference path, the same code that adapts the prior at tuning time.
    """
    fast = FastEnsemble.from_torch(
        {k: v.detach().cpu() for k, v in params.items()},
        {k: v.detach().cpu() for k, v in log_lrs.items()},
        context=maml.context,
    )
    losses = []
    for ep in episodes:
        t_s, t_q = _episode_targets(ep)
        mean = fast.adapt(ep.x_s, t_s, maml.prediction_steps).predict(ep.x_q).mean(axis=0)
        losses.append(float(np.mean((mean - t_q) ** 2)))
    return losses


def _portfolio(dataset: MetaDataset) -> tuple[list[dict[str, Any]], list[int]]:
    """The best configs of every task (the prior's portfolio), and the task of each."""
    configs: list[dict[str, Any]] = []
    owners: list[int] = []
    for s, task in enumerate(dataset.tasks):
        best = task.best_configs(PORTFOLIO_PER_TASK)
        configs += best
        owners += [s] * len(best)
    return configs, owners
