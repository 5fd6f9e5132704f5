"""Build the built-in priors (``tuner/prior/builtin/*.safetensors``) from the YAHPO surrogates.

For each family a fixed-seed set of random configs per task is evaluated at full fidelity on
the YAHPO Gym ONNX surrogate of its scenario (real training runs on OpenML tasks, Apache-2.0,
see ``NOTICE``): these are the past studies, one per task. They are meta-trained with the
ordinary :func:`tuner.prior.meta_train` (seed 0, CPU, one thread), the features get the names
users write (the library's API names, with aliases), and the file records its provenance
(scenario, tasks, trials, attribution), its validation metrics and a default search space.

Same data + same command + same versions (torch, numpy, onnxruntime) = the same files, bit for
bit (the training time, the one thing that varies, is not recorded)::

    python -m benchmarks.build_builtin_priors --data ../shared/data/yahpo
    python -m benchmarks.build_builtin_priors --data ../shared/data/yahpo --only xgboost --check

``--check`` builds into a temporary folder and compares with the shipped files instead of
writing them (exit 1 when one differs).
"""

from __future__ import annotations

import argparse
import dataclasses
import filecmp
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tuner" / "prior" / "builtin"
ATTRIBUTION = (
    "Meta-trained on YAHPO Gym surrogates (Pfisterer et al., AutoML-Conf 2022, "
    "arXiv 2109.03670; data github.com/slds-lmu/yahpo_data v1.0.2, Apache-2.0), "
    "fitted to OpenML training runs; see NOTICE."
)


@dataclasses.dataclass(frozen=True)
class Hp:
    """One hyperparameter of a family: its scenario name, user-facing name and aliases."""

    yahpo: str
    name: str
    aliases: tuple[str, ...]
    help: str


@dataclasses.dataclass(frozen=True)
class Family:
    """One built-in prior: where its data comes from and how users name its parameters."""

    name: str
    scenario: str
    summary: str
    objective: str
    fixed: dict[str, Any]
    hps: tuple[Hp, ...]
    default_space: dict[str, Any]
    trials_per_task: int = 128
    library: str = ""


XGBOOST = Family(
    name="xgboost",
    scenario="rbv2_xgboost",
    summary="XGBoost (gbtree) classifiers: 119 OpenML tasks",
    library="xgboost (XGBClassifier / xgb.train); booster gbtree",
    objective="logloss",
    fixed={"booster": "gbtree", "num.impute.selected.cpo": "impute.median"},
    hps=(
        Hp(
            "nrounds",
            "n_estimators",
            ("num_boost_round", "nrounds", "num_round"),
            "boosting rounds (trees per class)",
        ),
        Hp("eta", "learning_rate", ("eta",), "shrinkage of each tree's contribution"),
        Hp("gamma", "gamma", ("min_split_loss",), "minimum loss reduction to split a leaf"),
        Hp("lambda", "reg_lambda", ("lambda",), "L2 penalty on leaf weights"),
        Hp("alpha", "reg_alpha", ("alpha",), "L1 penalty on leaf weights"),
        Hp("subsample", "subsample", (), "fraction of rows sampled per tree"),
        Hp("max_depth", "max_depth", (), "maximum tree depth"),
        Hp("min_child_weight", "min_child_weight", (), "minimum hessian sum in a leaf"),
        Hp("colsample_bytree", "colsample_bytree", (), "fraction of columns per tree"),
        Hp("colsample_bylevel", "colsample_bylevel", (), "fraction of columns per tree level"),
    ),
    default_space={
        "name": "xgboost",
        "objective": {"name": "val_logloss", "direction": "minimize"},
        "params": {
            "n_estimators": {"type": "int", "low": 10, "high": 1000, "log": True},
            "learning_rate": {"type": "float", "low": 0.001, "high": 1.0, "log": True},
            "max_depth": {"type": "int", "low": 1, "high": 12},
            "min_child_weight": {"type": "float", "low": 0.5, "high": 128.0, "log": True},
            "subsample": {"type": "float", "low": 0.3, "high": 1.0},
            "colsample_bytree": {"type": "float", "low": 0.3, "high": 1.0},
            "reg_lambda": {"type": "float", "low": 0.001, "high": 1000.0, "log": True},
            "reg_alpha": {"type": "float", "low": 0.001, "high": 1000.0, "log": True},
        },
    },
)

