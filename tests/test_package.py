"""The package surface: lazy re-exports, layering of the stages."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import REPO

STAGES = ["space", "studies", "metadataset", "prior", "sampler", "runners", "review", "cli"]


def test_import_is_light_and_every_export_resolves():
    code = (
        "import sys, tuner\n"
        "assert 'torch' not in sys.modules, 'import tuner must not import torch'\n"
        "for name in tuner.__all__: getattr(tuner, name)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_stages_import_only_earlier_stages():
    """The data flow goes one way: space -> studies -> ... -> review -> cli."""
    for i, stage in enumerate(STAGES):
        for path in (REPO / "tuner" / stage).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    parts = node.module.split(".")
                    if parts[0] == "tuner" and len(parts) > 1 and parts[1] in STAGES:
                        later = STAGES.index(parts[1])
                        assert later <= i, f"{path} imports later stage {node.module}"
