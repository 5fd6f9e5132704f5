"""A real training script for mttune: an XGBoost classifier on a scikit-learn data set.

Made for the built-in ``xgboost`` prior (``mttune run ... --prior xgboost``): its parameters
carry the xgboost Python API's names. It speaks both forms of the mttune trial protocol:

* form (a): mttune imports it and calls ``train(params, report)``;
* form (b): run it directly, ``python xgboost_sklearn.py --learning_rate 0.1 --max_depth 4``,
  and it prints the validation log-loss every 10 rounds and a final JSON line, e.g.
  ``{"val_logloss": 0.08, "val_accuracy": 0.97}``.

Environment:

* ``XGB_DATASET``: ``breast_cancer`` (default), ``digits``, ``wine``, ``iris``, or a generated
  3-class set ``synthetic3``; a 70/30 stratified split (fixed per data set);
* ``MTTUNE_SEED``: seed of the row and column sampling.

Needs ``pip install 'mttune[xgboost]'``. Search space: ``search_spaces/xgboost.yaml`` (the same
as ``mttune space from-prior xgboost``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

# XGBoost's own defaults (xgboost 2.x/3.x, booster gbtree, XGBClassifier with 100 trees).
DEFAULTS: dict[str, Any] = {
    "n_estimators": 100,
    "learning_rate": 0.3,
    "max_depth": 6,
    "min_child_weight": 1.0,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "reg_lambda": 1.0,
    "reg_alpha": 0.0,
}
DATASETS = ("breast_cancer", "digits", "wine", "iris", "synthetic3")


def load_dataset(name: str):
    """Features and labels of a named data set (all ship with scikit-learn or are generated)."""
    from sklearn import datasets

    loaders = {
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
        "wine": datasets.load_wine,
        "iris": datasets.load_iris,
    }
    if name in loaders:
        return loaders[name](return_X_y=True)
    if name == "synthetic3":
        return datasets.make_classification(
            n_samples=1000,
            n_features=20,
            n_informative=8,
            n_redundant=4,
            n_classes=3,
            flip_y=0.05,
            class_sep=0.8,
            random_state=0,
        )
    raise ValueError(f"unknown XGB_DATASET {name!r}: use one of {', '.join(DATASETS)}")


def split(name: str):
    """The data set's fixed 70/30 stratified split: ``x_tr, x_va, y_tr, y_va``."""
    from sklearn.model_selection import train_test_split

    x, y = load_dataset(name)
    return train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)


def train(params: dict[str, Any], report: Callable[..., None] | None = None) -> dict[str, float]:
    """Fit XGBoost with ``params``; report the validation log-loss; return final metrics."""
    import numpy as np
    import xgboost as xgb
    from sklearn.metrics import accuracy_score, log_loss

    p = {**DEFAULTS, **params}
    x_tr, x_va, y_tr, y_va = split(os.environ.get("XGB_DATASET", "breast_cancer"))
    model = xgb.XGBClassifier(
        n_estimators=int(p["n_estimators"]),
        learning_rate=float(p["learning_rate"]),
        max_depth=int(p["max_depth"]),
        min_child_weight=float(p["min_child_weight"]),
        subsample=float(p["subsample"]),
        colsample_bytree=float(p["colsample_bytree"]),
        reg_lambda=float(p["reg_lambda"]),
        reg_alpha=float(p["reg_alpha"]),
        tree_method="hist",
        n_jobs=1,
        random_state=int(os.environ.get("MTTUNE_SEED", "0")),
    )
    model.fit(x_tr, y_tr, eval_set=[(x_va, y_va)], verbose=False)
    if report is not None:
        history = next(iter(model.evals_result()["validation_0"].values()))
        for step in range(9, len(history), 10):
            report(step, float(history[step]))
    proba = model.predict_proba(x_va)
    return {
        "val_logloss": float(log_loss(y_va, np.clip(proba, 1e-15, 1.0), labels=model.classes_)),
        "val_accuracy": float(accuracy_score(y_va, proba.argmax(axis=1))),
    }


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in DEFAULTS.items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    params = vars(parser.parse_args(argv))

    def report(step: int, value: float) -> None:
        print(json.dumps({"step": step, "val_logloss": value}), flush=True)

    print(json.dumps(train(params, report)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