MLP = Family(
    name="mlp",
    scenario="lcbench",
    summary="MLPs (funnel-shaped, SGD, 50 epochs): 34 OpenML tasks",
    library="PyTorch-style MLP (Auto-PyTorch funnel nets in LCBench)",
    objective="val_cross_entropy",
    fixed={},
    hps=(
        Hp("batch_size", "batch_size", ("bs",), "mini-batch size"),
        Hp("learning_rate", "lr", ("learning_rate",), "SGD learning rate"),
        Hp("momentum", "momentum", (), "SGD momentum"),
        Hp("weight_decay", "weight_decay", ("wd",), "L2 weight decay"),
        Hp("num_layers", "num_layers", ("n_layers", "layers", "depth"), "hidden layers"),
        Hp(
            "max_units",
            "hidden_size",
            ("hidden", "hidden_units", "width", "units", "n_units", "max_units"),
            "units of the widest (first) hidden layer",
        ),
        Hp("max_dropout", "dropout", ("max_dropout", "p_dropout"), "dropout rate (at most)"),
    ),
    default_space={
        "name": "mlp",
        "objective": {"name": "val_loss", "direction": "minimize"},
        "params": {
            "lr": {"type": "float", "low": 0.0001, "high": 0.1, "log": True},
            "batch_size": {"type": "int", "low": 16, "high": 512, "log": True},
            "weight_decay": {"type": "float", "low": 1e-05, "high": 0.1, "log": True},
            "momentum": {"type": "float", "low": 0.1, "high": 0.99},
            "num_layers": {"type": "int", "low": 1, "high": 5},
            "hidden_size": {"type": "int", "low": 64, "high": 1024, "log": True},
            "dropout": {"type": "float", "low": 0.0, "high": 0.8},
        },
    },
    trials_per_task=256,
)

DECISION_TREE = Family(
    name="decision-tree",
    scenario="rbv2_rpart",
    summary="CART decision trees (R rpart): 117 OpenML tasks",
    library="scikit-learn DecisionTreeClassifier names (trained on R rpart)",
    objective="logloss",
    fixed={"num.impute.selected.cpo": "impute.median"},
    hps=(
        Hp(
            "cp",
            "ccp_alpha",
            ("cp",),
            "complexity penalty (rpart cp: relative to the root's error; sklearn's ccp_alpha "
            "is absolute, on a similar scale for Gini)",
        ),
        Hp("maxdepth", "max_depth", ("maxdepth",), "maximum tree depth"),
        Hp("minbucket", "min_samples_leaf", ("minbucket",), "minimum samples in a leaf"),
        Hp("minsplit", "min_samples_split", ("minsplit",), "minimum samples to split a node"),
    ),
    default_space={
        "name": "decision-tree",
        "objective": {"name": "val_logloss", "direction": "minimize"},
        "params": {
            "max_depth": {"type": "int", "low": 1, "high": 30},
            "min_samples_leaf": {"type": "int", "low": 1, "high": 100, "log": True},
            "min_samples_split": {"type": "int", "low": 2, "high": 100, "log": True},
            "ccp_alpha": {"type": "float", "low": 0.001, "high": 1.0, "log": True},
        },
    },
)

FAMILIES = {f.name: f for f in (XGBOOST, MLP, DECISION_TREE)}
SEED = 0
# MAML steps at most (early stopping usually ends sooner): ~0.3 s a step on one CPU thread
MAX_STEPS = 600


def training_space(family: Family, data: Path):
    """The family's space in user-facing names, with the scenario's ranges."""
    from tuner.space import SearchSpace

    cs = json.loads((data / family.scenario / "config_space.json").read_text())
    by_name = {h["name"]: h for h in cs["hyperparameters"]}
    params = {}
    for hp in family.hps:
        h = by_name[hp.yahpo]
        kind = "int" if h["type"] == "uniform_int" else "float"
        params[hp.name] = {
            "type": kind,
            "low": h["lower"],
            "high": h["upper"],
            "log": bool(h["log"]),
            "help": hp.help,
        }
    direction = "maximize" if family.objective in ("acc", "auc", "bac", "f1") else "minimize"
    return SearchSpace.from_dict(
        {
            "name": family.name,
            "objective": {"name": family.objective, "direction": direction},
            "params": params,
        },
        source=f"{family.scenario} (built-in {family.name})",
    )


