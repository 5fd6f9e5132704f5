"""mttune: hyperparameter tuning that learns from past tuning.

The package follows the data flow, one stage per sub-package:

``space`` -> ``studies`` -> ``metadataset`` -> ``prior`` -> ``sampler`` -> ``runners``
-> ``review``

and ``cli`` on top. The most used names are re-exported here, lazily: ``import tuner`` stays
cheap (no torch) until one of them is used, which matters for trial subprocesses and Ray
workers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tuner._errors import MttuneError
from tuner._version import __version__

_EXPORTS = {
    "Encoder": "tuner.space",
    "SearchSpace": "tuner.space",
    "SpaceError": "tuner.space",
    "load_space": "tuner.space",
    "StorageError": "tuner.studies",
    "open_storage": "tuner.studies",
    "MetaPrior": "tuner.prior",
    "load_prior": "tuner.prior",
    "meta_train": "tuner.prior",
    "save_prior": "tuner.prior",
    "MetaPriorSampler": "tuner.sampler",
    "NegativeTransferGuard": "tuner.sampler",
    "RunOptions": "tuner.runners",
    "ScriptSpec": "tuner.runners",
    "run_script": "tuner.runners",
    "run_study": "tuner.runners",
}

__all__ = [
    "Encoder",
    "MetaPrior",
    "MetaPriorSampler",
    "MttuneError",
    "NegativeTransferGuard",
    "RunOptions",
    "ScriptSpec",
    "SearchSpace",
    "SpaceError",
    "StorageError",
    "__version__",
    "load_prior",
    "load_space",
    "meta_train",
    "open_storage",
    "run_script",
    "run_study",
    "save_prior",
]

if TYPE_CHECKING:
    from tuner.prior import MetaPrior, load_prior, meta_train, save_prior
    from tuner.runners import RunOptions, ScriptSpec, run_script, run_study
    from tuner.sampler import MetaPriorSampler, NegativeTransferGuard
    from tuner.space import Encoder, SearchSpace, SpaceError, load_space
    from tuner.studies import StorageError, open_storage


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tuner' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
