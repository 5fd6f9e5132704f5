"""Strictly read-only, fast reading of studies for ``mttune review``.

SQLite files are read with :mod:`sqlite3` directly (a 100,000-trial study loads in about a
second, where Optuna's API needs minutes) and without leaving a trace:

* a database in rollback-journal mode is opened with ``mode=ro``: shared locks only;
* a WAL database with no ``-wal`` file (no writer has it open) is read as ``immutable=1``,
  which creates no ``-shm``/``-wal`` files, so a read-only file or folder works; the file's
  size and mtime are checked after the read and the read is repeated with ``mode=ro`` should
  a writer have appeared meanwhile;
* a WAL database with a live ``-wal`` (a run is writing) is opened with ``mode=ro``, which
  sees every committed trial; when the folder is read-only the three files are read through
  a private temporary copy.

Other storages (RDB URLs, journal files) and SQLite files of an older Optuna schema are read
through Optuna, opened with :func:`tuner.studies.open_storage` ``(read_only=True)``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import math
import shutil
import sqlite3
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    json_to_distribution,
)
from optuna.trial import TrialState

from tuner._errors import MttuneError
from tuner.studies import (
    Attr,
    StorageError,
    StudyAttr,
    StudyNotFoundError,
    TrialAttr,
    canonical_trial_attrs,
    check_sqlite_file,
    connect_read_only,
    is_orphaned_wal,
    is_wal_database,
    normalize_url,
    public_url,
    sqlite_path,
)

__all__ = [
    "ATTR_KEYS",
    "ReviewError",
    "StudyData",
    "StudyInfo",
    "list_studies",
    "read_study",
    "verify_tag",
]

# The trial user attributes review uses; others are never read (they can be large).
ATTR_KEYS = (
    TrialAttr.VERIFY,
    TrialAttr.FAIL_REASON,
    TrialAttr.PRUNE_REASON,
    TrialAttr.INTERRUPTED,
    TrialAttr.RETRY_OF,
    TrialAttr.SOURCE,
    TrialAttr.PRED_MEAN,
    TrialAttr.PRED_STD,
    TrialAttr.CONCORDANCE,
    TrialAttr.CONCORDANCE_ZERO_SHOT,
    TrialAttr.POOR,
    TrialAttr.GUARD,
)
_GUARD = TrialAttr.GUARD.key

_REQUIRED_COLUMNS = {
    "studies": {"study_id", "study_name"},
    "study_directions": {"study_id", "direction", "objective"},
    "study_user_attributes": {"study_id", "key", "value_json"},
    "trials": {"trial_id", "number", "study_id", "state"},
    "trial_values": {"trial_id", "objective", "value", "value_type"},
    "trial_params": {"trial_id", "param_name", "param_value", "distribution_json"},
    "trial_user_attributes": {"trial_id", "key", "value_json"},
}


class ReviewError(MttuneError):
    """A study cannot be reviewed or verified as asked (the message says why and what to do)."""


@dataclasses.dataclass(frozen=True)
class StudyInfo:
    """One line of the study list: name, direction, trial counts and best value."""

    name: str
    directions: tuple[str, ...]
    n_trials: int
    n_complete: int
    n_pruned: int
    n_failed: int
    best_value: float | None
    last_start: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "study": self.name,
            "direction": ",".join(self.directions),
            "trials": self.n_trials,
            "complete": self.n_complete,
            "pruned": self.n_pruned,
            "failed": self.n_failed,
            "best_value": self.best_value,
            "last_start": self.last_start,
        }


class _ParamsView(Sequence[dict[str, Any]]):
    """Each trial's parameters, decoded on access from the internal-value matrix."""

    def __init__(self, data: StudyData, distributions: bool = False) -> None:
        self._data = data
        self._distributions = distributions

    def __len__(self) -> int:
        return len(self._data.numbers)

    def __getitem__(self, i: Any) -> Any:
        if not isinstance(i, int | np.integer):
            raise TypeError("index a single trial row")
        data = self._data
        out: dict[str, Any] = {}
        row = data.internal[i]
        for j, (name, column_dist) in enumerate(data.distributions.items()):
            v = row[j]
            if v == math.inf:
                continue
            dist = data.cell_distributions.get((int(i), j), column_dist)
            out[name] = dist if self._distributions else dist.to_external_repr(float(v))
        return out


