"""The prior file: one safetensors file, weights as tensors, everything else as JSON.

Layout::

    header.__metadata__["mttune"]   JSON: format, space (+hash), features (the named
                                    hyperparameters and their ranges), portfolio configs,
                                    model, maml, calibration, sources, versions, task
                                    splits, validation metrics, calibration check, ...
    params.<name>                   float32 (M, ...)  stacked ensemble weights
    log_lr.<name>                   float32 (M,)      inner-loop log learning rates
                                    or (M, ...) as params.<name> with maml
                                    inner_lr_shape "element" (files without that
                                    key are "tensor"); with maml context c > 0
                                    (CAVIA) only log_lr.context, (M,) or (M, c),
                                    and params.net.0.weight has D + c columns
    portfolio                       float32 (P, D)    the sources' best configs, in the
                                                      prior's coordinates
    coverage.values                 float32 (P, S)    optional: each portfolio config's
                                                      normalised target on each source
    coverage.owners                 int64 (P,)        its source study, 0..S-1 (both or
                                                      neither; files without it load)

Files of format 1 (one search space's unit cube, no features) still load: their features
are those of their space.

Loading parses only the safetensors header (JSON) and raw little-endian arrays: nothing is
unpickled or executed. Every check failure is a :class:`PriorFileError` that says what is
wrong with the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from tuner._errors import MttuneError
from tuner.prior._builtin import builtin_names, builtin_path
from tuner.prior._config import MAMLConfig, ModelConfig
from tuner.prior._coverage import MEASURED_STRATEGIES, PortfolioCoverage
from tuner.prior._maml import CONTEXT, inner_lr_shape, surrogate_shapes
from tuner.prior._prior import BUCKETS, Calibration, MetaPrior
from tuner.space import FeatureSpace, SearchSpace, SpaceError

__all__ = [
    "FORMAT",
    "PriorFileError",
    "check_prior_target",
    "load_prior",
    "resolve_prior",
    "save_prior",
]

FORMAT = "mttune-prior/2"
_FORMAT_1 = "mttune-prior/1"
_MAX_FILE_BYTES = 512 * 1024 * 1024
_COVERAGE_VALUES = "coverage.values"
_COVERAGE_OWNERS = "coverage.owners"


class PriorFileError(MttuneError, ValueError):
    """A prior file is missing, truncated, tampered with, or not a prior at all."""


def save_prior(prior: MetaPrior, path: str | os.PathLike[str]) -> Path:
    """Write ``prior`` to ``path`` (atomically: a temporary file, then a rename)."""
    path = Path(path)
    meta = {
        "format": FORMAT,
        "space": prior.space.to_dict(),
        "space_hash": prior.space.hash,
        "features": prior.features.to_list(),
        "portfolio_configs": prior.portfolio_configs,
        "encoding": {"dim": prior.features.dim},
        "model": dataclasses.asdict(prior.model),
        "maml": prior.maml.to_dict(),
        "calibration": prior.calibration.to_dict(),
        "param_names": sorted(prior.params),
        "info": prior.info,
    }
    tensors: dict[str, torch.Tensor] = {}
    for name, value in prior.params.items():
        tensors[f"params.{name}"] = value.contiguous()
    for name, value in prior.log_lrs.items():
        tensors[f"log_lr.{name}"] = value.contiguous()
    tensors["portfolio"] = torch.as_tensor(prior.portfolio, dtype=torch.float32).contiguous()
    if prior.coverage is not None:
        tensors[_COVERAGE_VALUES] = torch.as_tensor(prior.coverage.values, dtype=torch.float32)
        tensors[_COVERAGE_OWNERS] = torch.as_tensor(prior.coverage.owners, dtype=torch.int64)
    target = check_prior_target(path)
    # written with open(), not safetensors' save_file (0600): a prior is meant to be shared,
    # so it gets the permissions the umask gives any new file
    blob = save(tensors, metadata={"mttune": json.dumps(meta, allow_nan=False)})
    _write_atomically(target, blob)
    return path


def check_prior_target(path: str | os.PathLike[str]) -> Path:
    """Where a prior for ``path`` may be written: the real path of a new file or a prior.

    A prior replaces only a prior: a folder, a device, a pipe, or a file that is not a prior
    (the search space, a study database, a script) is refused, so that ``-o`` can never
    destroy an input. Call it before the training, which then cannot be lost to a bad path.

    Raises:
        PriorFileError: naming the path and what is there.
    """
    if not str(path).strip():
        raise PriorFileError("the prior's path is empty; give a file such as prior.safetensors.")
    target = Path(os.path.realpath(path))
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        if target.parent.exists() and not target.parent.is_dir():
            raise PriorFileError(f"{path}: {target.parent} is not a folder.") from None
        return target
    except OSError as e:
        raise PriorFileError(f"{path}: cannot write a prior there: {e.strerror}.") from None
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device or a pipe?)"
        raise PriorFileError(f"{path}: is {what}; give the path of a prior file to write.")
    if target.stat().st_size and not _has_prior_header(target):
        raise PriorFileError(
            f"{path}: exists and is not an mttune prior (a search space, a study, a "
            "script?); a prior replaces only a prior. Choose another path or remove the file."
        )
    return target


def _has_prior_header(path: Path) -> bool:
    """Whether ``path`` starts like a prior: a safetensors header with mttune metadata."""
    try:
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if not 2 <= length <= _MAX_FILE_BYTES:
                return False
            header = json.loads(f.read(length))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(header, dict) and "mttune" in (header.get("__metadata__") or {})


def _write_atomically(target: Path, blob: bytes) -> None:
    """Write ``blob`` to a new file beside ``target``, then rename it onto ``target``."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise PriorFileError(f"{target}: cannot write the prior: {e.strerror}.") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise PriorFileError(f"{target}: cannot write the prior: {e.strerror}.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def resolve_prior(path: str | os.PathLike[str]) -> Path:
    """The file a prior argument names: an existing file, else a built-in prior's file.

    Raises:
        PriorFileError: if it is neither (the message lists the built-in names).
    """
    if Path(path).is_file():
        return Path(path)
    builtin = builtin_path(path)
    if builtin is not None:
        return builtin
    raise PriorFileError(
        f"{os.fspath(path)}: prior file not found, and not a built-in prior "
        f"(built-ins: {', '.join(builtin_names()) or 'none installed'}). Give a "
        "built-in name ('mttune prior list') or a .safetensors file from 'mttune meta-train'."
    )


