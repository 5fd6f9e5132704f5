"""Studies with a known truth for the review tests: a noisy quadratic, made for real."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from tuner.runners import trial_seed
from tuner.studies import TrialAttr

REVIEW_SCRIPTS = Path(__file__).resolve().parent / "scripts"
NOISY = REVIEW_SCRIPTS / "noisy_quad.py"
DISTS = {"x": FloatDistribution(-1.0, 1.0), "y": FloatDistribution(-1.0, 1.0)}


def quad(params: dict) -> float:
    """The noise-free objective of every test study (minimum 0 at x=0.3, y=-0.1)."""
    return (params["x"] - 0.3) ** 2 + (params["y"] + 0.1) ** 2


def noisy_study(
    storage: str | optuna.storages.BaseStorage,
    name: str,
    *,
    n: int = 40,
    sigma: float = 0.05,
    seed: int = 0,
    direction: str = "minimize",
    df: float | None = None,
) -> optuna.Study:
    """A random search of ``n`` trials on the quadratic with N(0, sigma^2) noise.

    With ``df`` the noise is heavy-tailed instead: ``sigma`` times a Student-t draw with
    ``df`` degrees of freedom.

    Random configs are evaluated and recorded as trials (``add_trials``: the same study as
    ``RandomSampler`` makes, ten times faster to write to SQLite).
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name=name, storage=storage, direction=direction)
    rng = np.random.default_rng(seed)
    sign = 1.0 if direction == "minimize" else -1.0
    trials = []
    for i in range(n):
        params = {"x": float(rng.uniform(-1, 1)), "y": float(rng.uniform(-1, 1))}
        noise = rng.normal(0.0, sigma) if df is None else sigma * rng.standard_t(df)
        value = sign * quad(params) + float(noise)
        attrs = {TrialAttr.SEED.key: trial_seed(seed, i)}  # as mttune run records it
        trials.append(
            create_trial(params=params, distributions=DISTS, value=value, user_attrs=attrs)
        )
    study.add_trials(trials)
    return study


def mixed_study(storage: str | optuna.storages.BaseStorage, name: str, seed: int = 0) -> None:
    """A define-by-run study with every kind of parameter, a conditional one, failures,
    pruned trials and a duplicated config (made by ``study.optimize``)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=seed)
    )
    rng = np.random.default_rng(seed)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -1.0, 1.0)
        lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        layers = trial.suggest_int("layers", 1, 4)
        drop = trial.suggest_float("dropout", 0.0, 0.5, step=0.1)
        opt = trial.suggest_categorical("optimizer", ["adam", "sgd"])
        if opt == "sgd":
            trial.suggest_float("momentum", 0.0, 0.99)
        if trial.number % 9 == 4:
            trial.set_user_attr(
                TrialAttr.FAIL_REASON.key, "the script exited with code 1: CUDA OOM"
            )
            raise RuntimeError("oom")
        if trial.number % 11 == 5:
            raise optuna.TrialPruned()
        return (
            (x - 0.3) ** 2
            + 0.01 * (np.log10(lr) + 2) ** 2
            + 0.01 * layers
            + drop * 0.1
            + (0.05 if opt == "sgd" else 0.0)
            + float(rng.normal(0, 0.02))
        )

    study.optimize(objective, n_trials=30, catch=(RuntimeError,))
    first = study.trials[0]
    study.enqueue_trial(first.params)
    study.optimize(objective, n_trials=1, catch=(RuntimeError,))


def fingerprint(folder: Path) -> dict[str, tuple[str, int, int]]:
    """Every file of a folder: its content hash, size and mtime (ns)."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.is_file():
            st = p.stat()
            out[p.name] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def noisy_script() -> Path:
    return NOISY


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
