"""Stage 3: the meta-dataset: past studies as regression tasks with normalised targets."""

from tuner.metadataset._extract import (
    ExtractionReport,
    MetaDataset,
    MetaDatasetError,
    Task,
    build_metadataset,
    expand_sources,
    infer_space,
)
from tuner.metadataset._normalize import (
    observation_targets,
    orient,
    rank_normalize,
    relative_to_support,
)

__all__ = [
    "ExtractionReport",
    "MetaDataset",
    "MetaDatasetError",
    "Task",
    "build_metadataset",
    "expand_sources",
    "infer_space",
    "observation_targets",
    "orient",
    "rank_normalize",
    "relative_to_support",
]
