"""``mttune meta-train -o``: a prior replaces only a prior, atomically, beside itself.

A folder, a pipe, an empty path, the search space or a study given as ``-o`` is refused
with a one-line error (exit 1) before any training, and nothing is written or left behind.
"""

from __future__ import annotations

import os
import shutil

import optuna
import pytest

from tests.conftest import REPO
from tuner.cli import main
from tuner.prior import PriorFileError, load_prior

SPACE = (REPO / "tests" / "spaces" / "s1.yaml").read_text()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A search space and three past studies of it."""
    tmp_path = tmp_path_factory.mktemp("past")
    (tmp_path / "space1.yaml").write_text(SPACE)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for i in range(3):
        study = optuna.create_study(
            study_name=f"t{i}",
            storage=f"sqlite:///{tmp_path / f'past-{i}.db'}",
            sampler=optuna.samplers.RandomSampler(seed=i),
        )
        study.optimize(
            lambda t, i=i: (t.suggest_float("x", -1, 1) - 0.1 * i) ** 2 + t.suggest_int("y", 0, 5),
            n_trials=12,
        )
    return tmp_path


@pytest.fixture
def past(made, tmp_path):
    """A copy of :func:`made` of the test's own."""
    shutil.copytree(made, tmp_path, dirs_exist_ok=True)
    return tmp_path


def _meta_train(tmp_path, output: str) -> int:
    return main(
        [
            "meta-train",
            "--space",
            str(tmp_path / "space1.yaml"),
            "--from",
            str(tmp_path / "past-*.db"),
            "-o",
            output,
            "--max-steps",
            "5",
            "--quiet",
        ]
    )


def _snapshot(folder) -> dict[str, bytes | None]:
    return {
        p.name: p.read_bytes() if p.is_file() and not p.is_fifo() else None
        for p in sorted(folder.iterdir())
    }


@pytest.mark.parametrize("target", ["folder", "fifo", "empty", "space", "study"])
def test_meta_train_refuses_an_output_that_is_not_a_prior(past, target, capsys):
    (past / "folder").mkdir()
    os.mkfifo(past / "fifo")
    output = {
        "folder": str(past / "folder"),
        "fifo": str(past / "fifo"),
        "empty": "",
        # through another path to the same file, as '-o ../space1.yaml' did
        "space": str(past / "folder" / ".." / "space1.yaml"),
        "study": str(past / "past-0.db"),
    }[target]
    before = _snapshot(past)
    assert _meta_train(past, output) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "meta-training" not in err  # refused before the training
    assert _snapshot(past) == before  # nothing replaced, no temporary file left
    assert (past / "fifo").is_fifo() and (past / "folder").is_dir()


def test_meta_train_replaces_a_prior_in_place(past, capsys):
    out = past / "p.safetensors"
    assert _meta_train(past, str(out)) == 0
    first = out.stat().st_ino
    link = past / "link.safetensors"
    link.symlink_to(out)
    assert _meta_train(past, str(link)) == 0  # through a link: the prior it points at
    assert link.is_symlink() and out.stat().st_ino != first
    load_prior(out)
    assert sorted(p.name for p in past.iterdir() if "tmp" in p.name) == []


def test_check_prior_target_refuses_a_folder(tmp_path):
    from tuner.prior import check_prior_target

    with pytest.raises(PriorFileError, match="is a folder"):
        check_prior_target(tmp_path)
    assert check_prior_target(tmp_path / "new" / "p.safetensors").name == "p.safetensors"
