"""How the prior's portfolio did on the past studies: the data for hedging the first trials.

For each portfolio config ``p`` (a source study's best config) and each source study ``s``,
``values[p, s]`` estimates the config's normalised target on ``s`` (lower is better): the
``z`` of ``s``'s trial nearest to ``p`` in the prior's coordinates. ``owners[p]`` is the
study the config came from. A sampler that hedges the first trials across past studies
(:mod:`tuner.sampler._hedge`) reads it; it is computed once at meta-training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = ["MEASURED_STRATEGIES", "PortfolioCoverage", "coverage_of"]

# The first-trial strategies meta-training measures and a prior records (``info
# ["early_strategy"]["choice"]``), in the order that breaks ties (the model first):
# ``"hedge-k"`` hedges the first ``k`` trials and lets the model choose the rest of the
# portfolio trials, ``"hedge"`` hedges them all.
MEASURED_STRATEGIES = ("model", "hedge-1", "hedge-3", "hedge")


@dataclasses.dataclass(frozen=True)
class PortfolioCoverage:
    """The portfolio's estimated targets on every source study.

    Attributes:
        values: ``(P, S)`` normalised targets, lower is better (finite).
        owners: ``(P,)`` the source study each portfolio config came from, in ``0..S-1``.
    """

    values: np.ndarray
    owners: np.ndarray

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        owners = np.asarray(self.owners, dtype=np.int64)
        if values.ndim != 2 or owners.shape != (len(values),):
            raise ValueError(
                f"coverage values must be (P, S) and owners (P,), got {values.shape} and "
                f"{owners.shape}"
            )
        if not np.isfinite(values).all():
            raise ValueError("coverage values must be finite")
        if len(owners) and (owners.min() < 0 or owners.max() >= values.shape[1]):
            raise ValueError(f"coverage owners must lie in 0..{values.shape[1] - 1}")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "owners", owners)

    @property
    def n_studies(self) -> int:
        """Number of source studies (columns)."""
        return int(self.values.shape[1])

    def without_study(self, s: int) -> tuple[np.ndarray, PortfolioCoverage]:
        """The coverage as a study that is not ``s`` sees it, and the rows it keeps.

        Drops ``s``'s column and the portfolio configs it contributed: what a new task
        would get if ``s`` had never been a source (leave-one-study-out).
        """
        keep = np.flatnonzero(self.owners != s)
        cols = np.delete(np.arange(self.n_studies), s)
        remap = np.full(self.n_studies, -1, dtype=np.int64)
        remap[cols] = np.arange(len(cols))
        return keep, PortfolioCoverage(self.values[keep][:, cols], remap[self.owners[keep]])


def coverage_of(
    portfolio: np.ndarray,
    owners: Sequence[int],
    tasks_x: Sequence[np.ndarray],
    tasks_z: Sequence[np.ndarray],
) -> PortfolioCoverage:
    """The coverage of ``portfolio`` ``(P, D)`` on tasks given by their trials' ``x`` and ``z``.

    Each value is the ``z`` of the task's nearest trial (squared Euclidean distance in the
    prior's coordinates; the first of equally near trials).
    """
    portfolio = np.asarray(portfolio, dtype=np.float64)
    values = np.empty((len(portfolio), len(tasks_x)))
    for s, (x, z) in enumerate(zip(tasks_x, tasks_z, strict=True)):
        d2 = ((portfolio[:, None, :] - np.asarray(x)[None]) ** 2).sum(-1)
        values[:, s] = np.asarray(z)[d2.argmin(axis=1)]
    return PortfolioCoverage(values, np.asarray(owners, dtype=np.int64))
