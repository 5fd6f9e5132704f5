"""mttune: hyperparameter tuning that learns from past tuning.

The package follows the data flow, one stage per sub-package:

``space`` -> ``studies`` -> ``metadataset`` -> ``prior`` -> ``sampler`` -> ``runners``
-> ``review``

and ``cli`` on top. The most used names are re-exported here.
"""

from tuner._errors import MttuneError
from tuner.prior import MetaPrior, load_prior, meta_train, save_prior
from tuner.runners import RunOptions, ScriptSpec, run_script, run_study
from tuner.sampler import MetaPriorSampler, NegativeTransferGuard
from tuner.space import Encoder, SearchSpace, SpaceError, load_space
from tuner.studies import StorageError, open_storage

__version__ = "0.1.0"

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
