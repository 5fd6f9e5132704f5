"""Stage 4: the MAML prior: meta-training on ``torch.func``, calibrated predictions, files."""

from tuner.prior._builtin import BUILTIN_DIR, builtin_names, builtin_path
from tuner.prior._config import MAMLConfig, ModelConfig
from tuner.prior._file import (
    FORMAT,
    PriorFileError,
    load_prior,
    resolve_prior,
    save_prior,
)
from tuner.prior._prior import (
    AdaptedPrior,
    Calibration,
    MetaPrior,
    Prediction,
    diverse_top,
    observation_targets,
)
from tuner.prior._train import meta_train, resolve_device

__all__ = [
    "BUILTIN_DIR",
    "FORMAT",
    "AdaptedPrior",
    "Calibration",
    "MAMLConfig",
    "MetaPrior",
    "ModelConfig",
    "Prediction",
    "PriorFileError",
    "builtin_names",
    "builtin_path",
    "diverse_top",
    "load_prior",
    "meta_train",
    "observation_targets",
    "resolve_device",
    "resolve_prior",
    "save_prior",
]
