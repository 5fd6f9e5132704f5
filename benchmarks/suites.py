"""Benchmark suites: tasks with a search space and a vectorised objective.

* ``yahpo:<scenario>[:<variant>]``: YAHPO Gym ONNX surrogates (``rbv2_xgboost``, ``lcbench``,
  ``rbv2_rpart``, ``iaml_glmnet``) read from a data folder the user gives (e.g.
  ``../shared/data/yahpo``), evaluated with onnxruntime at full fidelity, as ``SOURCE.md``
  there describes. ``iaml_glmnet`` has 4 tasks only: it is split leave-one-task-out (each
  task in turn is the new one, the other 3 are the past). Variants:

  - ``noisy`` (rbv2 scenarios): each evaluation is at a random replication ``repl`` in
    1..10 (real fold-to-fold noise); the true value of a config is the mean over the 10.
  - ``noisy-heavy``: as ``noisy``, plus Gaussian noise of the size seen between training
    seeds (:data:`SEED_NOISE`).
  - ``few<N>`` (e.g. ``few7``): at most N past studies (the few-tasks case).
* ``table:<folder>``: a generic tabular suite anyone can fill: ``<folder>/space.yaml`` and one
  CSV per task (``<task>.csv``: a column per parameter, the objective column named as in the
  space, optionally a ``seed`` column for repeated measurements). A config is evaluated by
  the recorded objective of the nearest recorded config (encoded-space distance; repeats of
  that config are averaged, or one is drawn per evaluation seed).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuner.space import Encoder, SearchSpace, load_space

REPO = Path(__file__).resolve().parents[1]


class Suite:
    """A set of tasks over one space.

    ``evaluate`` returns what one evaluation of each config observes (noisy on a noisy
    suite, drawn from ``rng``), ``true_values`` the value regret is measured against (the
    mean over the noise). ``past_tasks`` caps the past studies (a few-tasks suite);
    ``leave_one_out`` splits the tasks leave-one-task-out (a suite with very few tasks).
    """

    name: str
    space: SearchSpace
    tasks: list[str]
    noisy: bool = False
    past_tasks: int | None = None
    leave_one_out: bool = False

    def evaluate(
        self,
        task: str,
        configs: Sequence[Mapping[str, Any]],
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        raise NotImplementedError

    def true_values(self, task: str, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The noise-free value of each config (a deterministic suite's own values)."""
        return self.evaluate(task, configs)


# the outputs of every rbv2_* scenario, in order
_RBV2_OUTPUTS = [
    "acc",
    "bac",
    "auc",
    "brier",
    "f1",
    "logloss",
    "timetrain",
    "timepredict",
    "memory",
]
_YAHPO = {
    "rbv2_xgboost": dict(
        cont=[
            "nrounds",
            "eta",
            "gamma",
            "lambda",
            "alpha",
            "subsample",
            "max_depth",
            "min_child_weight",
            "colsample_bytree",
            "colsample_bylevel",
            "rate_drop",
            "skip_drop",
            "trainsize",
            "repl",
        ],
        cat=["task_id", "booster", "num.impute.selected.cpo"],
        outputs=_RBV2_OUTPUTS,
        fidelity={"trainsize": 1.0, "repl": 10},
        task_param="task_id",
    ),
    "lcbench": dict(
        cont=[
            "epoch",
            "batch_size",
            "learning_rate",
            "momentum",
            "weight_decay",
            "num_layers",
            "max_units",
            "max_dropout",
        ],
        cat=["OpenML_task_id"],
        outputs=[
            "time",
            "val_accuracy",
            "val_cross_entropy",
            "val_balanced_accuracy",
            "test_cross_entropy",
            "test_balanced_accuracy",
        ],
        fidelity={"epoch": 52},
        task_param="OpenML_task_id",
    ),
    "rbv2_rpart": dict(
        cont=["cp", "maxdepth", "minbucket", "minsplit", "trainsize", "repl"],
        cat=["task_id", "num.impute.selected.cpo"],
        outputs=_RBV2_OUTPUTS,
        fidelity={"trainsize": 1.0, "repl": 10},
        task_param="task_id",
    ),
    "iaml_glmnet": dict(
        cont=["alpha", "s", "trainsize"],
        cat=["task_id"],
        outputs=[
            "mmce",
            "f1",
            "auc",
            "logloss",
            "ramtrain",
            "rammodel",
            "rampredict",
            "timetrain",
            "timepredict",
            "mec",
            "ias",
            "nf",
        ],
        fidelity={"trainsize": 1.0},
        task_param="task_id",
        leave_one_out=True,
    ),
}
# Replications of an rbv2 evaluation (the ``repl`` fidelity): the noisy variants draw one.
REPLICATIONS = 10
# Standard deviation of accuracy between training seeds of one XGBoost config: what
# ``noisy-heavy`` adds to each evaluation (measured on real XGBoost: 0.000 to 0.006 over three
# data sets and two configs, benchmarks/NOTES.md "Noisy suites"; the largest, rounded down).
SEED_NOISE = 0.005


