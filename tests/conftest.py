"""Shared fixtures: paths of the repo, its test scripts and the optional YAHPO data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "scripts"
SPACES = REPO / "search_spaces"
YAHPO = Path(os.environ.get("MTTUNE_YAHPO", REPO.parent / "shared" / "data" / "yahpo"))


@pytest.fixture
def scripts() -> Path:
    return SCRIPTS


@pytest.fixture
def yahpo_dir() -> Path:
    if not (YAHPO / "rbv2_xgboost" / "model.onnx").is_file():
        pytest.skip(
            f"YAHPO data not found at {YAHPO} (set MTTUNE_YAHPO to the folder holding "
            "rbv2_xgboost/ and lcbench/)"
        )
    return YAHPO


# Property tests are derandomised so that CI is reproducible; explore new examples locally
# with HYPOTHESIS_PROFILE=explore.
settings.register_profile("default", derandomize=True, deadline=None, max_examples=200)
settings.register_profile("explore", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# A small meta-trained prior (2-D bowls), shared by the sampler and reliability tests.
from tests.sampler.conftest import xy_prior  # noqa: E402, F401
