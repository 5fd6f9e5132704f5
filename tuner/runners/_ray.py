"""The Ray cluster of a Ray run: its options, joining or starting it, its files.

Low level: :func:`ray_cluster` makes a Ray available to this process, for the Ray backend
(:func:`~tuner.runners.run_ray`) and for anyone who drives Ray Tune with mttune's sampler.
Ray is imported only when a cluster is entered: ``import tuner`` stays fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tuner._errors import MttuneError
from tuner.runners._choices import SCHEDULERS

__all__ = [
    "RayBackendError",
    "RayOptions",
    "default_ray_temp_dir",
    "patched_environ",
    "quiet_ray_logs",
    "ray_cluster",
    "results_dir",
]


# Ray puts its sockets at <temp dir>/session_<date>_<pid>/sockets/plasma_store; a Unix socket
# path holds at most 107 bytes.
_MAX_TEMP_DIR_CHARS = 40
_OBJECT_STORE_BYTES = 256 * 1024**2  # results are tiny: keep Ray's shared memory small
_CONNECT_TIMEOUT_S = 5.0


class RayBackendError(MttuneError):
    """Ray cannot run the trials as asked: bad options, cluster unreachable, no resources."""


def default_ray_temp_dir() -> Path:
    """Where a local Ray keeps its session files: ``/tmp/mttune-ray-<uid>``."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    base = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
    return base / f"mttune-ray-{user}"


def _temp_dir(options: RayOptions) -> Path:
    """The run's temp folder: ``options.temp_dir`` or :func:`default_ray_temp_dir`."""
    path = Path(options.temp_dir) if options.temp_dir else default_ray_temp_dir()
    _check_temp_dir_length(str(path))
    return path


def _check_temp_dir_length(path: str) -> None:
    if len(path) > _MAX_TEMP_DIR_CHARS:
        raise RayBackendError(
            f"the Ray temp folder {path!r} is {len(path)} characters long; Ray's socket "
            f"paths below it allow at most {_MAX_TEMP_DIR_CHARS}. Pick a shorter folder with "
            "--ray-tmp, such as /tmp/mttune-ray."
        )


@dataclasses.dataclass(frozen=True)
class RayOptions:
    """How Ray runs the trials.

    Attributes:
        workers: Trials run at the same time (default: as many as the CPUs allow, given
            ``cpus_per_trial``). A local Ray gets at least ``workers * cpus_per_trial`` CPUs.
        address: A Ray cluster to join (``HOST:PORT`` of its head, or ``auto`` for the one
            started on this machine by ``ray start --head``); ``None`` starts a local Ray for
            the run and stops it at the end.
        cpus_per_trial: CPUs Ray reserves for each trial (may be fractional).
        gpus_per_trial: GPUs Ray reserves for each trial (may be fractional).
        scheduler: ``asha`` (stop poor trials early from their intermediate reports) or
            ``none``.
        temp_dir: Session files of a local Ray (default :func:`default_ray_temp_dir`);
            removed at the end of the run.
    """

    workers: int | None = None
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    scheduler: str = "asha"
    temp_dir: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.workers is None or self.workers >= 1, "--workers must be >= 1", self.workers),
            (
                math.isfinite(self.cpus_per_trial) and self.cpus_per_trial > 0,
                "--cpus-per-trial must be > 0",
                self.cpus_per_trial,
            ),
            (
                math.isfinite(self.gpus_per_trial) and self.gpus_per_trial >= 0,
                "--gpus-per-trial must be >= 0",
                self.gpus_per_trial,
            ),
            (
                self.scheduler in SCHEDULERS,
                f"--scheduler must be one of {', '.join(SCHEDULERS)}",
                self.scheduler,
            ),
        ]
        for ok, rule, value in checks:
            if not ok:
                raise RayBackendError(f"{rule}, got {value!r}.")
        if self.address is not None:
            _parse_address(self.address)
        if self.temp_dir is not None:
            _check_temp_dir_length(str(self.temp_dir))