@dataclasses.dataclass(frozen=True)
class Variant:
    """A suite's variant (``yahpo:<scenario>:<variant>``).

    Attributes:
        name: As written in the suite's name (``""`` for none).
        noise: ``None``, ``"repl"`` (a random replication) or ``"repl+seed"`` (plus
            :data:`SEED_NOISE`).
        past_tasks: Past studies at most.
    """

    name: str = ""
    noise: str | None = None
    past_tasks: int | None = None

    @classmethod
    def parse(cls, text: str, scenario: str) -> Variant:
        """``""``, ``noisy``, ``noisy-heavy`` or ``few<N>``; the rule and the value if not."""
        if text in ("noisy", "noisy-heavy"):
            if "repl" not in _YAHPO[scenario]["fidelity"]:
                raise ValueError(
                    f"variant {text!r} needs replications (the rbv2 scenarios); "
                    f"{scenario} has none"
                )
            return cls(text, "repl" if text == "noisy" else "repl+seed")
        if text.startswith("few") and text[3:].isdigit() and int(text[3:]) >= 3:
            return cls(text, past_tasks=int(text[3:]))
        if text:
            raise ValueError(
                f"unknown suite variant {text!r}: use noisy, noisy-heavy or few<N> (N >= 3)"
            )
        return cls()


