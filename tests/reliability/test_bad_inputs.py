"""Bad inputs through the CLI: a precise message, exit code 1, nothing written, nothing run."""

from __future__ import annotations

import pickle
import struct

import pytest

from tests.conftest import REPO, SCRIPTS
from tuner.cli import main
from tuner.prior import save_prior

QUAD = [str(SCRIPTS / "quad.py"), "--space", str(REPO / "tests" / "spaces" / "quad.yaml")]


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _priors(tmp_path, xy_prior):
    marker = tmp_path / "pwned"
    good = save_prior(xy_prior, tmp_path / "good.safetensors")
    data = good.read_bytes()
    files = {
        "empty": (b"", "is empty"),
        "truncated": (data[: len(data) // 2], "not a readable safetensors prior"),
        "random bytes": (bytes(range(256)) * 40, "not a readable safetensors prior"),
        "pickle payload": (pickle.dumps(_Payload(marker)), "mttune never unpickles"),
        "huge header": (struct.pack("<Q", 2**40) + b"{}", "not a readable safetensors prior"),
        "python code": (
            f"import os; os.system('touch {marker}')".encode(),
            "not a readable safetensors prior",
        ),
    }
    return marker, files


@pytest.mark.parametrize(
    "kind", ["empty", "truncated", "random bytes", "pickle payload", "huge header", "python code"]
)
def test_hostile_or_broken_prior_files(kind, xy_prior, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    marker, files = _priors(tmp_path, xy_prior)
    content, needle = files[kind]
    bad = tmp_path / f"{kind.replace(' ', '-')}.safetensors"
    bad.write_bytes(content)
    for argv in (
        ["run", *QUAD, "--prior", str(bad), "--progress", "none"],
        ["prior", "show", str(bad)],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert needle in err and str(bad) in err
    assert not (tmp_path / "studies").exists()
    assert not marker.exists(), "a prior file must never execute code"


def test_prior_whose_metadata_claims_other_shapes(xy_prior, tmp_path, monkeypatch, capsys):
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    monkeypatch.chdir(tmp_path)
    good = save_prior(xy_prior, tmp_path / "good.safetensors")
    with safe_open(str(good), "pt") as f:
        header = dict(f.metadata())
    meta = json.loads(header["mttune"])
    meta["model"]["ensemble"] = meta["model"]["ensemble"] + 2
    header["mttune"] = json.dumps(meta)
    lying = tmp_path / "lying.safetensors"
    save_file(load_file(str(good)), str(lying), metadata=header)
    assert main(["run", *QUAD, "--prior", str(lying), "--progress", "none"]) == 1
    assert "but the metadata implies" in capsys.readouterr().err
    assert not (tmp_path / "studies").exists()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            [
                "meta-train",
                "--space",
                "search_spaces/mlp.yaml",
                "--from",
                "nowhere/*.db",
                "-o",
                "p.safetensors",
            ],
            "matches no file",
        ),
        (
            ["meta-train", "--space", "missing.yaml", "--from", "x.db", "-o", "p.safetensors"],
            "search space file not found",
        ),
        (["run", *QUAD, "--n-trials", "0"], "--n-trials must be >= 1, got 0"),
        (["run", *QUAD, "--trial-timeout", "-5"], "--trial-timeout must be > 0, got -5.0"),
        (
            ["run", str(REPO / "tests" / "nope.py"), "--space", "search_spaces/mlp.yaml"],
            "training script",
        ),
        (["review", "missing.db"], "no such study database"),
    ],
)
def test_bad_arguments(argv, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    before = sorted(p.name for p in REPO.iterdir())
    assert main(argv) == 1
    assert needle in capsys.readouterr().err
    assert sorted(p.name for p in REPO.iterdir()) == before
