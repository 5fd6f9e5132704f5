"""Stage 4: the MAML prior: meta-training on ``torch.func``, calibrated predictions, files."""

from typing import TYPE_CHECKING

from tuner._lazy import lazy_exports

if TYPE_CHECKING:
    from tuner.prior._builtin import BUILTIN_DIR, builtin_names, builtin_path
    from tuner.prior._config import MAMLConfig, ModelConfig
    from tuner.prior._coverage import MEASURED_STRATEGIES, PortfolioCoverage
    from tuner.prior._file import (
        FORMAT,
        PriorFileError,
        check_prior_target,
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

_EXPORTS = {
    "tuner.prior._builtin": ("BUILTIN_DIR", "builtin_names", "builtin_path"),
    "tuner.prior._config": ("MAMLConfig", "ModelConfig"),
    "tuner.prior._coverage": ("MEASURED_STRATEGIES", "PortfolioCoverage"),
    "tuner.prior._file": (
        "FORMAT",
        "PriorFileError",
        "check_prior_target",
        "load_prior",
        "resolve_prior",
        "save_prior",
    ),
    "tuner.prior._prior": (
        "AdaptedPrior",
        "Calibration",
        "MetaPrior",
        "Prediction",
        "diverse_top",
        "observation_targets",
    ),
    "tuner.prior._train": ("meta_train", "resolve_device"),
}

__all__ = [
    "BUILTIN_DIR",
    "FORMAT",
    "MEASURED_STRATEGIES",
    "AdaptedPrior",
    "Calibration",
    "MAMLConfig",
    "MetaPrior",
    "ModelConfig",
    "PortfolioCoverage",
    "Prediction",
    "PriorFileError",
    "builtin_names",
    "builtin_path",
    "check_prior_target",
    "diverse_top",
    "load_prior",
    "meta_train",
    "observation_targets",
    "resolve_device",
    "resolve_prior",
    "save_prior",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
