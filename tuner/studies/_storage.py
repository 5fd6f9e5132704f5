"""Opening Optuna storages: for running studies (read-write) and for reading them (read-only).

Accepted locations:

* any SQLAlchemy URL Optuna accepts (``sqlite:///studies/x.db``, ``postgresql://...``);
* a plain path to a SQLite file (``studies/x.db``), taken as ``sqlite:///<path>``;
* a path ending in ``.log`` or ``.jsonl``: an Optuna journal file (``JournalFileBackend``).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import shutil
import sqlite3
import stat
import struct
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tuner._errors import MttuneError
from tuner.studies._journal import HeartbeatJournalStorage, SafeJournalFileBackend

__all__ = [
    "DEFAULT_STUDIES_DIR",
    "StorageError",
    "StudyNotFoundError",
    "check_sqlite_file",
    "connect_read_only",
    "default_storage_url",
    "is_orphaned_wal",
    "is_wal_database",
    "load_study",
    "normalize_url",
    "open_storage",
    "public_url",
    "sqlite_path",
    "storage_failure",
]

DEFAULT_STUDIES_DIR = Path("studies")
_JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")


class StorageError(MttuneError):
    """A storage location is missing, unreadable, not an Optuna storage, or not writable."""


class StudyNotFoundError(MttuneError, KeyError):
    """The storage has no study of the requested name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def default_storage_url(study_name: str, directory: Path = DEFAULT_STUDIES_DIR) -> str:
    """``sqlite:///studies/<study>.db``: where ``mttune run`` keeps a study by default."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in study_name)
    return f"sqlite:///{directory / safe}.db"


def public_url(url: str) -> str:
    """``url`` with its password, if any, masked (``postgresql://u:***@host/db``).

    Every message and report that names a storage names it through this.
    """
    if "://" not in url:
        return url
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    # re-rendering percent-encodes a path's '@', '#', ':' or non-ASCII: only when needed
    return parsed.render_as_string(hide_password=True) if parsed.password else url


def _password(url: str) -> str | None:
    if "://" not in url:
        return None
    try:
        return make_url(url).password
    except ArgumentError:
        return None


def normalize_url(location: str) -> str:
    """Turn a bare SQLite path into a URL; leave URLs and journal paths alone."""
    if "://" in location or location.endswith(_JOURNAL_SUFFIXES):
        return location
    return f"sqlite:///{location}"


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite:///`` URL, else ``None``."""
    if not url.startswith("sqlite:///"):
        return None
    rest = url[len("sqlite:///") :]
    if rest.startswith("file:"):
        rest = rest[len("file:") :].split("?", 1)[0]
    return Path(rest.split("?", 1)[0]) if rest not in ("", ":memory:") else None


@dataclasses.dataclass
class _Opened:
    storage: BaseStorage
    cleanup: list[Path]


def open_storage(
    location: str,
    *,
    read_only: bool = False,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_trial_callback=None,
) -> BaseStorage:
    """Open an Optuna storage.

    Args:
        location: URL, SQLite path or journal-file path (see the module docstring).
        read_only: Never create, migrate or write anything. SQLite files are opened with
            ``mode=ro``; a database from an older Optuna schema is upgraded in a temporary
            copy, never in place.
        heartbeat_interval: Seconds between trial heartbeats (RDB, read-write only). Enables
            recovery of trials whose runner died.
        grace_period: Seconds without heartbeat after which a RUNNING trial counts as dead.
        stale_trial_callback: Called by Optuna with each trial found dead.

    Raises:
        StorageError: with the location and what to do about it.
    """
    url = normalize_url(location)
    if url.endswith(_JOURNAL_SUFFIXES) and "://" not in url:
        _check_local_path(Path(url))
        heartbeat = None if read_only else (heartbeat_interval, grace_period)
        return _open_journal(Path(url), heartbeat=heartbeat, callback=stale_trial_callback)
    db = sqlite_path(url)
    if db is not None:
        _check_local_path(db)
        return _open_sqlite(
            db,
            read_only=read_only,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            stale_trial_callback=stale_trial_callback,
        )
    if url in ("sqlite://", "sqlite:///:memory:"):
        # a database that lives in this process only: Optuna's in-memory storage (one lock
        # for every thread); one SQLite connection shared by threads interleaves transactions
        return optuna.storages.InMemoryStorage()
    _check_driver(url)
    try:
        if read_only:
            return RDBStorage(url, skip_table_creation=True, skip_compatibility_check=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _racing_creation(
                lambda: RDBStorage(
                    url,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=stale_trial_callback,
                )
            )
    except Exception as e:  # SQLAlchemy raises many types; all mean "cannot use it"
        detail, password = _first_line(e), _password(url)
        if password:  # a driver may quote the URL or its password back
            detail = detail.replace(password, "***")
        raise StorageError(f"cannot open storage {public_url(url)!r}: {detail}") from None


# DB-API module SQLAlchemy imports -> (what to install, the mttune extra that has it)
_DRIVERS = {
    "psycopg": ("psycopg[binary]", "postgres"),
    "psycopg2": ("psycopg2-binary", None),
    "pymysql": ("PyMySQL", "mysql"),
    "MySQLdb": ("mysqlclient", None),
}


def _check_driver(url: str) -> None:
    """Refuse a database URL whose Python driver is missing, naming the package to install."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except Exception:
        return  # not a URL SQLAlchemy knows: RDBStorage says what is wrong with it
    try:
        dialect.import_dbapi()
    except ImportError as e:
        module = e.name or parsed.get_driver_name()
        package, extra = _DRIVERS.get(module, (module, None))
        fix = f"pip install 'mttune[{extra}]'" if extra else f"pip install '{package}'"
        if module == "MySQLdb":
            fix += (
                ", or pip install 'mttune[mysql]' (PyMySQL) and write the URL as "
                f"{parsed.set(drivername='mysql+pymysql').render_as_string(hide_password=True)}"
            )
        raise StorageError(
            f"cannot open storage {url!r}: its driver {parsed.drivername!r} needs the Python "
            f"module {module!r}, which is not installed. Install it: {fix}."
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


# Tables that only Optuna's schema has; any of them means "an Optuna storage", perhaps one
# that another runner is creating right now.
_OPTUNA_TABLES = {"studies", "trials", "version_info", "alembic_version"}


def connect_read_only(db: Path) -> sqlite3.Connection:
    """An SQLite connection that reads ``db`` without writing anything, beside it included.

    * WAL left by a killed writer (:func:`is_orphaned_wal`): a private copy;
    * rollback-journal database: ``mode=ro`` (shared locks only);
    * WAL database that no writer has open (no ``-wal`` content): ``immutable=1``, since a
      ``mode=ro`` reader would create the ``-shm`` file;
    * WAL database being written (``-wal`` and ``-shm`` exist): ``mode=ro``, which uses the
      writer's files and creates none.
    """
    if is_orphaned_wal(db):
        return sqlite3.connect(_wal_copy(db), timeout=30, check_same_thread=False)
    path = urllib.parse.quote(str(db.resolve()))
    wal = Path(f"{db}-wal")
    live = wal.exists() and wal.stat().st_size > 0 and Path(f"{db}-shm").exists()
    query = "immutable=1" if is_wal_database(db) and not live else "mode=ro"
    return sqlite3.connect(f"file:{path}?{query}", uri=True, timeout=30, check_same_thread=False)


# SQLite's unix VFS: every connection that has a WAL database open holds a shared lock on
# this byte of the -shm file (the "dead man switch").
_SHM_DMS_BYTE = 128


def is_orphaned_wal(db: Path) -> bool:
    """Whether ``db`` has WAL content that no open connection owns (its writer was killed).

    A ``mode=ro`` reader would then rebuild the ``-shm`` index in place: such a database is
    read through a private copy. Where the lock cannot be tested, the WAL counts as owned.
    """
    wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
    try:
        if wal.stat().st_size == 0 or not shm.is_file():
            return False
        with open(shm, "rb") as f:
            query = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, _SHM_DMS_BYTE, 1, 0)
            answer = fcntl.fcntl(f.fileno(), fcntl.F_GETLK, query)
    except (OSError, AttributeError):  # gone, unreadable, or not a POSIX system
        return False
    return struct.unpack("hhqqi", answer)[0] == fcntl.F_UNLCK


_wal_copies: dict[tuple[str, int, int, int, int], Path] = {}


def _wal_copy(db: Path) -> Path:
    """A private copy of ``db`` and its ``-wal`` (made once per state of the two files)."""
    wal = Path(f"{db}-wal")
    st, wst = db.stat(), wal.stat()
    key = (str(db.resolve()), st.st_size, st.st_mtime_ns, wst.st_size, wst.st_mtime_ns)
    if key not in _wal_copies:
        copy = _private_copy_dir() / db.name
        shutil.copyfile(db, copy)
        shutil.copyfile(wal, f"{copy}-wal")
        _wal_copies[key] = copy
    return _wal_copies[key]


def is_wal_database(db: Path) -> bool:
    """Whether the database file is in WAL mode (header bytes 18-19 are 2)."""
    try:
        with open(db, "rb") as f:
            header = f.read(20)
    except OSError:
        return False
    return len(header) >= 20 and header[18] == 2


def _check_local_path(path: Path) -> None:
    """Refuse a storage path that is too long, or that is a FIFO, socket or device.

    A FIFO would block its reader for good.

    Raises:
        StorageError: naming the rule and the way round it.
    """
    _check_path_length(path)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing or unreadable: the caller says so in its own words
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a folder: the caller says so
        raise StorageError(
            f"{path}: not a regular file (a FIFO, socket or device); a study storage is an "
            "SQLite or journal file. Pass the path of one."
        )


def _check_path_length(path: Path) -> None:
    """Refuse a path the file system cannot name (one name or the whole path too long)."""
    full = path.absolute()
    folder = next((p for p in full.parents if os.path.isdir(p)), Path("/"))
    try:
        name_max, path_max = os.pathconf(folder, "PC_NAME_MAX"), os.pathconf(folder, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    longest = max(len(os.fsencode(part)) for part in full.parts)
    if longest > name_max or len(os.fsencode(full)) >= path_max:
        text = str(path)
        raise StorageError(
            f"{text[:60]}...: the storage path is too long for the file system ({len(text)} "
            f"characters, {longest} in one name; at most {name_max}). Use a shorter --study "
            "name or --storage path."
        )


def check_sqlite_file(db: Path, *, for_writing: bool = False) -> None:
    """Fail clearly on a path that is not an SQLite database with Optuna tables.

    With ``for_writing``, an empty database (or one whose Optuna tables are still being
    created by another process) is accepted: opening it creates the tables.
    """
    _check_local_path(db)
    if not db.exists():
        raise StorageError(
            f"{db}: no such study database. Check the path, or list studies with "
            "'mttune review <storage>'."
        )
    if db.is_dir():
        raise StorageError(f"{db}: is a directory, not an SQLite database file.")
    try:
        with open(db, "rb") as f:
            header = f.read(16)
    except OSError as e:
        raise StorageError(f"{db}: cannot read: {e.strerror}") from None
    if header and header != b"SQLite format 3\x00":
        raise StorageError(f"{db}: not an SQLite database (wrong file header).")
    try:
        con = connect_read_only(db)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise StorageError(f"{db}: not a readable SQLite database: {e}") from None
    if for_writing and (not tables or tables & _OPTUNA_TABLES):
        return
    if "studies" not in tables or "trials" not in tables:
        raise StorageError(
            f"{db}: an SQLite database but not an Optuna storage (no 'studies'/'trials' tables)."
        )


def _open_sqlite(
    db: Path,
    *,
    read_only: bool,
    heartbeat_interval: int | None,
    grace_period: int | None,
    stale_trial_callback,
) -> BaseStorage:
    engine_kwargs: dict = {"connect_args": {"timeout": 120}}
    if read_only:
        check_sqlite_file(db)
        try:
            return RDBStorage(
                f"sqlite:///{db.resolve()}",
                engine_kwargs={"creator": lambda: connect_read_only(db)},
                skip_table_creation=True,
            )
        except RuntimeError as e:
            if "upgrade" not in str(e):
                raise StorageError(f"{db}: cannot read: {_first_line(e)}") from None
            return _open_upgraded_copy(db)
        except Exception as e:
            raise StorageError(f"{db}: cannot read: {_first_line(e)}") from None
    if db.exists():
        check_sqlite_file(db, for_writing=True)
        if not os.access(db, os.W_OK):
            raise StorageError(
                f"{db}: the study database is read-only. Make it writable (chmod u+w), or "
                "copy it and pass the copy with --storage."
            )
    else:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"{db}: cannot create its folder: {e.strerror}") from None
    new = not db.exists() or db.stat().st_size == 0

    def make() -> BaseStorage:
        if new:
            # WAL lets readers (review, dashboards, a second runner) work while trials are
            # written. Only for databases mttune creates: an existing one keeps its mode.
            with contextlib.closing(sqlite3.connect(db, timeout=120)) as con:
                con.execute("PRAGMA journal_mode=WAL")
        return RDBStorage(
            f"sqlite:///{db}",
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=stale_trial_callback,
        )

    try:
        return _racing_creation(make)
    except Exception as e:
        msg = _first_line(e)
        hint = ""
        if "disk" in msg.lower() or "full" in msg.lower():
            hint = " The disk looks full: free space or use another --storage."
        elif "readonly" in msg.lower() or "read-only" in msg.lower():
            hint = " The database or its folder is read-only."
        raise StorageError(
            f"{db}: cannot open the study database for writing: {msg}.{hint}"
        ) from None


_CREATION_RACE = (
    "already exists",
    "UNIQUE constraint failed",
    "database is locked",
    "duplicate key value violates unique constraint",  # PostgreSQL's catalog, same race
)


def _racing_creation(make: Callable[[], BaseStorage]) -> BaseStorage:
    """``make()``, tried again while another runner is creating the same schema.

    Two runners creating the schema at once: one of them finds a table or the version stamp
    that the other has just made; the next try sees both.
    """
    for attempt in range(8):
        try:
            return make()
        except Exception as e:
            if not any(m in str(e) for m in _CREATION_RACE) or attempt == 7:
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def _private_copy_dir() -> Path:
    """A private temporary folder, removed when the process exits.

    The storage read through it stays usable until then.
    """
    tmp = Path(tempfile.mkdtemp(prefix="mttune-review-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return tmp


def _open_upgraded_copy(db: Path) -> BaseStorage:
    """Read a database of an older Optuna schema through an upgraded temporary copy."""
    copy = _private_copy_dir() / db.name
    shutil.copy2(db, copy)
    os.chmod(copy, 0o600)
    try:
        storage = RDBStorage(f"sqlite:///{copy}", skip_compatibility_check=True)
        storage.upgrade()
        return RDBStorage(f"sqlite:///{copy}")
    except Exception as e:
        raise StorageError(
            f"{db}: written by an older Optuna whose schema could not be upgraded in a "
            f"temporary copy: {_first_line(e)}"
        ) from None


def _open_journal(
    path: Path, *, heartbeat: tuple[int | None, int | None] | None, callback=None
) -> BaseStorage:
    """A journal file: read-only through a private copy (``heartbeat=None``), else in place.

    Written in place with heartbeats when ``heartbeat`` gives their interval.
    """
    given = path
    if heartbeat is None:
        if not path.is_file():
            raise StorageError(f"{path}: no such journal file.")
        _sniff_journal(path)
        # The journal backend takes a lock file beside the log; read through a private copy.
        copy = _private_copy_dir() / path.name
        shutil.copy2(path, copy)
        path = copy
    try:
        backend = SafeJournalFileBackend(str(path))
        interval, grace = heartbeat or (None, None)
        if interval is None:
            return JournalStorage(backend)
        return HeartbeatJournalStorage(
            backend,
            heartbeat_interval=interval,
            grace_period=grace or 2 * interval + 5,
            stale_trial_callback=callback,
        )
    except Exception as e:
        raise StorageError(f"{given}: not a readable Optuna journal: {_first_line(e)}") from None


def _sniff_journal(path: Path) -> None:
    """Refuse a non-empty file whose first line is not a journal operation.

    Optuna skips a bad *last* line as one being written, so a file of one garbage line
    would read as a journal without studies.
    """
    with open(path, "rb") as f:
        first = f.readline(1 << 16).strip()
    if not first:
        return
    try:
        op = json.loads(first)
    except (ValueError, UnicodeDecodeError):
        op = None
    if not isinstance(op, dict) or "op_code" not in op:
        raise StorageError(
            f"{path}: not an Optuna journal (its first line is not a journal operation). "
            "Journal storages are the *.log files that optuna.storages.JournalStorage writes."
        )


def load_study(storage: BaseStorage, study_name: str | None) -> optuna.Study:
    """Load one study; without a name, the storage's only study.

    Raises:
        StudyNotFoundError: naming the studies that do exist.
    """
    names = [s.study_name for s in storage.get_all_studies()]
    if study_name is None:
        if len(names) == 1:
            study_name = names[0]
        else:
            raise StudyNotFoundError(
                f"the storage holds {len(names)} studies ({', '.join(names[:10]) or 'none'}); "
                "choose one with --study NAME."
            )
    if study_name not in names:
        raise StudyNotFoundError(
            f"no study named {study_name!r} in this storage; it has: "
            f"{', '.join(names[:20]) or 'no studies'}."
        )
    return optuna.load_study(study_name=study_name, storage=storage, sampler=None)


# a write that failed for want of space: no space, over a file-size limit, over a quota
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def storage_failure(exc: BaseException) -> StorageError | None:
    """A clear :class:`StorageError` when ``exc`` (or its cause) is a database failure.

    Optuna wraps database errors (disk full, read-only file, lost server) in several layers;
    this finds the database's own message and says what to check. ``None`` when ``exc`` has
    nothing to do with the storage.
    """
    import sqlalchemy.exc

    seen: set[int] = set()
    chain: BaseException | None = exc
    db_error: BaseException | None = None
    internal = False
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if isinstance(chain, sqlalchemy.exc.DBAPIError) and chain.orig is not None:
            db_error = chain.orig
        elif isinstance(chain, sqlite3.Error) and db_error is None:
            db_error = chain
        elif isinstance(chain, OSError) and chain.errno in _DISK_FULL and db_error is None:
            db_error = chain  # a journal file's write
        internal = internal or isinstance(chain, optuna.exceptions.StorageInternalError)
        chain = chain.__cause__ or chain.__context__
    if db_error is None and not internal:
        return None
    detail = str(db_error or exc).strip().splitlines()[0] if (db_error or exc) else ""
    hint = ""
    low = detail.lower()
    if "disk" in low or "full" in low or "i/o" in low or isinstance(db_error, OSError):
        hint = " Is the disk full? Free space, or resume on another --storage."
    elif "readonly" in low or "read-only" in low:
        hint = " The database (or its folder) is read-only."
    elif "locked" in low:
        hint = " Another process holds the database locked; try again."
    return StorageError(
        f"the study storage failed: {detail}.{hint} Finished trials are kept; re-run the "
        "same command to resume."
    )
