"""Past studies -> meta-dataset: one task per study, pooled by parameter name.

Studies need not share one search space. Their parameters are pooled by name
(:func:`tuner.space.union_spaces`): a value is a value whatever range, log flag or type the
study declared, so trials outside a later range, studies whose ranges drifted, and studies
that lack a parameter (fixed, or added later) all count. The space is the one given (its
names, kinds and default ranges), or else inferred from the studies: the space mttune
recorded on them, or their trials' distributions (:mod:`tuner.studies`). A parameter that
some trials lack where the space says it is active gets a presence column in the prior's
input (:class:`tuner.space.FeatureSpace`).
"""

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
from tuner.space import FeatureSpace, Objective, Param, SearchSpace, SpaceError, union_spaces
from tuner.studies import (
    StorageError,
    StudyAttr,
    normalize_url,
    open_storage,
    public_url,
    recorded_space,
    space_of_trials,
    sqlite_path,
)

__all__ = [
    "ExtractionReport",
    "MetaDataset",
    "MetaDatasetError",
    "Task",
    "build_metadataset",
    "expand_sources",
    "infer_space",
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
        configs: The trials' parameters (those of the meta-dataset's space).
        x: Configs in the prior's coordinates (:class:`~tuner.space.FeatureSpace`),
            ``(n, D)``.
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
    params: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    ignored_params: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    notes: list[str] = dataclasses.field(default_factory=list)
    space_from: str = "given"

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
        if self.space_from != "given":
            out.append(f"search space: inferred from {self.space_from}")
        out += [f"pooled: {note}" for note in self.notes]
        for name, c in self.params.items():
            out.append(f"parameter {name}: in {c['studies']} studies, {c['trials']} trials")
        for name, n in sorted(self.ignored_params.items()):
            out.append(f"ignored parameter {name} ({n} trials): not in the search space")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form (stored in priors)."""
        return {
            "sources": self.sources,
            "used": [{"task": n, "trials": k} for n, k in self.used],
            "skipped_studies": [{"study": n, "reason": r} for n, r in self.skipped_studies],
            "skipped_trials": dict(self.skipped_trials),
            "params": self.params,
            "ignored_params": dict(self.ignored_params),
            "notes": self.notes,
            "space_from": self.space_from,
        }


@dataclasses.dataclass
class MetaDataset:
    """Tasks pooled over one space of named parameters, ready for meta-training.

    Attributes:
        space: The search space (the prior's default space for new studies).
        tasks: The tasks.
        report: What was read, used and skipped.
        features: The prior's coordinates: every parameter by name with the range of
            values the tasks cover (at least the space's).
    """

    space: SearchSpace
    tasks: list[Task]
    report: ExtractionReport
    features: FeatureSpace

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
        report = ExtractionReport(sources=["<memory>"])
        configs = [[dict(c) for c in task[1]] for task in tasks]
        features = _features(space, space, [c for task in configs for c in task])
        out: list[Task] = []
        for (name, _, values), cs in zip(tasks, configs, strict=True):
            v = np.asarray(values, dtype=np.float64)
            x = features.encode(cs)
            out.append(
                Task(name, "<memory>", name, direction, cs, x, v, rank_normalize(v, direction))
            )
            report.used.append((name, len(v)))
        return cls(space, out, report, features)

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

    def subset(self, idx: Sequence[int]) -> MetaDataset:
        """The tasks ``idx``, in that order, over the same space and features."""
        return MetaDataset(self.space, [self.tasks[i] for i in idx], self.report, self.features)


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
        return os.path.basename(src) if "://" not in src else public_url(src)

    counts = collections.Counter(base(s) for s in sources)
    return {s: base(s) if counts[base(s)] == 1 else os.path.normpath(s) for s in sources}


@dataclasses.dataclass
class _Study:
    """One study as read: its trials and the space it was tuned over."""

    task: str
    source: str
    name: str
    direction: str
    trials: list[Any]
    space: SearchSpace | None
    objective: str | None = None


def build_metadataset(
    sources: Sequence[str],
    space: SearchSpace | None = None,
    *,
    studies: Sequence[str] | None = None,
    min_trials: int = 5,
    min_tasks: int = 3,
) -> MetaDataset:
    """Read past studies into a :class:`MetaDataset`.

    Each study is one task; its COMPLETE trials with a finite value are kept, pooled by
    parameter name (see the module docstring). Everything skipped is counted with its
    reason in the report, and so is every parameter: in how many studies and trials.

    Args:
        sources: Storage URLs, SQLite/journal paths or globs.
        space: The search space of the prior (default: inferred from the studies).
        studies: Only these study names (default: every study of every source).
        min_trials: A study needs at least this many usable trials to become a task.
        min_tasks: Fewer usable studies than this is an error.

    Raises:
        MetaDatasetError: if a source cannot be read, a named study is missing, the space
            cannot be inferred, or too few tasks remain (the message lists why studies were
            skipped).
    """
    report = ExtractionReport()
    read = _read_studies(sources, studies, report)
    pooled = _pooled_space(space, read, report)
    target = space or pooled
    kept: list[tuple[_Study, list[dict[str, Any]], np.ndarray]] = []
    for st in read:
        configs, values = _usable_trials(st.trials, pooled, report)
        if len(values) < min_trials:
            why = f"only {len(values)} usable trial(s) of {len(st.trials)} (need {min_trials})"
            if not values and st.trials:
                why += "; its parameters do not fit the search space"
            report.skipped_studies.append((st.task, why))
            continue
        kept.append((st, configs, np.asarray(values, dtype=np.float64)))
        report.used.append((st.task, len(values)))
    if len(kept) < min_tasks:
        details = "; ".join(report.lines()[1:6])
        raise MetaDatasetError(
            f"too little past data: {len(kept)} usable studies, need at least {min_tasks} "
            f"(each with >= {min_trials} complete trials in this space)."
            + (f" {details}." if details else "")
            + " Run more studies, or lower --min-trials."
        )
    features = _features(target, pooled, [c for _, configs, _ in kept for c in configs])
    tasks = [
        Task(
            name=st.task,
            source=st.source,
            study=st.name,
            direction=st.direction,
            configs=configs,
            x=features.encode(configs),
            values=v,
            z=rank_normalize(v, st.direction),
        )
        for st, configs, v in kept
    ]
    _count_params(tasks, report)
    return MetaDataset(target, tasks, report, features)


def infer_space(
    sources: Sequence[str], *, studies: Sequence[str] | None = None
) -> tuple[SearchSpace, ExtractionReport]:
    """The search space of past studies: each study's, pooled by parameter name.

    Each study's space is the one mttune recorded on it, else its trials' distributions
    (with conditional parameters detected); the objective's name is the one mttune recorded,
    when every study that recorded one agrees.

    Raises:
        MetaDatasetError: if a source cannot be read or no study set a parameter.
    """
    report = ExtractionReport()
    read = _read_studies(sources, studies, report)
    return _pooled_space(None, read, report), report


def _read_studies(
    sources: Sequence[str], studies: Sequence[str] | None, report: ExtractionReport
) -> list[_Study]:
    """Every single-objective study of the sources (or the named ones), with its space."""
    wanted = set(studies) if studies else None
    found: set[str] = set()
    expanded = expand_sources(sources)
    labels = _labels(expanded)
    out: list[_Study] = []
    for src in expanded:
        report.sources.append(public_url(src))
        try:
            storage = open_storage(normalize_url(src), read_only=True)
        except StorageError as e:
            raise MetaDatasetError(
                f"cannot read past studies from {public_url(src)!r}: {e}"
            ) from None
        for summary in storage.get_all_studies():
            name = summary.study_name
            if wanted is not None and name not in wanted:
                continue
            found.add(name)
            task_name = f"{labels[src]}:{name}"
            if len(summary.directions) != 1:
                report.skipped_studies.append((task_name, "multi-objective"))
                continue
            direction = summary.directions[0].name.lower()
            trials = storage.get_all_trials(summary._study_id, deepcopy=False)
            study_space = recorded_space(summary.user_attrs) or space_of_trials(trials, direction)
            objective = StudyAttr.OBJECTIVE.get(summary.user_attrs)
            out.append(_Study(task_name, src, name, direction, trials, study_space, objective))
    if wanted is not None and wanted - found:
        raise MetaDatasetError(
            f"study name(s) {sorted(wanted - found)} not found in {report.sources}."
        )
    return out


def _pooled_space(
    space: SearchSpace | None, read: Sequence[_Study], report: ExtractionReport
) -> SearchSpace:
    """The union of the studies' spaces (restricted to ``space``'s parameters, if given)."""
    spaces = [st.space for st in read if st.space is not None]
    if space is not None:
        kinds = {p.name: _is_categorical(p.distribution) for p in space}
        spaces = [_restrict(s, kinds) for s in spaces]
        spaces = [space, *(s for s in spaces if s is not None)]
    elif not spaces:
        raise MetaDatasetError(
            "cannot infer a search space: the studies have no trial with parameters. "
            "Pass --space SPACE.yaml, or studies with completed trials."
        )
    else:
        report.space_from = f"{len(spaces)} studies"
    try:
        pooled, notes = union_spaces(spaces, name=space.name if space else None)
    except SpaceError as e:
        raise MetaDatasetError(f"the studies' search spaces cannot be pooled: {e}") from None
    report.notes += notes
    names = {st.objective for st in read if st.objective}
    if space is None and len(names) == 1:  # the metric name every recording study agrees on
        pooled = SearchSpace(pooled.params, Objective(names.pop(), pooled.objective.direction))
    if space is not None:  # the given space's own order, conditions and objective
        report.notes[:] = [n for n in report.notes if "condition" not in n]
        params = {
            n: Param(n, pooled.params[n].distribution, p.condition, p.help)
            for n, p in space.params.items()
            if n in pooled.params
        }
        pooled = SearchSpace(params, space.objective, space.name)
    return pooled


def _is_categorical(dist: Any) -> bool:
    return type(dist).__name__ == "CategoricalDistribution"


def _restrict(space: SearchSpace, kinds: dict[str, bool]) -> SearchSpace | None:
    """The parameters of ``space`` that the given space has, with the same kind."""
    keep = {
        n: Param(n, p.distribution)
        for n, p in space.params.items()
        if n in kinds and kinds[n] == _is_categorical(p.distribution)
    }
    return SearchSpace(keep, space.objective, space.name) if keep else None


def _features(target: SearchSpace, pooled: SearchSpace, configs: Sequence[dict]) -> FeatureSpace:
    """The prior's coordinates: pooled ranges, presence columns where needed.

    A parameter needs a presence column when some config lacks it although ``target``
    says it is active there (a condition explains an absence; nothing else does).
    """
    masked = {name for c in configs for name in target.active_params(c) if name not in c}
    return FeatureSpace.from_space(pooled, masked=masked)


def _count_params(tasks: Sequence[Task], report: ExtractionReport) -> None:
    for t in tasks:
        names = {n for c in t.configs for n in c}
        for n in names:
            entry = report.params.setdefault(n, {"studies": 0, "trials": 0})
            entry["studies"] += 1
            entry["trials"] += sum(n in c for c in t.configs)


def _usable_trials(
    trials: Sequence[Any], space: SearchSpace, report: ExtractionReport
) -> tuple[list[dict[str, Any]], list[float]]:
    configs: list[dict[str, Any]] = []
    values: list[float] = []
    skipped = report.skipped_trials
    for t in trials:
        if t.state != TrialState.COMPLETE:
            skipped[f"state {t.state.name}"] += 1
            continue
        value = t.value
        if value is None or not math.isfinite(value):
            skipped["non-finite value"] += 1
            continue
        config, why = _mapped(t.params, space, report)
        if why is not None:
            skipped[why] += 1
            continue
        configs.append(config)
        values.append(float(value))
    return configs, values


def _mapped(
    params: dict[str, Any], space: SearchSpace, report: ExtractionReport
) -> tuple[dict[str, Any], str | None]:
    """The trial's values of the space's parameters, or why the trial cannot be used."""
    config: dict[str, Any] = {}
    for name, value in params.items():
        param = space.params.get(name)
        if param is None:
            report.ignored_params[name] += 1
            continue
        dist = param.distribution
        if _is_categorical(dist):
            if not any(type(c) is type(value) and c == value for c in dist.choices):
                return config, "other space"
        elif isinstance(value, bool) or not isinstance(value, int | float):
            return config, "other space"
        config[name] = value
    if not config:
        return config, "other space"
    return config, None
