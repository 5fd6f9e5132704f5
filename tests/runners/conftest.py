"""Fixtures of the runner tests: a local Ray for each module that asks for one."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# How long a trial of sleepy.py sleeps: long enough, next to the seconds it can take to hand a
# trial to a Ray worker on a busy machine, for two trials of a parallel run to overlap.
SLEEP_S = "3"


@pytest.fixture(scope="module")
def kill_marker(tmp_path_factory) -> Path:
    """The file the first trial of ``kill_runner.py`` creates before killing its worker."""
    return tmp_path_factory.mktemp("kill") / "killed.pid"


@pytest.fixture(scope="module")
def local_ray(kill_marker) -> Iterator[dict[str, float]]:
    """A local Ray for the module, started (and its files removed) as ``mttune run`` does.

    ``mttune run --backend ray`` in the module's tests uses it. Scripts run in the
    environment of the Ray workers, fixed when Ray starts, so the environment the test
    scripts need is set here.
    """
    from tuner.runners import RayOptions, ray_cluster

    temp_dir = Path(tempfile.mkdtemp(prefix="mtr-", dir="/tmp"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KILL_MARKER", str(kill_marker))
        env.setenv("SLEEP_S", SLEEP_S)
        with ray_cluster(RayOptions(workers=2, temp_dir=str(temp_dir))) as resources:
            assert resources["CPU"] >= 2
            yield resources
    assert not temp_dir.exists(), "a local Ray must leave no files behind"