@dataclasses.dataclass
class StudyData:
    """A single-objective study, trials as columns (``numbers[i]``, ``values[i]``, ...).

    Attributes:
        storage: The storage location as given.
        name: Study name.
        direction: ``minimize`` or ``maximize``.
        user_attrs: The study's user attributes.
        numbers: Trial numbers, ascending.
        states: Trial state names (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``, ``WAITING``).
        values: Objective values (``nan`` where a trial has none).
        distributions: The latest distribution of every parameter.
        attrs: Each trial's user attributes among :data:`ATTR_KEYS` (and those asked for),
            under their current names (:func:`tuner.studies.canonical_trial_attrs`).
        internal: Parameters in Optuna's internal (float) representation, one column per
            entry of ``distributions`` (``inf`` where a trial does not set it): what
            identical configs are grouped by.
        cell_distributions: ``(row, column)`` cells whose distribution is not the column's.
        params: Each trial's parameters (external representation), decoded on access.
        trial_distributions: Each trial's distributions, on access.
        tags: The ``verify`` tag of each verification run, by row.
        verification: Whether each row is a verification run (``mttune verify``).

    :attr:`TrialAttr.GUARD` is kept only where the guard fired and on the last trial that has it:
    all that review reports, and decoding 100,000 of them would take a second.
    """

    storage: str
    name: str
    direction: str
    user_attrs: dict[str, Any]
    numbers: np.ndarray
    states: np.ndarray
    values: np.ndarray
    distributions: dict[str, BaseDistribution]
    attrs: list[dict[str, Any]]
    internal: np.ndarray
    cell_distributions: dict[tuple[int, int], BaseDistribution]
    params: _ParamsView = dataclasses.field(init=False)
    trial_distributions: _ParamsView = dataclasses.field(init=False)
    tags: dict[int, dict[str, Any]] = dataclasses.field(init=False)
    verification: np.ndarray = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.params = _ParamsView(self)
        self.trial_distributions = _ParamsView(self, distributions=True)
        self.tags = {}
        for i, attrs in enumerate(self.attrs):
            if TrialAttr.VERIFY.key in attrs:
                tag = verify_tag(attrs)
                if tag is not None:
                    self.tags[i] = tag
        self.verification = np.zeros(len(self.numbers), dtype=bool)
        self.verification[list(self.tags)] = True
        _thin_guards(self.attrs)

    def __len__(self) -> int:
        return len(self.numbers)

    @property
    def objective(self) -> str:
        """The objective's metric name (as ``mttune run`` recorded it), else ``value``."""
        name = StudyAttr.OBJECTIVE.get(self.user_attrs)
        return name or "value"

    @property
    def sign(self) -> float:
        """``+1`` when minimising, ``-1`` when maximising: ``sign * value`` is lower-better."""
        return 1.0 if self.direction == "minimize" else -1.0


