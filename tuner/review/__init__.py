"""Stage 7: review and verify: how far to trust a study's best config (the trust report)."""

from tuner.review._calibration import Calibration
from tuner.review._confidence import Analysis, Estimate, analyse
from tuner.review._html import render_html, write_html
from tuner.review._load import (
    ReviewError,
    StudyData,
    StudyInfo,
    list_studies,
    read_study,
)
from tuner.review._report import FORMAT, Review, build_review, review_data
from tuner.review._robustness import ParamRobustness, Robustness, robustness
from tuner.review._terminal import print_review, print_studies
from tuner.review._verify import VerifyOptions, VerifyResult, VerifyRun, verify_study

__all__ = [
    "FORMAT",
    "Analysis",
    "Calibration",
    "Estimate",
    "ParamRobustness",
    "Review",
    "ReviewError",
    "Robustness",
    "StudyData",
    "StudyInfo",
    "VerifyOptions",
    "VerifyResult",
    "VerifyRun",
    "analyse",
    "build_review",
    "list_studies",
    "print_review",
    "print_studies",
    "read_study",
    "render_html",
    "review_data",
    "robustness",
    "verify_study",
    "write_html",
]