def _parse_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``HOST:PORT``; ``None`` for ``auto``. Raises on anything else."""
    if address == "auto":
        return None
    if address.startswith("ray://"):
        raise RayBackendError(
            f"--address {address!r} is a Ray Client address; mttune drives Ray Tune from its "
            "own process, which must be part of the cluster. Run mttune on a node of the "
            "cluster (e.g. its head) with --address auto, or give the head's HOST:PORT "
            "(what 'ray start --head' prints, port 6379 by default)."
        )
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RayBackendError(
            f"--address must be HOST:PORT of a Ray head node (e.g. 10.0.0.5:6379) or 'auto', "
            f"got {address!r}."
        )
    return host.strip("[]"), int(port)


def _machine_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def quiet_ray_logs(level: int = logging.ERROR) -> Iterator[None]:
    """Ray and Tune log progress and notices at INFO/WARNING; mttune has its own display."""
    ray_logger = logging.getLogger("ray")
    old = ray_logger.level
    ray_logger.setLevel(level)
    try:
        yield
    finally:
        ray_logger.setLevel(old)


@contextlib.contextmanager
def _raylet_messages_to_log() -> Iterator[None]:
    """Keep Ray's driver from printing raylet errors (a worker died...) on stdout.

    Ray prints them from a background thread of the driver, which would mix them into
    ``mttune run --json``; mttune records each such failure on its trial instead. The
    messages go to the ``ray`` logger at DEBUG level.
    """
    try:
        from ray._private import worker
    except ImportError:  # pragma: no cover - a Ray without this private module
        yield
        return
    original = getattr(worker, "print_to_stdstream", None)
    if original is None:  # pragma: no cover
        yield
        return

    def route(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("pid") == "raylet":
            for line in data.get("lines", []):
                logging.getLogger("ray").debug("raylet: %s", line)
        else:
            original(data, ignore_prefix)

    worker.print_to_stdstream = route
    try:
        yield
    finally:
        worker.print_to_stdstream = original


@contextlib.contextmanager
def ray_cluster(
    options: RayOptions, *, log: Callable[[str], None] | None = None
) -> Iterator[dict[str, float]]:
    """Make a Ray cluster available to this process for the duration of the block.

    * Ray already initialised in this process (e.g. by the caller): used as it is and left
      running; an ``options.address`` is then refused. To run in a cluster that a block of
      this function joined, hand the resources it yields to :func:`~tuner.runners.run_ray`
      instead of entering it again.
    * ``options.address``: joined (the driver disconnects at the end; the cluster stays).
    * Otherwise a local Ray is started, sized to the machine (or to ``workers``), quiet,
      without dashboard or usage reporting, with its files under ``options.temp_dir``; it
      is stopped and its session files are removed at the end.

    Yields:
        The cluster's resources (``ray.cluster_resources()``).

    Raises:
        RayBackendError: if the cluster cannot be reached or started, or lacks the CPUs or
            GPUs one trial asks for.
    """
    import ray

    with _raylet_messages_to_log():
        if ray.is_initialized():
            if options.address is not None:
                raise RayBackendError(
                    f"Ray is already initialised in this process, so it cannot join --address "
                    f"{options.address}. Leave the address out to use that Ray (inside a "
                    "ray_cluster block, pass its resources to run_ray), or call "
                    "ray.shutdown() first."
                )
            resources = ray.cluster_resources()
            _check_resources(options, resources, "the Ray cluster this process uses")
            yield resources
        elif options.address is None:
            with _local_ray(options, log=log) as resources:
                yield resources
        else:
            with _joined(options, log=log) as resources:
                yield resources


@contextlib.contextmanager
def _joined(
    options: RayOptions, *, log: Callable[[str], None] | None = None
) -> Iterator[dict[str, float]]:
    """Join the cluster at ``options.address``; disconnect this driver at the end."""
    import ray

    assert options.address is not None
    with quiet_ray_logs():
        _join(options.address)
    try:
        resources = ray.cluster_resources()
        where = f"the Ray cluster at {options.address}"
        _check_resources(options, resources, where)
        if log is not None:
            log(f"joined {where} ({_describe(resources)})")
        yield resources
    finally:
        ray.shutdown()  # disconnects this driver; the cluster keeps running


def _join(address: str) -> None:
    import ray

    where = _parse_address(address)
    if where is not None:
        try:
            socket.create_connection(where, timeout=_CONNECT_TIMEOUT_S).close()
        except OSError as e:
            raise RayBackendError(
                f"cannot reach a Ray cluster at --address {address}: "
                f"{e.strerror or type(e).__name__}. Start one with 'ray start --head' on the "
                "head node and pass the address it prints, or leave --address out to run on "
                "this machine."
            ) from None
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RayBackendError(
            f"cannot join the Ray cluster at --address {address}: {first}. Check that "
            "'ray status' works on this machine, or leave --address out to run locally."
        ) from None


@contextlib.contextmanager
def _local_ray(
    options: RayOptions, *, log: Callable[[str], None] | None = None
) -> Iterator[dict[str, float]]:
    import ray

    temp_dir = _temp_dir(options)
    cpus = max(_machine_cpus(), math.ceil(options.cpus_per_trial * (options.workers or 1)))
    if log is not None:
        log(f"starting Ray on this machine ({cpus} CPUs, files in {temp_dir})")
    env = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    with patched_environ(env), quiet_ray_logs():
        temp_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_sessions(temp_dir)
        try:
            ray.init(
                address="local",
                num_cpus=cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
                object_store_memory=_OBJECT_STORE_BYTES,
                _temp_dir=str(temp_dir),
            )
        except Exception as e:
            with contextlib.suppress(Exception):
                ray.shutdown()
            raise RayBackendError(
                f"cannot start a local Ray instance (files in {temp_dir}): {e}. Check that "
                "the folder is writable (or pick another with --ray-tmp) and that 'ray "
                "start --head' works on this machine."
            ) from None
        session = _session_dir()
        try:
            resources = ray.cluster_resources()
            _check_resources(options, resources, "this machine")
            yield resources
        finally:
            ray.shutdown()
            _remove_session_files(temp_dir, session)


def _session_dir() -> Path | None:
    try:
        from ray._private import worker

        node = worker._global_node
        return None if node is None else Path(node.get_session_dir_path())
    except Exception:  # a private API: without it only the session files stay behind
        return None


def _remove_stale_sessions(temp_dir: Path) -> None:
    """Remove session folders left by local runs that were killed (their driver is gone).

    Ray names them ``session_<date>_<time>_<microseconds>_<driver pid>``.
    """
    for session in temp_dir.glob("session_*_*"):
        pid = session.name.rpartition("_")[2]
        if session.is_symlink() or not session.is_dir() or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(session, ignore_errors=True)
        except (PermissionError, OverflowError):
            continue


def _remove_session_files(temp_dir: Path, session: Path | None) -> None:
    if session is not None and session.parent == temp_dir:
        shutil.rmtree(session, ignore_errors=True)
    latest = temp_dir / "session_latest"
    if latest.is_symlink() and not latest.exists():
        with contextlib.suppress(OSError):
            latest.unlink()
    with contextlib.suppress(OSError):
        temp_dir.rmdir()  # only when no other run's session is left in it


def _describe(resources: Mapping[str, float]) -> str:
    gpus = resources.get("GPU", 0)
    text = f"{resources.get('CPU', 0):g} CPUs"
    return text + (f", {gpus:g} GPUs" if gpus else "")


def _check_resources(options: RayOptions, resources: Mapping[str, float], where: str) -> None:
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    if options.gpus_per_trial > 0 and gpus <= 0:
        raise RayBackendError(
            f"--gpus-per-trial {options.gpus_per_trial:g} asks for GPUs, but {where} has "
            "none (Ray sees no GPU). Leave --gpus-per-trial out, or join a cluster with GPUs "
            "with --address."
        )
    if gpus < options.gpus_per_trial:
        raise RayBackendError(
            f"--gpus-per-trial {options.gpus_per_trial:g} is more than the {gpus:g} GPUs "
            f"of {where}; ask for at most {gpus:g}."
        )
    if cpus < options.cpus_per_trial:
        raise RayBackendError(
            f"--cpus-per-trial {options.cpus_per_trial:g} is more than the {cpus:g} CPUs "
            f"of {where}; ask for at most {cpus:g}."
        )


@contextlib.contextmanager
def results_dir(options: RayOptions) -> Iterator[Path]:
    """Where Ray Tune keeps a run's experiment files: removed at the end of the block."""
    base = _temp_dir(options)
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="results-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when nothing else is in it
