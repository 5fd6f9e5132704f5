"""Past studies -> meta-dataset: one task per study, the trials that fit the search space."""

from __future__ import annotations

import collections
import dataclasses
import glob
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from optuna.trial import TrialState

from tuner._errors import MttuneError
from tuner.metadataset._normalize import orient, rank_normalize
from tuner.space import Encoder, SearchSpace
from tuner.studies import StorageError, normalize_url, open_storage, sqlite_path

__all__ = [
    "ExtractionReport",
    "MetaDataset",
    "MetaDatasetError",
    "Task",
    "build_metadataset",
    "expand_sources",
]


class MetaDatasetError(MttuneError):
    """Not enough usable past data, or sources that cannot be read."""


@dataclasses.dataclass
class Task:
    """One past study as a regression task.

    Attributes:
        name: ``<source>:<study>``, unique within the meta-dataset.
        source: The storage location it came from.
        study: The study name.
        direction: ``minimize`` or ``maximize``.
        configs: The trials' parameters (active ones only).
        x: Encoded configs, ``(n, D)``.
        values: Raw objective values, ``(n,)``.
        z: Rank-normalised, lower-is-better targets, ``(n,)``.
    """

    name: str
    source: str
    study: str
    direction: str
    configs: list[dict[str, Any]]
    x: np.ndarray
    values: np.ndarray
    z: np.ndarray

    @property
    def n(self) -> int:
        """Number of trials."""
        return len(self.values)

    def best_configs(self, k: int) -> list[dict[str, Any]]:
        """The ``k`` best distinct configs of the task, best first."""
        order = np.argsort(orient(self.values, self.direction), kind="stable")
        seen: set[tuple] = set()
        out: list[dict[str, Any]] = []
        for i in order:
            key = tuple(sorted(self.configs[i].items(), key=lambda kv: kv[0]))
            if key not in seen:
                seen.add(key)
                out.append(self.configs[i])
            if len(out) == k:
                break
        return out


