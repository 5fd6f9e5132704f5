"""mttune: hyperparameter tuning that learns from past tuning.

The package follows the data flow, one stage per sub-package:

``space`` -> ``studies`` -> ``metadataset`` -> ``prior`` -> ``sampler`` -> ``runners``
-> ``review``

and ``cli`` on top. The most used names are re-exported here, lazily: ``import tuner`` stays
cheap (no torch) until one of them is used, which matters for trial subprocesses and Ray
workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuner._errors import MttuneError
from tuner._lazy import lazy_exports
from tuner._version import __version__

_EXPORTS = {
    "tuner._logging": ("get_verbosity", "set_verbosity"),
    "tuner.space": ("Encoder", "SearchSpace", "SpaceError", "load_space"),
    "tuner.studies": ("StorageError", "open_storage"),
    "tuner.prior": ("MetaPrior", "load_prior", "meta_train", "save_prior"),
    "tuner.sampler": ("MetaPriorSampler", "NegativeTransferGuard"),
    "tuner.runners": ("RunOptions", "ScriptSpec", "run_script", "run_study"),
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
    "get_verbosity",
    "load_prior",
    "load_space",
    "meta_train",
    "open_storage",
    "run_script",
    "run_study",
    "save_prior",
    "set_verbosity",
]

if TYPE_CHECKING:
    from tuner._logging import get_verbosity, set_verbosity
    from tuner.prior import MetaPrior, load_prior, meta_train, save_prior
    from tuner.runners import RunOptions, ScriptSpec, run_script, run_study
    from tuner.sampler import MetaPriorSampler, NegativeTransferGuard
    from tuner.space import Encoder, SearchSpace, SpaceError, load_space
    from tuner.studies import StorageError, open_storage


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
