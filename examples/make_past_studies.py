"""Regenerate the example past studies in studies/past/ and the prior trained from them.

Each past study is a real `mttune run` of examples/mlp_sklearn.py on one data set of the
example family (scikit-learn's wine, breast_cancer, iris and generated moons, circles and
classification tasks). `digits` is left out: it is the new task the README's main job tunes.

    python examples/make_past_studies.py            # ~15 min on 2 cores
    python examples/make_past_studies.py --trials 10 --datasets wine iris moons-0   # quick
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = [
    "wine",
    "breast_cancer",
    "iris",
    "moons-0",
    "moons-1",
    "circles-0",
    "circles-1",
    "synthetic-0",
    "synthetic-1",
    "synthetic-2",
    "synthetic-3",
    "synthetic-4",
    "synthetic-5",
]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "studies" / "past")
    parser.add_argument("--prior", type=Path, default=ROOT / "studies" / "mlp.prior.safetensors")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    mttune = [sys.executable, "-m", "tuner"]
    for i, name in enumerate(args.datasets):
        db = args.out / f"mlp-{name}.db"
        print(f"[{i + 1}/{len(args.datasets)}] {name} -> {db}", flush=True)
        subprocess.run(
            [
                *mttune,
                "run",
                str(ROOT / "examples" / "mlp_sklearn.py"),
                "--space",
                str(ROOT / "search_spaces" / "mlp.yaml"),
                "--study",
                f"mlp-{name}",
                "--storage",
                str(db),
                "--n-trials",
                str(args.trials),
                "--n-jobs",
                str(args.jobs),
                "--seed",
                str(i),
                "--pruner",
                "none",
                "--progress",
                "lines",
                "--trial-timeout",
                "120",
            ],
            env={**os.environ, "MLP_DATASET": name},
            check=True,
        )
        with sqlite3.connect(db) as con:  # keep the committed files small
            con.execute("PRAGMA journal_mode=DELETE")
        with sqlite3.connect(db) as con:
            con.execute("VACUUM")
    subprocess.run(
        [
            *mttune,
            "meta-train",
            "--space",
            str(ROOT / "search_spaces" / "mlp.yaml"),
            "--from",
            str(args.out / "*.db"),
            "-o",
            str(args.prior),
            "--seed",
            "0",
        ],
        check=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