def verify_tag(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The verification tag of a trial (:attr:`TrialAttr.VERIFY`) when it is well formed."""
    tag = TrialAttr.VERIFY.get(attrs)
    if isinstance(tag, dict) and tag.get("kind") in ("repeat", "perturb"):
        return tag
    return None


def _thin_guards(attrs: list[dict[str, Any]]) -> None:
    """Keep the guard's state only where it fired and on the last trial that has it."""
    rows = [i for i, a in enumerate(attrs) if _GUARD in a]
    for i in rows[:-1]:
        guard = attrs[i][_GUARD]
        if isinstance(guard, str):  # still JSON text (see _sql_study)
            if "true" not in guard:  # cannot have fired
                del attrs[i][_GUARD]
                continue
            guard = attrs[i][_GUARD] = _json(guard)
        if not (isinstance(guard, dict) and guard.get("fired")):
            del attrs[i][_GUARD]
    if rows and isinstance(attrs[rows[-1]][_GUARD], str):
        attrs[rows[-1]][_GUARD] = _json(attrs[rows[-1]][_GUARD])


# ---------------------------------------------------------------------- public entry points
def list_studies(location: str) -> list[StudyInfo]:
    """The studies of a storage with their size and best value (read-only).

    Raises:
        StorageError: if the location is not a readable Optuna storage.
    """
    url = normalize_url(location)
    db = sqlite_path(url)
    if db is not None and _fast_schema(db):
        with _reading(db) as con:
            return _sql_list(con)
    return _api_list(location)


def read_study(location: str, study_name: str, *, extra_attrs: Sequence[Attr] = ()) -> StudyData:
    """Read one study's trials (read-only).

    Args:
        location: Storage URL, SQLite path or journal file.
        study_name: The study.
        extra_attrs: Trial user attributes to read besides :data:`ATTR_KEYS` (e.g. the seed).

    Raises:
        StorageError: if the location is not a readable Optuna storage.
        StudyNotFoundError: if it has no study of that name (the message lists those it has).
        ReviewError: if the study has several objectives.
    """
    url = normalize_url(location)
    db = sqlite_path(url)
    if db is not None and _fast_schema(db):
        with _reading(db) as con:
            return _sql_study(con, location, study_name, extra_attrs)
    return _api_study(location, study_name, extra_attrs)


# ---------------------------------------------------------------------- SQLite access
def _uri(db: Path, query: str) -> str:
    return f"file:{urllib.parse.quote(str(db.resolve()))}?{query}"


def _stamp(db: Path) -> tuple[int, int, bool]:
    st = db.stat()
    wal = Path(f"{db}-wal")
    return st.st_size, st.st_mtime_ns, wal.exists() and wal.stat().st_size > 0


class _Reader:
    """Runs queries and returns all rows; optionally re-reads when a writer appeared."""

    def __init__(
        self, con: sqlite3.Connection, db: Path, stamp: tuple[int, int, bool] | None
    ) -> None:
        self._con = con
        self._db = db
        self._stamp = stamp

    def execute(self, sql: str, args: tuple = ()) -> list[tuple]:
        rows = self._con.execute(sql, args).fetchall()
        if self._stamp is not None and _stamp(self._db) != self._stamp:
            # A writer opened the database during an immutable read: use the locking protocol.
            with _connect_ro(self._db) as con:
                return con.execute(sql, args).fetchall()
        return rows


@contextlib.contextmanager
def _reading(db: Path) -> Iterator[_Reader]:
    """A read-only connection that leaves no file behind (see the module docstring)."""
    check_sqlite_file(db)
    try:
        if is_wal_database(db) and not _stamp(db)[2]:
            before = _stamp(db)
            con = sqlite3.connect(_uri(db, "immutable=1"), uri=True)
            try:
                yield _Reader(con, db, before)
            finally:
                con.close()
        elif is_orphaned_wal(db):  # a killed writer's WAL: mode=ro would rebuild its -shm
            with contextlib.closing(connect_read_only(db)) as con:
                yield _Reader(con, db, None)
        else:
            with _connect_ro(db) as con:
                yield _Reader(con, db, None)
    except sqlite3.DatabaseError as e:
        raise StorageError(f"{db}: cannot read the SQLite database: {e}") from None
    except _DamagedRow as e:
        raise StorageError(
            f"{db}: {e}; the database was edited or is damaged. Restore it from a copy, or "
            "delete that trial's rows."
        ) from None


class _DamagedRow(Exception):
    """A study row no Optuna could have written (found while reading it)."""


@contextlib.contextmanager
def _connect_ro(db: Path) -> Iterator[sqlite3.Connection]:
    con = sqlite3.connect(_uri(db, "mode=ro"), uri=True, timeout=30)
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchall()
    except sqlite3.OperationalError:
        con.close()
        # A live WAL in a folder we may not write: read a private copy of the three files.
        tmp = Path(tempfile.mkdtemp(prefix="mttune-review-"))
        try:
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{db}{suffix}")
                if src.exists():
                    shutil.copyfile(src, tmp / f"{db.name}{suffix}")
            con = sqlite3.connect(tmp / db.name, timeout=30)
            try:
                yield con
            finally:
                con.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    try:
        yield con
    finally:
        con.close()


def _fast_schema(db: Path) -> bool:
    """Whether the file has Optuna's current tables (else Optuna reads it, upgraded)."""
    with _reading(db) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "studies" not in tables or "trials" not in tables:
            raise StorageError(
                f"{db}: an SQLite database but not an Optuna storage (no 'studies'/'trials' "
                "tables). Pass a study database written by mttune run or Optuna."
            )
        for table, needed in _REQUIRED_COLUMNS.items():
            if table not in tables:
                return False
            cols = {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
            if not needed <= cols:
                return False
    return True


def _sql_list(con: _Reader) -> list[StudyInfo]:
    studies = con.execute("SELECT study_id, study_name FROM studies ORDER BY study_id")
    directions: dict[int, list[str]] = {}
    for sid, direction, _ in con.execute(
        "SELECT study_id, direction, objective FROM study_directions ORDER BY study_id, objective"
    ):
        directions.setdefault(sid, []).append(str(direction).lower())
    counts: dict[int, dict[str, int]] = {}
    for sid, state, n in con.execute(
        "SELECT study_id, state, count(*) FROM trials GROUP BY study_id, state"
    ):
        counts.setdefault(sid, {})[state] = n
    best: dict[int, tuple[float, float]] = {}
    for sid, lo, hi in con.execute(
        "SELECT t.study_id, min(v.value), max(v.value) FROM trial_values v "
        "JOIN trials t ON t.trial_id = v.trial_id WHERE t.state = 'COMPLETE' "
        "AND v.objective = 0 AND v.value_type = 'FINITE' GROUP BY t.study_id"
    ):
        best[sid] = (lo, hi)
    last = dict(con.execute("SELECT study_id, max(datetime_start) FROM trials GROUP BY study_id"))
    return [
        _study_info(
            name,
            tuple(directions.get(sid, ["minimize"])),
            counts.get(sid, {}),
            best.get(sid),
            last.get(sid),
        )
        for sid, name in studies
    ]


def _study_info(
    name: str,
    directions: tuple[str, ...],
    counts: Mapping[str, int],
    extremes: tuple[float, float] | None,
    last_start: Any,
) -> StudyInfo:
    """One line of the study list (both readers).

    Args:
        name: The study.
        directions: Its directions.
        counts: Its trials by state name.
        extremes: The lowest and highest finite value of its completed trials, if any.
        last_start: When its last trial started, if any (a datetime or its text).
    """
    value = None
    if extremes is not None and len(directions) == 1:
        value = extremes[0] if directions[0] == "minimize" else extremes[1]
    return StudyInfo(
        name=name,
        directions=directions,
        n_trials=sum(counts.values()),
        n_complete=counts.get("COMPLETE", 0),
        n_pruned=counts.get("PRUNED", 0),
        n_failed=counts.get("FAIL", 0),
        best_value=None if value is None else float(value),
        last_start=None if last_start is None else str(last_start)[:19],
    )


def _sql_study(
    con: _Reader, location: str, study_name: str, extra_attrs: Sequence[Attr] = ()
) -> StudyData:
    rows = con.execute(
        "SELECT study_id FROM studies WHERE study_name = ?",
        (study_name,),
    )
    if not rows:
        names = [r[0] for r in con.execute("SELECT study_name FROM studies ORDER BY study_id")]
        raise _not_found(study_name, names)
    sid = rows[0][0]
    dirs = [
        str(r[0]).lower()
        for r in con.execute(
            "SELECT direction FROM study_directions WHERE study_id = ? ORDER BY objective", (sid,)
        )
    ]
    direction = _direction(study_name, dirs)
    user_attrs = {}
    for key, value_json in con.execute(
        "SELECT key, value_json FROM study_user_attributes WHERE study_id = ?", (sid,)
    ):
        user_attrs[key] = _json(value_json)
    trials = con.execute(
        "SELECT trial_id, number, state FROM trials WHERE study_id = ? ORDER BY number", (sid,)
    )
    index = {tid: i for i, (tid, _, _) in enumerate(trials)}
    n = len(trials)
    values = _sql_values(con, sid, index)
    params = _SqlParams.read(con, sid, index)
    attrs = _sql_attrs(con, sid, index, extra_attrs)
    latest = params.latest()
    names = _column_order(user_attrs, latest)
    matrix, cells = params.matrix(n, names, latest)
    return StudyData(
        storage=public_url(location),
        name=study_name,
        direction=direction,
        user_attrs=user_attrs,
        numbers=np.fromiter((r[1] for r in trials), dtype=np.int64, count=n),
        states=np.array([r[2] for r in trials], dtype="<U8"),
        values=values,
        distributions={name: latest[name] for name in names},
        attrs=attrs,
        internal=matrix,
        cell_distributions=cells,
    )


def _sql_values(con: _Reader, sid: int, index: dict[int, int]) -> np.ndarray:
    """Each trial's objective value (``nan`` where it has none)."""
    values = np.full(len(index), np.nan)
    for tid, value, value_type in con.execute(
        "SELECT v.trial_id, v.value, v.value_type FROM trial_values v "
        "JOIN trials t ON t.trial_id = v.trial_id WHERE t.study_id = ? AND v.objective = 0",
        (sid,),
    ):
        if value_type == "INF_POS":
            value = math.inf
        elif value_type == "INF_NEG":
            value = -math.inf
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _DamagedRow(f"trial_values of trial_id {tid} holds {value!r}, not a number")
        values[index[tid]] = value
    return values


def _sql_attrs(
    con: _Reader, sid: int, index: dict[int, int], extra_attrs: Sequence[Attr]
) -> list[dict[str, Any]]:
    """Each trial's user attributes among those review reads, under their current names."""
    attrs: list[dict[str, Any]] = [{} for _ in range(len(index))]
    keys = _attr_names(extra_attrs)
    marks = ",".join("?" * len(keys))
    for tid, key, value_json in con.execute(
        "SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a "
        f"JOIN trials t ON t.trial_id = a.trial_id WHERE t.study_id = ? AND a.key IN ({marks})",
        (sid, *keys),
    ):
        # Guards stay JSON text until StudyData keeps the few it needs (_thin_guards).
        attrs[index[tid]][key] = value_json if key == _GUARD else _json(value_json)
    return _canonical(attrs)


@dataclasses.dataclass
class _SqlParams:
    """A study's parameters as read: ``(row, name, internal value)`` triples.

    A name's distribution JSON is decoded once (and again only where it changes).

    Attributes:
        rows: The row of each triple.
        names: The name of each triple.
        values: The internal value of each triple.
        cell_json: ``(row, name, json)`` where a distribution is not the name's first.
        first_json: The first distribution of each name.
        last_json: The row and distribution of each name's last trial.
    """

    rows: list[int] = dataclasses.field(default_factory=list)
    names: list[str] = dataclasses.field(default_factory=list)
    values: list[float] = dataclasses.field(default_factory=list)
    cell_json: list[tuple[int, str, str]] = dataclasses.field(default_factory=list)
    first_json: dict[str, str] = dataclasses.field(default_factory=dict)
    last_json: dict[str, tuple[int, str]] = dataclasses.field(default_factory=dict)
    _decoded: dict[str, BaseDistribution] = dataclasses.field(default_factory=dict)

    @classmethod
    def read(cls, con: _Reader, sid: int, index: dict[int, int]) -> _SqlParams:
        """One pass over the study's parameters."""
        out = cls()
        for tid, name, internal, dist_json in con.execute(
            "SELECT p.trial_id, p.param_name, p.param_value, p.distribution_json "
            "FROM trial_params p JOIN trials t ON t.trial_id = p.trial_id WHERE t.study_id = ?",
            (sid,),
        ):
            i = index[tid]
            out.rows.append(i)
            out.names.append(name)
            out.values.append(internal)
            known = out.first_json.get(name)
            if known is None:
                out.first_json[name] = dist_json
            elif known != dist_json:
                out.cell_json.append((i, name, dist_json))
            if i >= out.last_json.get(name, (-1, ""))[0]:
                out.last_json[name] = (i, dist_json)
        return out

    def distribution(self, text: str) -> BaseDistribution:
        """A distribution from its JSON (decoded once)."""
        if text not in self._decoded:
            try:
                self._decoded[text] = json_to_distribution(text)
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                raise _DamagedRow(
                    f"a parameter's distribution_json {text[:80]!r} is not a distribution ({e})"
                ) from None
        return self._decoded[text]

    def latest(self) -> dict[str, BaseDistribution]:
        """Each parameter's latest distribution: that of the last trial that has it.

        Also when a range went back to an earlier one.
        """
        return {name: self.distribution(text) for name, (_, text) in self.last_json.items()}

    def matrix(
        self, n: int, names: list[str], latest: dict[str, BaseDistribution]
    ) -> tuple[np.ndarray, dict[tuple[int, int], BaseDistribution]]:
        """The internal values ``(n, len(names))``, and the cells off their column's latest.

        A cell's distribution is kept only where it is not its column's latest one.
        """
        column = {name: j for j, name in enumerate(names)}
        matrix = np.full((n, len(names)), np.inf)
        if self.rows:
            cols = np.fromiter(
                (column[x] for x in self.names), dtype=np.int64, count=len(self.names)
            )
            matrix[np.array(self.rows), cols] = np.array(self.values, dtype=np.float64)
        cells: dict[tuple[int, int], BaseDistribution] = {}
        if self.cell_json:
            changed = {name for _, name, _ in self.cell_json}
            for i, name, text in self.cell_json:
                cells[(i, column[name])] = self.distribution(text)
            for i, name in zip(self.rows, self.names, strict=True):
                if name in changed and (i, column[name]) not in cells:
                    cells[(i, column[name])] = self.distribution(self.first_json[name])
            for key, dist in list(cells.items()):
                if dist == latest[names[key[1]]]:
                    del cells[key]
        _check_choices(matrix, names, latest, cells)
        return matrix, cells


def _check_choices(
    matrix: np.ndarray,
    names: list[str],
    latest: dict[str, BaseDistribution],
    cells: dict[tuple[int, int], BaseDistribution],
) -> None:
    """Fail on a categorical value that is no index of its choices (one pass per column)."""
    for j, name in enumerate(names):
        dist = latest[name]
        if not isinstance(dist, CategoricalDistribution):
            continue
        column = matrix[:, j]
        bad = np.flatnonzero(
            (column != np.inf) & ((column < 0) | (column >= len(dist.choices)) | (column % 1 != 0))
        )
        for i in bad:
            if (int(i), j) not in cells:  # a cell of another distribution is checked by it
                raise _DamagedRow(
                    f"parameter {name!r} of trial row {int(i)} is choice index {column[i]:g}, "
                    f"but it has {len(dist.choices)} choices"
                )


def _column_order(user_attrs: dict[str, Any], latest: Mapping[str, Any]) -> list[str]:
    """The parameters of ``latest`` in the order of the recorded search space, others after."""
    space = StudyAttr.SPACE.get(user_attrs)
    names = list(space.get("params", {})) if space is not None else []
    order = {name: k for k, name in enumerate(names + [n for n in latest if n not in names])}
    return sorted(latest, key=lambda k: order.get(k, len(order)))


def _json(text: str) -> Any:
    """Decode an attribute's JSON (plain strings and numbers without the json module)."""
    if not isinstance(text, str) or not text:
        return text
    first = text[0]
    if first == '"' and "\\" not in text and text.count('"') == 2:
        return text[1:-1]
    if first in "-0123456789":
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                pass
    try:
        return json.loads(text)
    except ValueError:
        return text


def _not_found(name: str, names: list[str]) -> StudyNotFoundError:
    return StudyNotFoundError(
        f"no study named {name!r} in this storage; it has: {', '.join(names[:20]) or 'none'}. "
        "List them with 'mttune review STORAGE' (without --study)."
    )


def _direction(name: str, directions: list[str]) -> str:
    """The direction of a single-objective study (``minimize`` when none is recorded)."""
    if len(directions) > 1:
        raise ReviewError(
            f"study {name!r} has {len(directions)} objectives ({', '.join(directions)}); "
            "mttune review and verify work on single-objective studies. Review each objective "
            "in a single-objective study, or use optuna-dashboard for Pareto fronts."
        )
    return directions[0] if directions else "minimize"


# ---------------------------------------------------------------------- through Optuna
def _api_storage(location: str) -> optuna.storages.BaseStorage:
    from tuner.studies import open_storage

    return open_storage(location, read_only=True)


def _api_list(location: str) -> list[StudyInfo]:
    storage = _api_storage(location)
    out = []
    for s in storage.get_all_studies():
        trials = storage.get_all_trials(s._study_id, deepcopy=False)
        complete = [
            t.values[0]
            for t in trials
            if t.state == TrialState.COMPLETE and t.values and math.isfinite(t.values[0])
        ]
        starts = [t.datetime_start for t in trials if t.datetime_start is not None]
        out.append(
            _study_info(
                s.study_name,
                tuple(d.name.lower() for d in s.directions),
                collections.Counter(t.state.name for t in trials),
                (min(complete), max(complete)) if complete else None,
                max(starts) if starts else None,
            )
        )
    return out


def _api_study(location: str, study_name: str, extra_attrs: Sequence[Attr] = ()) -> StudyData:
    storage = _api_storage(location)
    studies = {s.study_name: s for s in storage.get_all_studies()}
    if study_name not in studies:
        raise _not_found(study_name, list(studies))
    frozen = studies[study_name]
    direction = _direction(study_name, [d.name.lower() for d in frozen.directions])
    trials = sorted(storage.get_all_trials(frozen._study_id, deepcopy=False), key=_number)
    values = np.full(len(trials), np.nan)
    latest: dict[str, BaseDistribution] = {}
    for i, t in enumerate(trials):
        if t.values:
            values[i] = t.values[0]
        latest.update(t.distributions)
    names = _column_order(frozen.user_attrs, latest)
    matrix, cells = _api_matrix(trials, names, latest)
    return StudyData(
        storage=public_url(location),
        name=study_name,
        direction=direction,
        user_attrs=dict(frozen.user_attrs),
        numbers=np.array([t.number for t in trials], dtype=np.int64),
        states=np.array([t.state.name for t in trials], dtype="<U8"),
        values=values,
        distributions={name: latest[name] for name in names},
        attrs=_canonical(
            [
                {k: t.user_attrs[k] for k in _attr_names(extra_attrs) if k in t.user_attrs}
                for t in trials
            ]
        ),
        internal=matrix,
        cell_distributions=cells,
    )


def _api_matrix(
    trials: Sequence[optuna.trial.FrozenTrial],
    names: list[str],
    latest: dict[str, BaseDistribution],
) -> tuple[np.ndarray, dict[tuple[int, int], BaseDistribution]]:
    """The internal values ``(n, len(names))``, and the cells off their column's latest.

    A cell's distribution is kept only where it is not its column's latest one.
    """
    matrix = np.full((len(trials), len(names)), np.inf)
    cells: dict[tuple[int, int], BaseDistribution] = {}
    for i, t in enumerate(trials):
        for j, name in enumerate(names):
            if name in t.params:
                dist = t.distributions[name]
                matrix[i, j] = dist.to_internal_repr(t.params[name])
                if dist != latest[name]:
                    cells[(i, j)] = dist
    return matrix, cells


def _attr_names(extra: Sequence[Attr]) -> tuple[str, ...]:
    """Every name (current and legacy) of the attributes review reads."""
    return tuple(name for attr in (*ATTR_KEYS, *extra) for name in attr.names)


_LEGACY_NAMES = frozenset(name for attr in TrialAttr.all() for name in attr.legacy)


def _canonical(attrs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each trial's attributes under their current names (studies of earlier versions)."""
    return [canonical_trial_attrs(a) if _LEGACY_NAMES.intersection(a) else a for a in attrs]


def _number(t: optuna.trial.FrozenTrial) -> int:
    return t.number
