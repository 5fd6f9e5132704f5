"""A real training script for mttune: a PyTorch MLP on a scikit-learn data set.

It speaks both forms of the mttune trial protocol:

* form (a): mttune imports it and calls ``train(params, report)``;
* form (b): run it directly, ``python mlp_sklearn.py --lr 0.01 --hidden 64 ...``, and it prints
  one JSON line per epoch and a final one, e.g. ``{"val_loss": 0.12, "val_accuracy": 0.97}``.

Environment:

* ``MLP_DATASET``: ``digits`` (default), ``wine``, ``breast_cancer``, ``iris``, or a synthetic
  family member ``synthetic-<seed>``, ``moons-<seed>``, ``circles-<seed>``;
* ``MLP_EPOCHS``: epochs (default 20);
* ``MTTUNE_SEED``: seed of the weights and batch order (the data split is fixed per data set).

Search space: ``search_spaces/mlp.yaml``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

DEFAULTS: dict[str, Any] = {
    "lr": 0.01,
    "weight_decay": 1e-4,
    "hidden": 64,
    "n_layers": 2,
    "dropout": 0.1,
    "batch_size": 64,
    "optimizer": "adam",
    "momentum": 0.9,
}


def load_dataset(name: str):
    """Features and labels of a named data set (all ship with scikit-learn or are generated)."""
    from sklearn import datasets

    if name == "digits":
        return datasets.load_digits(return_X_y=True)
    if name == "wine":
        return datasets.load_wine(return_X_y=True)
    if name == "breast_cancer":
        return datasets.load_breast_cancer(return_X_y=True)
    if name == "iris":
        return datasets.load_iris(return_X_y=True)
    family, _, seed_txt = name.partition("-")
    seed = int(seed_txt or 0)
    if family == "synthetic":
        return datasets.make_classification(
            n_samples=800,
            n_features=20,
            n_informative=6 + seed % 8,
            n_classes=2 + seed % 4,
            n_clusters_per_class=1 + seed % 2,
            flip_y=0.02 + 0.02 * (seed % 3),
            class_sep=0.6 + 0.15 * (seed % 5),
            random_state=seed,
        )
    if family == "moons":
        return datasets.make_moons(
            n_samples=600, noise=0.15 + 0.05 * (seed % 4), random_state=seed
        )
    if family == "circles":
        return datasets.make_circles(
            n_samples=600, noise=0.05 + 0.03 * (seed % 4), factor=0.5, random_state=seed
        )
    raise ValueError(
        f"unknown MLP_DATASET {name!r}: use digits, wine, breast_cancer, iris, "
        "synthetic-N, moons-N or circles-N"
    )


def train(params: dict[str, Any], report: Callable[..., None]) -> dict[str, float]:
    """Train the MLP with ``params``; report validation loss per epoch; return final metrics."""
    import numpy as np
    import torch
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    from torch import nn

    torch.set_num_threads(1)
    p = {**DEFAULTS, **params}
    seed = int(os.environ.get("MTTUNE_SEED", "0"))
    epochs = int(os.environ.get("MLP_EPOCHS", "20"))
    x, y = load_dataset(os.environ.get("MLP_DATASET", "digits"))
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_tr)
    x_tr = torch.tensor(scaler.transform(x_tr), dtype=torch.float32)
    x_va = torch.tensor(scaler.transform(x_va), dtype=torch.float32)
    y_tr = torch.tensor(y_tr, dtype=torch.long)
    y_va = torch.tensor(y_va, dtype=torch.long)
    n_classes = int(max(y_tr.max(), y_va.max())) + 1

    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    width = x_tr.shape[1]
    for _ in range(int(p["n_layers"])):
        layers += [nn.Linear(width, int(p["hidden"])), nn.ReLU(), nn.Dropout(float(p["dropout"]))]
        width = int(p["hidden"])
    layers.append(nn.Linear(width, n_classes))
    model = nn.Sequential(*layers)
    if p["optimizer"] == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"]
        )
    else:
        opt = torch.optim.Adam(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    batch = int(p["batch_size"])
    val_loss = float("nan")
    acc = 0.0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            opt.zero_grad()
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = model(x_va)
            val_loss = float(loss_fn(logits, y_va))
            acc = float((logits.argmax(1) == y_va).float().mean())
        if not np.isfinite(val_loss):
            break  # diverged: the final value is NaN and the trial fails, as it should
        report(epoch, val_loss)
    return {"val_loss": val_loss, "val_accuracy": acc}


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in DEFAULTS.items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    params = vars(parser.parse_args(argv))

    def report(step: int, value: float) -> None:
        print(json.dumps({"step": step, "val_loss": value}), flush=True)

    print(json.dumps(train(params, report)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