def past_studies(family: Family, data: Path) -> tuple[Any, list[tuple[str, list, list]]]:
    """One past study per task: fixed-seed random configs, their surrogate values."""
    from benchmarks.suites import YahpoSuite
    from tuner.space import Encoder

    space = training_space(family, data)
    suite = YahpoSuite(family.scenario, data, space=space)
    encoder = Encoder(space)
    rename = {hp.name: hp.yahpo for hp in family.hps}
    tasks = []
    for i, task in enumerate(suite.tasks):
        rng = np.random.default_rng([SEED, i])
        configs = encoder.decode_many(encoder.sample(family.trials_per_task, rng))
        raw = [{**{rename[k]: v for k, v in c.items()}, **family.fixed} for c in configs]
        values = suite.evaluate(task, raw)
        keep = np.isfinite(values)
        tasks.append(
            (
                f"{family.scenario}:{task}",
                [c for c, k in zip(configs, keep, strict=True) if k],
                values[keep].tolist(),
            )
        )
    return space, tasks


def _early_strategy(prior, dataset) -> dict[str, Any]:
    """How the first trials are chosen: measured as meta-train does, but the model kept.

    The measurement runs on the prior's held-out YAHPO tasks; a built-in meets users' data,
    which is not YAHPO's, and on real training (``benchmarks.builtin_priors``) the hedge's
    first trials were worse than the model's for both families measured there, so the
    record keeps the measurement (``measured_choice``, the regrets) and chooses the model.
    """
    from tuner.sampler import decide_early_strategy

    record = decide_early_strategy(prior, dataset)
    record.pop("seconds", None)  # varies run to run
    if record.get("mean_regret"):
        record["measured_choice"] = record["choice"]
        record["choice"] = "model"
        record["reason"] = (
            "built-in priors keep the model: on real training the hedge's first trials were "
            "worse (benchmarks/README.md, built-in priors)"
        )
    return record


def build(family: Family, data: Path, out_dir: Path, *, max_steps: int = MAX_STEPS) -> Path:
    """Meta-train one family's prior and write ``<out_dir>/<name>.safetensors``."""
    import torch

    from tuner.metadataset import MetaDataset
    from tuner.prior import MAMLConfig, meta_train, save_prior
    from tuner.space import FeatureSpace

    torch.set_num_threads(1)  # the same sums in the same order on any machine
    space, tasks = past_studies(family, data)
    dataset = MetaDataset.from_tasks(space, tasks)
    dataset.report.sources = [f"yahpo:{family.scenario}"]
    maml = MAMLConfig(max_steps=max_steps)
    prior = meta_train(dataset, maml=maml, seed=SEED, device="cpu")
    by_name = {hp.name: hp for hp in family.hps}
    prior.features = FeatureSpace(
        dataclasses.replace(f, aliases=by_name[f.name].aliases, help=by_name[f.name].help)
        for f in prior.features
    )
    prior.info["early_strategy"] = _early_strategy(prior, dataset)
    prior.info["training"].pop("seconds", None)  # the one thing that varies run to run
    prior.info["builtin"] = {
        "name": family.name,
        "summary": family.summary,
        "library": family.library,
        "source": f"YAHPO Gym {family.scenario}, full fidelity "
        + (", ".join(f"{k}={v}" for k, v in family.fixed.items()) or "(no fixed parameters)"),
        "scenario": family.scenario,
        "objective": f"{family.objective} ({space.objective.direction})",
        "tasks": len(tasks),
        "trials": sum(len(v) for _, _, v in tasks),
        "trials_per_task": family.trials_per_task,
        "attribution": ATTRIBUTION,
        "license": "Apache-2.0",
        "build": "python -m benchmarks.build_builtin_priors --data ../shared/data/yahpo"
        + ("" if max_steps == MAX_STEPS else f" --max-steps {max_steps}"),
    }
    prior.info["default_space"] = family.default_space
    return save_prior(prior, out_dir / f"{family.name}.safetensors")


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path, help="folder of the YAHPO scenarios")
    p.add_argument("--only", nargs="+", choices=sorted(FAMILIES), help="these families only")
    p.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    p.add_argument("--check", action="store_true", help="rebuild and compare, write nothing")
    p.add_argument(
        "--max-steps",
        type=int,
        default=MAX_STEPS,
        help=f"MAML steps at most (default {MAX_STEPS}; the shipped files use the default)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    names = args.only or sorted(FAMILIES)
    differ = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) if args.check else args.out
        for name in names:
            t0 = time.monotonic()
            path = build(FAMILIES[name], args.data, out, max_steps=args.max_steps)
            seconds = time.monotonic() - t0
            size = path.stat().st_size
            print(f"{name}: {path.name} {size / 1024:.0f} KiB in {seconds:.0f} s", flush=True)
            if args.check:
                shipped = args.out / path.name
                if not (shipped.is_file() and filecmp.cmp(path, shipped, shallow=False)):
                    differ.append(name)
    if differ:
        print(f"differ from the shipped files: {', '.join(differ)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