class YahpoSuite(Suite):
    """A YAHPO Gym scenario evaluated through its ONNX surrogate.

    ``space`` replaces the scenario's space in ``search_spaces/`` (its parameters keep the
    scenario's names; its objective names the output evaluated).
    """

    def __init__(
        self,
        scenario: str,
        data_dir: str | Path,
        *,
        space: SearchSpace | None = None,
        variant: str = "",
        seed: int = 0,
    ) -> None:
        import onnxruntime as ort

        if scenario not in _YAHPO:
            raise ValueError(f"unknown YAHPO scenario {scenario!r}; have {sorted(_YAHPO)}")
        self.variant = Variant.parse(variant, scenario)
        folder = Path(data_dir) / scenario
        model = folder / "model.onnx"
        if not model.is_file():
            raise FileNotFoundError(
                f"{model} not found: pass --data pointing at the folder with YAHPO scenarios "
                "(e.g. ../shared/data/yahpo)"
            )
        self.name = f"yahpo:{scenario}" + (f":{variant}" if variant else "")
        self.meta = _YAHPO[scenario]
        self.noisy = self.variant.noise is not None
        self.past_tasks = self.variant.past_tasks
        self.leave_one_out = bool(self.meta.get("leave_one_out", False))
        self.rng = np.random.default_rng(seed)
        self.space = space or load_space(REPO / "search_spaces" / f"{scenario}.yaml")
        self.encoding = json.loads((folder / "encoding.json").read_text())
        cs = json.loads((folder / "config_space.json").read_text())
        task_hp = next(h for h in cs["hyperparameters"] if h["name"] == self.meta["task_param"])
        self.tasks = [str(c) for c in task_hp["choices"]]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model), options)
        self.out_index = self.meta["outputs"].index(self.space.objective.name)

    def evaluate(
        self,
        task: str,
        configs: Sequence[Mapping[str, Any]],
        rng: np.random.Generator | None = None,
        *,
        fidelity: Sequence[Mapping[str, Any]] | None = None,
    ) -> np.ndarray:
        """One evaluation per config: at a random replication on a noisy variant.

        ``fidelity`` overrides the full-fidelity values per config instead (e.g.
        ``{"repl": 3}``: one replication of rbv2's 10, as the trust benchmark evaluates).
        """
        if fidelity is not None or not self.noisy:
            return self._surrogate(task, configs, fidelity)
        rng = rng or self.rng
        repl = rng.integers(1, REPLICATIONS + 1, size=len(configs))
        values = self._surrogate(task, configs, [{"repl": int(r)} for r in repl])
        if self.variant.noise == "repl+seed":
            values = values + rng.normal(0.0, SEED_NOISE, size=len(values))
        return values

    def true_values(self, task: str, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The mean over the replications on a noisy variant, else the surrogate's value."""
        if not self.noisy:
            return self._surrogate(task, configs)
        n = len(configs)
        many = [c for c in configs for _ in range(REPLICATIONS)]
        fidelity = [{"repl": r} for _ in configs for r in range(1, REPLICATIONS + 1)]
        values = self._surrogate(task, many, fidelity)
        return values.reshape(n, REPLICATIONS).mean(axis=1)

    def _surrogate(
        self,
        task: str,
        configs: Sequence[Mapping[str, Any]],
        fidelity: Sequence[Mapping[str, Any]] | None = None,
    ) -> np.ndarray:
        """The ONNX model's output at full fidelity, or at ``fidelity[i]`` where given."""
        n = len(configs)
        cont = np.zeros((n, len(self.meta["cont"])), dtype=np.float32)
        cat = np.zeros((n, len(self.meta["cat"])), dtype=np.int32)
        for i, cfg in enumerate(configs):
            extra = fidelity[i] if fidelity is not None else {}
            full = {**cfg, **self.meta["fidelity"], **extra, self.meta["task_param"]: task}
            for j, name in enumerate(self.meta["cont"]):
                v = full.get(name)
                cont[i, j] = 0.0 if v is None else float(v)
            for j, name in enumerate(self.meta["cat"]):
                v = full.get(name)
                cat[i, j] = 0 if v is None else self.encoding[name][str(v)]
        out = self.session.run(None, {"x_cat": cat, "x_cont": cont})[0]
        return out[:, self.out_index].astype(np.float64)


@dataclasses.dataclass
class _Table:
    x: np.ndarray
    values: np.ndarray
    groups: list[np.ndarray]


class TableSuite(Suite):
    """A tabular suite: ``space.yaml`` plus one CSV per task (see the module docstring)."""

    def __init__(self, folder: str | Path, *, seed: int = 0) -> None:
        folder = Path(folder)
        self.name = f"table:{folder.name}"
        self.space = load_space(folder / "space.yaml")
        self.encoder = Encoder(self.space)
        self.rng = np.random.default_rng(seed)
        self.tables: dict[str, _Table] = {}
        for path in sorted(folder.glob("*.csv")):
            self.tables[path.stem] = self._read(path)
        if not self.tables:
            raise FileNotFoundError(f"{folder}: no <task>.csv files next to space.yaml")
        self.tasks = list(self.tables)
        self.noisy = any(len(g) > 1 for t in self.tables.values() for g in t.groups)

    def _read(self, path: Path) -> _Table:
        objective = self.space.objective.name
        configs, values = [], []
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                cfg = {}
                for name, p in self.space.params.items():
                    raw = row.get(name, "")
                    if raw == "":
                        continue
                    cfg[name] = _parse_cell(raw, p.distribution)
                configs.append({k: cfg[k] for k in self.space.active_params(cfg) if k in cfg})
                values.append(float(row[objective]))
        x = self.encoder.encode_many(configs)
        # group repeated measurements of the same config
        keys = {}
        groups = []
        for i, row in enumerate(np.round(x, 9)):
            key = row.tobytes()
            if key not in keys:
                keys[key] = len(groups)
                groups.append([])
            groups[keys[key]].append(i)
        ux = np.array([x[g[0]] for g in groups])
        return _Table(ux, np.asarray(values), [np.array(g) for g in groups])

    def evaluate(
        self,
        task: str,
        configs: Sequence[Mapping[str, Any]],
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """The nearest recorded config's value (one of its repeats, drawn from ``rng``)."""
        rng = rng or self.rng
        table = self.tables[task]
        out = np.empty(len(configs))
        for i, g in enumerate(self._nearest(table, configs)):
            rows = table.groups[g]
            out[i] = table.values[rng.choice(rows)] if len(rows) > 1 else table.values[rows[0]]
        return out

    def true_values(self, task: str, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The nearest recorded config's mean over its repeats."""
        table = self.tables[task]
        nearest = self._nearest(table, configs)
        return np.array([table.values[table.groups[g]].mean() for g in nearest])

    def _nearest(self, table: _Table, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        q = self.encoder.encode_many(list(configs))
        return ((q[:, None, :] - table.x[None]) ** 2).sum(-1).argmin(axis=1)

    def best_value(self, task: str) -> float:
        table = self.tables[task]
        means = np.array([table.values[g].mean() for g in table.groups])
        return float(means.min() if self.space.objective.direction == "minimize" else means.max())


def _parse_cell(raw: str, dist) -> Any:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        for c in dist.choices:
            if str(c) == raw:
                return c
        raise ValueError(f"{raw!r} is not one of {dist.choices}")
    if isinstance(dist, IntDistribution):
        return int(float(raw))
    return float(raw)


def load_suite(spec: str, data: str | Path | None = None, *, seed: int = 0) -> Suite:
    """``yahpo:<scenario>[:<variant>]`` (needs ``data``) or ``table:<folder>``."""
    kind, _, arg = spec.partition(":")
    if kind == "yahpo":
        if data is None:
            raise ValueError("yahpo suites need --data (the folder with the YAHPO scenarios)")
        scenario, _, variant = arg.partition(":")
        return YahpoSuite(scenario, data, variant=variant, seed=seed)
    if kind == "table":
        return TableSuite(arg, seed=seed)
    raise ValueError(f"unknown suite {spec!r}: use yahpo:<scenario> or table:<folder>")