def load_prior(path: str | os.PathLike[str]) -> MetaPrior:
    """Load and validate a prior file, or a built-in prior by name.

    A prior maps onto any study's space by parameter name; what it covers of a given space
    is the sampler's to say (:class:`~tuner.sampler.MetaPriorSampler`).

    Args:
        path: The ``.safetensors`` prior, or the name of a built-in prior (``xgboost``,
            ``mlp``, ...: :func:`builtin_names`); an existing file of that name wins.

    Raises:
        PriorFileError: missing/empty/truncated/corrupt file (or a name that is neither a
            file nor a built-in), foreign safetensors file, metadata that contradicts the
            tensors, or non-finite weights.
    """
    path = resolve_prior(path)
    size = path.stat().st_size
    if size == 0:
        raise PriorFileError(f"{path}: the prior file is empty.")
    if size > _MAX_FILE_BYTES:
        raise PriorFileError(f"{path}: {size} bytes is too large for a prior file.")
    with open(path, "rb") as f:
        head = f.read(9)
    # A safetensors file starts with the JSON header's length (u64, little-endian), then
    # the header's "{". Only a file that is not that is sniffed for pickle/zip magic: a
    # header length of 128 + 256 k also starts with byte 0x80.
    header_len = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    safetensors_like = len(head) == 9 and head[8:9] == b"{" and 8 + header_len <= size
    if not safetensors_like and (head[:1] == b"\x80" or head.startswith(b"PK")):
        raise PriorFileError(
            f"{path}: this is a pickle/zip file (e.g. torch.save output), not an mttune prior. "
            "mttune never unpickles files; priors are safetensors files from "
            "'mttune meta-train'."
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open API
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise PriorFileError(
            f"{path}: not a readable safetensors prior (truncated or corrupt?): {e}"
        ) from None
    if "mttune" not in header:
        raise PriorFileError(
            f"{path}: a safetensors file without mttune metadata; not a prior made by "
            "'mttune meta-train'."
        )
    try:
        meta = json.loads(header["mttune"])
    except (ValueError, RecursionError) as e:
        raise PriorFileError(f"{path}: the prior's metadata is not valid JSON: {e}") from None
    return _build(path, meta, tensors)


def _req(meta: Any, key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    if not isinstance(meta, dict) or key not in meta:
        raise PriorFileError(f"{path}: the metadata lacks '{key}'.")
    value = meta[key]
    if not isinstance(value, kind):
        raise PriorFileError(
            f"{path}: metadata '{key}' has the wrong type ({type(value).__name__})."
        )
    return value


def _build(path: Path, meta: Any, tensors: dict[str, torch.Tensor]) -> MetaPrior:
    fmt = _req(meta, "format", str, path)
    if fmt not in (FORMAT, _FORMAT_1):
        raise PriorFileError(
            f"{path}: prior format {fmt!r} is not supported (this mttune reads {FORMAT!r} "
            f"and {_FORMAT_1!r}). Meta-train the prior again with this mttune."
        )
    space = _space(meta, path)
    model, maml, calibration = _settings(meta, path)
    features = _features(meta, space, path) if fmt == FORMAT else FeatureSpace.from_space(space)
    dim = features.dim
    # shapes from the settings, checked against the tensors before anything is allocated
    expected_shapes = {
        name: (model.ensemble, *shape)
        for name, shape in surrogate_shapes(dim + maml.context, model.hidden, model.layers).items()
    }
    params = {
        name: _tensor(tensors, f"params.{name}", shape, path)
        for name, shape in expected_shapes.items()
    }
    if maml.context:  # CAVIA: the context's step size only
        expected_shapes = {CONTEXT: (model.ensemble, maml.context)}
    log_lrs = {
        name: _log_lr(tensors, name, inner_lr_shape(shape, maml), maml, path)
        for name, shape in expected_shapes.items()
    }
    portfolio = _portfolio(tensors, dim, path)
    coverage = _coverage(tensors, len(portfolio), path)
    extra = set(tensors) - {f"params.{n}" for n in params} - {f"log_lr.{n}" for n in log_lrs}
    extra -= {"portfolio", _COVERAGE_VALUES, _COVERAGE_OWNERS}
    if extra:
        raise PriorFileError(f"{path}: unexpected tensors {sorted(extra)[:5]}.")
    configs = _portfolio_configs(meta, len(portfolio), path) if fmt == FORMAT else None
    info = meta.get("info", {})
    _check_info(info, path)
    return MetaPrior(
        space,
        model,
        maml,
        params,
        log_lrs,
        calibration,
        portfolio,
        info,
        features=features,
        portfolio_configs=configs,
        coverage=coverage,
    )


def _space(meta: Any, path: Path) -> SearchSpace:
    try:
        space = SearchSpace.from_dict(_req(meta, "space", dict, path), source=f"{path} (space)")
    except SpaceError as e:
        raise PriorFileError(f"{path}: the stored search space is invalid: {e}") from None
    if _req(meta, "space_hash", str, path) not in (space.hash, space.legacy_hash):
        raise PriorFileError(
            f"{path}: the stored space hash does not match the stored space; the file was "
            "edited or corrupted."
        )
    return space


def _settings(meta: Any, path: Path) -> tuple[ModelConfig, MAMLConfig, Calibration]:
    try:
        model = ModelConfig(**_req(meta, "model", dict, path))
        maml = MAMLConfig(**_req(meta, "maml", dict, path))
    except (TypeError, MttuneError) as e:
        raise PriorFileError(f"{path}: invalid model/MAML settings: {e}") from None
    cal = _req(meta, "calibration", dict, path)
    a, b = cal.get("a"), cal.get("b")
    if (
        not isinstance(a, list)
        or not isinstance(b, list)
        or len(a) != len(BUCKETS)
        or len(b) != len(BUCKETS)
        or not all(isinstance(v, int | float) and math.isfinite(v) and v >= 0 for v in a + b)
    ):
        raise PriorFileError(f"{path}: invalid calibration {cal!r}.")
    return model, maml, Calibration(tuple(float(v) for v in a), tuple(float(v) for v in b))


def _features(meta: Any, space: SearchSpace, path: Path) -> FeatureSpace:
    try:
        features = FeatureSpace.from_list(_req(meta, "features", list, path))
    except SpaceError as e:
        raise PriorFileError(f"{path}: the stored features are invalid: {e}") from None
    unknown = [n for n in space.names if features.lookup(n) is None]
    if unknown:
        raise PriorFileError(
            f"{path}: the stored space has parameters {unknown} without features."
        )
    if len(features) > 4096:
        raise PriorFileError(f"{path}: {len(features)} features is too many for a prior.")
    return features


def _portfolio(tensors: dict[str, torch.Tensor], dim: int, path: Path) -> np.ndarray:
    portfolio = tensors.get("portfolio")
    if portfolio is None or portfolio.ndim != 2 or portfolio.shape[1] != dim:
        raise PriorFileError(f"{path}: 'portfolio' must be a (P, {dim}) tensor.")
    out = _finite(portfolio, "portfolio", path)
    if float(out.min(initial=0.0)) < 0.0 or float(out.max(initial=0.0)) > 1.0:
        raise PriorFileError(f"{path}: 'portfolio' must lie in the unit cube.")
    return out


def _coverage(tensors: dict[str, torch.Tensor], n: int, path: Path) -> PortfolioCoverage | None:
    values, owners = tensors.get(_COVERAGE_VALUES), tensors.get(_COVERAGE_OWNERS)
    if values is None and owners is None:
        return None
    if values is None or owners is None:
        raise PriorFileError(
            f"{path}: '{_COVERAGE_VALUES}' and '{_COVERAGE_OWNERS}' come together; "
            "the file has only one of them."
        )
    if values.ndim != 2 or values.shape[0] != n or owners.shape != (n,):
        raise PriorFileError(
            f"{path}: '{_COVERAGE_VALUES}' must be ({n}, S) and '{_COVERAGE_OWNERS}' ({n},), "
            f"got {tuple(values.shape)} and {tuple(owners.shape)}."
        )
    if owners.dtype != torch.int64:
        raise PriorFileError(f"{path}: tensor '{_COVERAGE_OWNERS}' must be int64.")
    try:
        return PortfolioCoverage(_finite(values, _COVERAGE_VALUES, path), owners.numpy())
    except ValueError as e:
        raise PriorFileError(f"{path}: {e}.") from None


def _portfolio_configs(meta: Any, n: int, path: Path) -> list[dict[str, Any]]:
    configs = _req(meta, "portfolio_configs", list, path)
    ok = len(configs) == n and all(
        isinstance(c, dict)
        and all(isinstance(k, str) for k in c)
        and all(v is None or isinstance(v, str | int | float | bool) for v in c.values())
        for c in configs
    )
    if not ok:
        raise PriorFileError(
            f"{path}: 'portfolio_configs' must be {n} configs of plain values, one per row "
            "of the 'portfolio' tensor."
        )
    return configs


def _check_info(info: Any, path: Path) -> None:
    """The provenance fields that ``prior show``, ``run`` and ``review`` read, typed."""

    def fail(where: str, rule: str) -> PriorFileError:
        return PriorFileError(f"{path}: metadata 'info.{where}' {rule}; the file was edited.")

    def mapping(value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise fail(where, "must be an object")
        return value

    def rows(value: Any, where: str) -> list:
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise fail(where, "must be a list of objects")
        return value

    if not isinstance(info, dict):
        raise PriorFileError(f"{path}: metadata 'info' must be an object.")
    sources = mapping(info.get("sources", {}), "sources")
    for i, used in enumerate(rows(sources.get("used", []), "sources.used")):
        trials = used.get("trials", 0)
        if not isinstance(trials, int) or isinstance(trials, bool) or trials < 0:
            raise fail(f"sources.used[{i}].trials", "must be a count")
    rows(sources.get("skipped_studies", []), "sources.skipped_studies")
    for key, value in mapping(info.get("tasks", {}), "tasks").items():
        if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
            raise fail(f"tasks.{key}", "must be a list of task names")
    mapping(info.get("training", {}), "training")
    _check_splits(mapping(info.get("splits", {}), "splits"), fail)
    _check_calibration_check(mapping(info.get("calibration_check", {}), "calibration_check"), fail)
    for shots, m in mapping(info.get("validation", {}), "validation").items():
        m = mapping(m, f"validation.{shots}")
        for field in ("mse", "nll", "coverage_68", "coverage_95", "kendall_tau"):
            v = m.get(field)
            if not (
                (v is None and field == "kendall_tau")
                or (isinstance(v, int | float) and not isinstance(v, bool))
            ):
                raise fail(f"validation.{shots}.{field}", "must be a number")
    versions = mapping(info.get("versions", {}), "versions")
    if not all(isinstance(v, str) for v in versions.values()):
        raise fail("versions", "must map names to version strings")
    _check_early_strategy(mapping(info.get("early_strategy", {}), "early_strategy"), fail)


def _check_early_strategy(record: dict, fail: Callable[[str, str], PriorFileError]) -> None:
    """``info.early_strategy`` (absent in files made before it): the choice and its numbers."""
    for key in ("choice", "measured_choice"):
        if record.get(key, "model") not in MEASURED_STRATEGIES:
            raise fail(f"early_strategy.{key}", f"must be one of {MEASURED_STRATEGIES}")
    if not isinstance(record.get("reason", ""), str):
        raise fail("early_strategy.reason", "must be a string")
    regret = record.get("mean_regret", {})
    if not isinstance(regret, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in regret.values()
    ):
        raise fail("early_strategy.mean_regret", "must map strategies to numbers")


def _check_splits(splits: dict, fail: Callable[[str, str], PriorFileError]) -> None:
    """``info.splits`` (absent in files made before it): names per role, the note."""
    for key in ("train", "held_out"):
        value = splits.get(key, [])
        if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
            raise fail(f"splits.{key}", "must be a list of task names")
    folds = splits.get("folds", [])
    if not isinstance(folds, list) or not all(
        isinstance(f, list) and all(isinstance(n, str) for n in f) for f in folds
    ):
        raise fail("splits.folds", "must be lists of task names")
    if not isinstance(splits.get("note", ""), str):
        raise fail("splits.note", "must be a string")
    if not isinstance(splits.get("degraded", False), bool):
        raise fail("splits.degraded", "must be true or false")


def _check_calibration_check(check: dict, fail: Callable[[str, str], PriorFileError]) -> None:
    """``info.calibration_check`` (absent in older files): coverages as numbers."""
    for key in ("nominal", "held_out", "in_sample", "reported"):
        value = check.get(key, {})
        if value is None and key == "held_out":
            continue
        if not isinstance(value, dict):
            raise fail(f"calibration_check.{key}", "must be an object")
        for field in ("coverage_68", "coverage_95"):
            v = value.get(field, 0.0)
            if not isinstance(v, int | float) or isinstance(v, bool):
                raise fail(f"calibration_check.{key}.{field}", "must be a number")


def _tensor(
    tensors: dict[str, torch.Tensor], key: str, shape: tuple[int, ...], path: Path
) -> torch.Tensor:
    t = tensors.get(key)
    if t is None:
        raise PriorFileError(f"{path}: tensor '{key}' is missing.")
    if tuple(t.shape) != tuple(shape):
        raise PriorFileError(
            f"{path}: tensor '{key}' has shape {tuple(t.shape)}, but the metadata implies "
            f"{tuple(shape)}."
        )
    if t.dtype != torch.float32:
        raise PriorFileError(f"{path}: tensor '{key}' is {t.dtype}, expected float32.")
    if not torch.isfinite(t).all():
        raise PriorFileError(f"{path}: tensor '{key}' holds NaN or inf.")
    return t


def _log_lr(
    tensors: dict[str, torch.Tensor],
    name: str,
    shape: tuple[int, ...],
    maml: MAMLConfig,
    path: Path,
) -> torch.Tensor:
    """The inner log learning rates of ``name``, shaped as ``maml.inner_lr_shape`` says."""
    key = f"log_lr.{name}"
    t = tensors.get(key)
    if t is not None and tuple(t.shape) != shape:
        raise PriorFileError(
            f"{path}: tensor '{key}' has shape {tuple(t.shape)}, but maml.inner_lr_shape "
            f"{maml.inner_lr_shape!r} implies {shape} (one step size per "
            f"{'element' if maml.inner_lr_shape == 'element' else 'tensor and member'}"
            f"{', of the CAVIA context' if maml.context else ''})."
        )
    return _tensor(tensors, key, shape, path)


def _finite(t: torch.Tensor, key: str, path: Path) -> np.ndarray:
    if t.dtype != torch.float32 or not torch.isfinite(t).all():
        raise PriorFileError(f"{path}: tensor '{key}' must be finite float32.")
    return t.double().numpy()
