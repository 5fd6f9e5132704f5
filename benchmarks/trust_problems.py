"""The trust benchmark's problems: what one trial observes, and what is true.

* :class:`YahpoProblem`: YAHPO ``rbv2_xgboost`` (accuracy, maximised) on held-out tasks, each
  trial at one random ``repl`` replication of the 10 the surrogate models (noise ``repl``),
  optionally plus Student-t (df 3) noise (``heavy``); true value = the mean over the 10.
* :class:`MlpProblem`: the bundled ``examples/mlp_sklearn.py`` (validation cross-entropy,
  minimised) on scikit-learn data sets, each trial trained with a fresh seed (noise ``seed``);
  true value = the mean over training seeds 0-9, cached per (data set, config) on disk.

Both give the harness (:mod:`benchmarks.trust`) the same few things: the space, the direction,
the test tasks, a noisy objective per study, the true values of configs, and each task's best
known true value (the zero of the regrets).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REPLS = tuple(range(1, 11))
TRUTH_SEEDS = tuple(range(10))
MLP_DATASETS = ("wine", "breast_cancer", "synthetic-0", "moons-1")


class NoisyTask:
    """One YAHPO task's noisy objective (a random replication, plus optional t3 noise)."""

    def __init__(self, suite, task: str, noise: str, heavy_scale: float, seed: int) -> None:
        self.suite, self.task, self.noise = suite, task, noise
        self.heavy_scale = heavy_scale
        self.rng = np.random.default_rng(seed)

    def __call__(self, config: Mapping[str, Any]) -> float:
        repl = int(self.rng.choice(REPLS))
        value = float(self.suite.evaluate(self.task, [config], fidelity=[{"repl": repl}])[0])
        if self.noise == "heavy":
            value += self.heavy_scale * float(self.rng.standard_t(3))
        return value

    def truth(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Mean over the 10 replications of each config."""
        return true_values(self.suite, self.task, configs)


def true_values(suite, task: str, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The mean over the 10 replications of each config (the noise-free value)."""
    configs = list(configs)
    many = [c for c in configs for _ in REPLS]
    fid = [{"repl": r} for _ in configs for r in REPLS]
    return suite.evaluate(task, many, fidelity=fid).reshape(len(configs), len(REPLS)).mean(1)


def task_optimum(suite, task: str, seed: int = 0, n: int = 3000) -> float:
    """The best true value a random search refined locally finds (the regrets' zero)."""
    from tuner.space import Encoder

    enc = Encoder(suite.space)
    rng = np.random.default_rng(seed)
    x = enc.sample(n, rng)
    v = true_values(suite, task, enc.decode_many(x))
    for scale in (0.1, 0.03, 0.01):
        top = x[np.argsort(-v)[:10]]
        local = enc.canonicalize(
            np.clip(np.repeat(top, 30, 0) + rng.normal(0, scale, (300, enc.dim)), 0, 1)
        )
        lv = true_values(suite, task, enc.decode_many(local))
        x, v = np.vstack([x, local]), np.concatenate([v, lv])
    return float(v.max())


class YahpoProblem:
    """YAHPO ``rbv2_xgboost`` with real replication noise (and optional heavy-tailed noise)."""

    name = "yahpo"
    direction = "maximize"
    noises = ("repl", "heavy")
    units = "Accuracy units (higher is better)"

    def __init__(self, *, data: str | Path, test_tasks: int, train_tasks: int, heavy_scale: float):
        from benchmarks.suites import YahpoSuite
        from benchmarks.transfer import split_tasks

        self.suite = YahpoSuite("rbv2_xgboost", data)
        self.space = self.suite.space
        tasks = self.suite.tasks
        self.tasks, self.train_tasks = split_tasks(tasks, test_tasks, train_tasks, seed=0)
        self.heavy_scale = heavy_scale
        self._optima: dict[str, float] = {}

    def objective(self, task: str, noise: str, seed: int) -> NoisyTask:
        """The noisy objective of one study."""
        return NoisyTask(self.suite, task, noise, self.heavy_scale, seed)

    def truth(self, task: str, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The true value of each config."""
        return true_values(self.suite, task, configs)

    def optimum(self, task: str) -> float:
        """The task's best true value, by a large search of true values."""
        if task not in self._optima:
            self._optima[task] = task_optimum(self.suite, task)
        return self._optima[task]

    def prior(self, raw: Path, train_trials: int, meta_train_args: str):
        """Past TPE studies of the training tasks and ``mttune meta-train`` on them (cached)."""
        from benchmarks.transfer import build_past_studies, meta_train
        from tuner.prior import load_prior

        space_file = raw / "space.yaml"
        space_file.write_text(self.space.to_yaml())
        db = raw / "past_studies.db"
        build_past_studies(self.suite, self.train_tasks, db, train_trials, "tpe")
        prior = raw / "prior.safetensors"
        seconds = meta_train(space_file, db, prior, meta_train_args, retrain=False)
        n = len(self.train_tasks)
        print(f"prior: {n} past studies, meta-train {seconds:.0f}s", flush=True)
        return load_prior(prior)


class TruthCache:
    """Per-seed values of configs, one JSON line per (config, seed values), append-only.

    A config's key is its parameters as sorted JSON (values exactly as the study stored them),
    so a rerun, or another study that proposes the same config, reuses the trainings.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._values: dict[str, list[float | None]] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                self._values[entry["config"]] = entry["values"]

    @staticmethod
    def key(config: Mapping[str, Any]) -> str:
        """The cache key of a config."""
        return json.dumps(dict(config), sort_keys=True)

    def get(self, config: Mapping[str, Any]) -> list[float | None] | None:
        """The cached per-seed values of a config (``None``: a diverged seed), if any."""
        return self._values.get(self.key(config))

    def put(self, config: Mapping[str, Any], values: Sequence[float | None]) -> None:
        """Store a config's per-seed values (in memory and on disk)."""
        key = self.key(config)
        self._values[key] = list(values)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"config": key, "values": list(values)}) + "\n")

    def all_values(self) -> list[list[float | None]]:
        """Every cached config's per-seed values."""
        return list(self._values.values())


