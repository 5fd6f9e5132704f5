"""Database storages: a missing driver names its package; a real PostgreSQL server end to end.

The PostgreSQL test needs a server: ``.ci/run`` installs one from Debian's packages, starts it
and sets ``MTTUNE_TEST_POSTGRES`` (a URL of an empty database mttune may create tables in).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tests.conftest import REPO, SCRIPTS
from tuner.studies import StorageError, TrialAttr, open_storage

POSTGRES = os.environ.get("MTTUNE_TEST_POSTGRES")


def test_a_missing_database_driver_names_the_package_to_install():
    with pytest.raises(StorageError) as e:
        open_storage("mysql://me@db.example/optuna")
    assert "'MySQLdb'" in str(e.value) and "mttune[mysql]" in str(e.value)
    assert "mysql+pymysql://me@db.example/optuna" in str(e.value)
    with pytest.raises(StorageError, match=r"pip install 'pg8000'"):
        open_storage("postgresql+pg8000://me@db.example/optuna")


def _postgres() -> str:
    if not POSTGRES:
        pytest.skip(
            "no PostgreSQL server: MTTUNE_TEST_POSTGRES is unset (.ci/run sets it when it can "
            "install and start PostgreSQL from Debian's packages, as root with apt-get)"
        )
    try:
        import psycopg

        psycopg.connect(POSTGRES, connect_timeout=5).close()
    except Exception as e:
        pytest.skip(f"the PostgreSQL server at MTTUNE_TEST_POSTGRES cannot be reached: {e}")
    return POSTGRES


def _mttune(*argv: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _past_studies(url: str, tag: str) -> None:
    """Three finished studies of the quadratic (meta-train needs 3 tasks)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dists = {"x": FloatDistribution(-1.0, 1.0), "y": FloatDistribution(-1.0, 1.0)}
    rng = np.random.default_rng(0)
    for k in range(3):
        study = optuna.create_study(study_name=f"{tag}-past{k}", storage=url)
        trials = []
        for _ in range(12):
            p = {"x": float(rng.uniform(-1, 1)), "y": float(rng.uniform(-1, 1))}
            v = (p["x"] - 0.3 + 0.1 * k) ** 2 + (p["y"] + 0.1) ** 2
            trials.append(create_trial(params=p, distributions=dists, value=v))
        study.add_trials(trials)


@pytest.mark.slow
def test_postgresql_run_with_two_processes_then_review_and_meta_train(tmp_path):
    url = _postgres()
    tag = f"pg-{uuid.uuid4().hex[:8]}"
    run = [
        "run",
        str(SCRIPTS / "quad.py"),
        "--space",
        str(REPO / "tests" / "spaces" / "quad.yaml"),
        "--storage",
        url,
        "--study",
        tag,
        "--n-trials",
        "8",
        "--sampler",
        "random",
        "--pruner",
        "none",
        "--progress",
        "none",
    ]
    runners = [_mttune(*run, "--seed", str(seed)) for seed in (1, 2)]  # two processes, one study
    for p in runners:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    trials = optuna.load_study(study_name=tag, storage=url).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) >= 8, [(t.number, t.state, t.user_attrs) for t in trials]
    assert len({t.number for t in trials}) == len(trials)
    runners_seen = {TrialAttr.RUNNER.get(t.user_attrs)["pid"] for t in complete}
    assert len(runners_seen) == 2, "both processes ran trials of the one study"

    review = _mttune("review", url, "--study", tag, "--json")
    out, err = review.communicate(timeout=600)
    assert review.returncode == 0, err
    assert json.loads(out)["study"] == tag

    _past_studies(url, tag)
    prior = tmp_path / "pg.prior.safetensors"
    train = _mttune(
        "meta-train",
        "--space",
        str(REPO / "tests" / "spaces" / "quad.yaml"),
        "--from",
        url,
        "--study",
        tag,
        f"{tag}-past0",
        f"{tag}-past1",
        f"{tag}-past2",
        "-o",
        str(prior),
        "--max-steps",
        "30",
        "--quiet",
    )
    out, err = train.communicate(timeout=600)
    assert train.returncode == 0, err
    assert prior.is_file() and "learned from 4 studies" in out, out