@dataclasses.dataclass
class ExtractionReport:
    """What was read, used and skipped, and why."""

    sources: list[str] = dataclasses.field(default_factory=list)
    used: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    skipped_studies: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    skipped_trials: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    @property
    def n_trials(self) -> int:
        """Trials used in total."""
        return sum(n for _, n in self.used)

    def lines(self) -> list[str]:
        """A human-readable account."""
        out = [
            f"read {len(self.sources)} storage(s); used {len(self.used)} studies with "
            f"{self.n_trials} trials"
        ]
        for name, why in self.skipped_studies:
            out.append(f"skipped study {name}: {why}")
        for why, n in sorted(self.skipped_trials.items()):
            out.append(f"skipped {n} trial(s): {why}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form (stored in priors)."""
        return {
            "sources": self.sources,
            "used": [{"task": n, "trials": k} for n, k in self.used],
            "skipped_studies": [{"study": n, "reason": r} for n, r in self.skipped_studies],
            "skipped_trials": dict(self.skipped_trials),
        }


@dataclasses.dataclass
class MetaDataset:
    """Tasks over one search space, ready for meta-training."""

    space: SearchSpace
    tasks: list[Task]
    report: ExtractionReport

    @classmethod
    def from_tasks(
        cls,
        space: SearchSpace,
        tasks: Sequence[tuple[str, Sequence[dict[str, Any]], Sequence[float]]],
        *,
        direction: str | None = None,
    ) -> MetaDataset:
        """Build a meta-dataset from in-memory ``(name, configs, values)`` tasks.

        For synthetic task families and benchmarks; studies go through
        :func:`build_metadataset`.
        """
        direction = direction or space.objective.direction
        encoder = Encoder(space)
        report = ExtractionReport(sources=["<memory>"])
        out: list[Task] = []
        for name, configs, values in tasks:
            v = np.asarray(values, dtype=np.float64)
            configs = [dict(c) for c in configs]
            out.append(
                Task(
                    name,
                    "<memory>",
                    name,
                    direction,
                    configs,
                    encoder.encode_many(configs),
                    v,
                    rank_normalize(v, direction),
                )
            )
            report.used.append((name, len(v)))
        return cls(space, out, report)

    @property
    def encoder(self) -> Encoder:
        """The encoder of the space."""
        return Encoder(self.space)

    def padded(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``X (T, N, D)``, ``z (T, N)`` zero-padded to the largest task, and counts ``(T,)``."""
        n_max = max(t.n for t in self.tasks)
        dim = self.tasks[0].x.shape[1]
        x = np.zeros((len(self.tasks), n_max, dim), dtype=np.float32)
        z = np.zeros((len(self.tasks), n_max), dtype=np.float32)
        counts = np.array([t.n for t in self.tasks], dtype=np.int64)
        for i, t in enumerate(self.tasks):
            x[i, : t.n] = t.x
            z[i, : t.n] = t.z
        return x, z, counts

    def split(self, n_val: int, rng: np.random.Generator) -> tuple[MetaDataset, MetaDataset]:
        """Hold out ``n_val`` whole tasks (split by task, never by trial)."""
        order = rng.permutation(len(self.tasks))
        val = [self.tasks[i] for i in sorted(order[:n_val])]
        train = [self.tasks[i] for i in sorted(order[n_val:])]
        return (
            MetaDataset(self.space, train, self.report),
            MetaDataset(self.space, val, self.report),
        )


def expand_sources(sources: Iterable[str]) -> list[str]:
    """Expand globs (``studies/*.db``) into files; URLs pass through unchanged.

    Raises:
        MetaDatasetError: if a glob or path matches nothing.
    """
    out: list[str] = []
    for src in sources:
        if "://" in src:
            out.append(src)
            continue
        matches = sorted(glob.glob(os.path.expanduser(src), recursive=True))
        if not matches:
            raise MetaDatasetError(
                f"--from {src!r} matches no file. Give SQLite files (studies/*.db), journal "
                "files (*.log) or storage URLs (sqlite:///..., postgresql://...)."
            )
        out.extend(m for m in matches if os.path.isfile(m))
    # one storage once, however it was named (a.db, ./a.db, sqlite:///a.db, a symlink)
    unique: dict[str, str] = {}
    for src in out:
        unique.setdefault(_identity(src), src)
    return list(unique.values())


def _identity(src: str) -> str:
    """What a source is: the real path of a local file, else the URL."""
    url = normalize_url(src)
    path = sqlite_path(url) if "://" in url else Path(url)
    return os.path.realpath(path) if path is not None else url


def _labels(sources: Sequence[str]) -> dict[str, str]:
    """Short names of the sources, for task names.

    The file name, or the path where two sources share a file name (``a/study.db``,
    ``b/study.db``).
    """

    def base(src: str) -> str:
        return os.path.basename(src) if "://" not in src else src

    counts = collections.Counter(base(s) for s in sources)
    return {s: base(s) if counts[base(s)] == 1 else os.path.normpath(s) for s in sources}


def build_metadataset(
    sources: Sequence[str],
    space: SearchSpace,
    *,
    studies: Sequence[str] | None = None,
    min_trials: int = 5,
    min_tasks: int = 3,
) -> MetaDataset:
    """Read past studies into a :class:`MetaDataset`.

    Each study is one task. Only COMPLETE trials with a finite value whose parameters fit
    ``space`` are kept; everything skipped is counted with its reason in the report.

    Args:
        sources: Storage URLs, SQLite/journal paths or globs.
        space: The search space the prior is for.
        studies: Only these study names (default: every study of every source).
        min_trials: A study needs at least this many usable trials to become a task.
        min_tasks: Fewer usable studies than this is an error.

    Raises:
        MetaDatasetError: if a source cannot be read, a named study is missing, or too few
            tasks remain (the message lists why studies were skipped).
    """
    report = ExtractionReport()
    encoder = Encoder(space)
    wanted = set(studies) if studies else None
    found: set[str] = set()
    tasks: list[Task] = []
    expanded = expand_sources(sources)
    labels = _labels(expanded)
    for src in expanded:
        report.sources.append(src)
        try:
            storage = open_storage(normalize_url(src), read_only=True)
        except StorageError as e:
            raise MetaDatasetError(f"cannot read past studies from {src!r}: {e}") from None
        label = labels[src]
        for summary in storage.get_all_studies():
            name = summary.study_name
            if wanted is not None and name not in wanted:
                continue
            found.add(name)
            task_name = f"{label}:{name}"
            if len(summary.directions) != 1:
                report.skipped_studies.append((task_name, "multi-objective"))
                continue
            direction = summary.directions[0].name.lower()
            trials = storage.get_all_trials(summary._study_id, deepcopy=False)
            configs, values = _usable_trials(trials, space, report.skipped_trials)
            if len(values) < min_trials:
                why = f"only {len(values)} usable trial(s) of {len(trials)} (need {min_trials})"
                if not values and trials:
                    why += "; its parameters do not fit the search space"
                report.skipped_studies.append((task_name, why))
                continue
            v = np.asarray(values, dtype=np.float64)
            tasks.append(
                Task(
                    name=task_name,
                    source=src,
                    study=name,
                    direction=direction,
                    configs=configs,
                    x=encoder.encode_many(configs),
                    values=v,
                    z=rank_normalize(v, direction),
                )
            )
            report.used.append((task_name, len(values)))
    if wanted is not None and wanted - found:
        raise MetaDatasetError(
            f"study name(s) {sorted(wanted - found)} not found in {report.sources}."
        )
    if len(tasks) < min_tasks:
        details = "; ".join(report.lines()[1:6])
        raise MetaDatasetError(
            f"too little past data: {len(tasks)} usable studies, need at least {min_tasks} "
            f"(each with >= {min_trials} complete trials in this space)."
            + (f" {details}." if details else "")
            + " Run more studies, or lower --min-trials."
        )
    return MetaDataset(space, tasks, report)


def _usable_trials(
    trials: Sequence[Any], space: SearchSpace, skipped: collections.Counter
) -> tuple[list[dict[str, Any]], list[float]]:
    configs: list[dict[str, Any]] = []
    values: list[float] = []
    for t in trials:
        if t.state != TrialState.COMPLETE:
            skipped[f"state {t.state.name}"] += 1
            continue
        value = t.value
        if value is None or not math.isfinite(value):
            skipped["non-finite value"] += 1
            continue
        why = space.contains(t.params)
        if why is not None:
            skipped["out of bounds" if "outside" in why else "other space"] += 1
            continue
        configs.append({k: t.params[k] for k in space.active_params(t.params)})
        values.append(float(value))
    return configs, values
