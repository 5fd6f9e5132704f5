"""Shared fixtures: paths of the repo, its test scripts and the optional YAHPO data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
