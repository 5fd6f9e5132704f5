"""Stage 2: past and present studies in Optuna storages (opening, read-only access, lookup)."""

from tuner.studies._attrs import Attr, StudyAttr, TrialAttr, canonical_trial_attrs
from tuner.studies._infer import recorded_space, space_of_trials
from tuner.studies._storage import (
    DEFAULT_STUDIES_DIR,
    StorageError,
    StudyNotFoundError,
    check_sqlite_file,
    connect_read_only,
    default_storage_url,
    is_orphaned_wal,
    is_wal_database,
    load_study,
    normalize_url,
    open_storage,
    public_url,
    sqlite_path,
    storage_failure,
)

__all__ = [
    "DEFAULT_STUDIES_DIR",
    "Attr",
    "StorageError",
    "StudyAttr",
    "StudyNotFoundError",
    "TrialAttr",
    "canonical_trial_attrs",
    "check_sqlite_file",
    "connect_read_only",
    "default_storage_url",
    "is_orphaned_wal",
    "is_wal_database",
    "load_study",
    "normalize_url",
    "open_storage",
    "public_url",
    "recorded_space",
    "space_of_trials",
    "sqlite_path",
    "storage_failure",
]