def seed_mean(values: Sequence[float | None]) -> float:
    """The true value of a config: the mean over the seeds that finished (inf if none did)."""
    done = [v for v in values if v is not None]
    return float(np.mean(done)) if done else math.inf


class MlpProblem:
    """The bundled PyTorch MLP on scikit-learn data sets, with real training-seed noise."""

    name = "mlp"
    direction = "minimize"
    noises = ("seed",)
    units = "Validation cross-entropy (lower is better)"

    def __init__(self, *, datasets: Sequence[str], raw: Path) -> None:
        from tuner.space import load_space

        self.tasks = list(datasets)
        self.space = load_space(REPO / "search_spaces" / "mlp.yaml")
        self.caches = {d: TruthCache(raw / "truth" / f"{d}.jsonl") for d in self.tasks}
        if str(REPO / "examples") not in sys.path:
            sys.path.insert(0, str(REPO / "examples"))
        import mlp_sklearn

        self.example = mlp_sklearn
        self.trainings = 0

    def train(self, task: str, config: Mapping[str, Any], seed: int) -> float | None:
        """One training of ``config`` on data set ``task`` with ``seed`` (None: diverged)."""
        os.environ["MLP_DATASET"] = task
        os.environ["MTTUNE_SEED"] = str(seed)
        self.trainings += 1
        value = float(self.example.train(dict(config), lambda *a, **k: None)["val_loss"])
        return value if math.isfinite(value) else None

    def objective(self, task: str, noise: str, seed: int) -> Callable[[Mapping[str, Any]], float]:
        """The study's objective: each call trains once with a fresh seed (not a truth seed)."""
        rng = np.random.default_rng(seed)

        def objective(config: Mapping[str, Any]) -> float:
            value = self.train(task, config, int(rng.integers(1000, 2**31 - 1)))
            return math.nan if value is None else value

        return objective

    def seed_values(self, task: str, config: Mapping[str, Any]) -> list[float | None]:
        """The config's values at the 10 truth seeds (trained once, then cached)."""
        cache = self.caches[task]
        values = cache.get(config)
        if values is None:
            values = [self.train(task, config, s) for s in TRUTH_SEEDS]
            cache.put(config, values)
        return values

    def truth(self, task: str, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The true value of each config: the mean over the 10 truth seeds."""
        return np.array([seed_mean(self.seed_values(task, c)) for c in configs])

    def optimum(self, task: str) -> float:
        """The best true value of any config whose truth was computed on ``task``."""
        return min(seed_mean(v) for v in self.caches[task].all_values())

    def prior(self, raw: Path, train_trials: int, meta_train_args: str):
        """The built-in ``mlp`` prior (learned on YAHPO lcbench: these tasks are held out)."""
        from tuner.prior import load_prior

        return load_prior("mlp")
