"""Measuring how a prior's first trials should be chosen: by its model, by hedging, or both.

Meta-training leaves the prior's held-out studies unseen by its network, so they can say
which strategy serves a new study better. Each held-out study becomes a benchmark: its
trials are the objective (a config's value is the normalised target of the study's nearest
trial), the prior loses what that study contributed to its portfolio
(:meth:`~tuner.prior.MetaPrior.without_source`), and :class:`MetaPriorSampler` runs the first
trials with each strategy (:data:`~tuner.prior.MEASURED_STRATEGIES`: the model, hedging the
first 1 or 3 trials, hedging all the portfolio trials) over a few seeds. The strategy with
the lowest mean regret over those trials is recorded in the prior (``info["early_strategy"]``)
and taken by ``early_strategy="auto"``; a tie keeps the one listed first.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna

from tuner._logging import quiet
from tuner.metadataset import MetaDataset, Task
from tuner.prior import MEASURED_STRATEGIES, MetaPrior
from tuner.sampler._sampler import MetaPriorSampler

__all__ = ["decide_early_strategy"]


def decide_early_strategy(
    prior: MetaPrior,
    dataset: MetaDataset,
    held_out: Sequence[int] | None = None,
    *,
    trials: int = 10,
    seeds: int = 3,
    max_studies: int = 10,
) -> dict[str, Any]:
    """Simulate the first ``trials`` of each strategy on the ``held_out`` tasks of ``dataset``.

    ``dataset`` is the one ``prior`` was meta-trained on; ``held_out`` defaults to the tasks
    its meta-training held out (``info["splits"]``), which its network has not seen; at
    most ``max_studies`` of them (the first), which bounds the time it takes.

    Returns:
        The record for ``prior.info["early_strategy"]``: the choice, the mean regret of each
        strategy per trial (normalised targets above the study's best trial, lower is
        better), and what it was measured on. Without coverage or held-out tasks the
        choice is ``"model"`` and the record says why.
    """
    if held_out is None:
        names = prior.info.get("splits", {}).get("held_out", [])
        held_out = [i for i, t in enumerate(dataset.tasks) if t.name in set(names)]
    held_out = list(held_out)[:max_studies]
    record: dict[str, Any] = {"choice": "model", "trials": trials, "seeds": seeds}
    if prior.coverage is None or not held_out:
        record["note"] = "not measured: the prior has no coverage or no held-out studies"
        return record
    t0 = time.monotonic()
    curves: dict[str, list[np.ndarray]] = {s: [] for s in MEASURED_STRATEGIES}
    with quiet():
        for task_index in held_out:
            task = dataset.tasks[task_index]
            local = prior.without_source(task_index)
            for strategy in MEASURED_STRATEGIES:
                for seed in range(seeds):
                    curves[strategy].append(
                        _simulate(local, dataset, task, strategy, seed, trials)
                    )
    regret = {s: np.mean(curves[s], axis=0) for s in MEASURED_STRATEGIES}
    means = {s: float(regret[s].mean()) for s in MEASURED_STRATEGIES}
    record.update(
        choice=min(MEASURED_STRATEGIES, key=lambda s: means[s]),  # ties: the first
        mean_regret=means,
        regret_per_trial={s: [round(float(v), 4) for v in c] for s, c in regret.items()},
        studies=[dataset.tasks[i].name for i in held_out],
        seconds=round(time.monotonic() - t0, 1),
        note=f"mean regret of the first {trials} trials on {len(held_out)} held-out studies "
        f"x {seeds} seeds (nearest-trial objective)",
    )
    return record


def _simulate(
    prior: MetaPrior,
    dataset: MetaDataset,
    task: Task,
    strategy: str,
    seed: int,
    trials: int,
) -> np.ndarray:
    """Best-so-far regret per trial of ``strategy`` on ``task``'s nearest-trial objective."""
    sampler = MetaPriorSampler(prior, seed=seed, early_strategy=strategy, space=dataset.space)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    x, z = task.x, task.z

    def objective(trial: optuna.Trial) -> float:
        f = dataset.features.encode([dataset.space.suggest(trial)])[0]
        return float(z[((x - f) ** 2).sum(1).argmin()])

    study.optimize(objective, n_trials=trials)
    values = np.array([t.value for t in study.trials], dtype=np.float64)
    return np.minimum.accumulate(values) - z.min()
