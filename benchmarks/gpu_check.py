"""Meta-training on a GPU (``--device cuda``): does it run, is it deterministic, how fast.

    python -m benchmarks.gpu_check --out DIR [--tasks benchmarks/results/raw/tasks.npz]

Trains the default prior on the shipped example studies (``studies/past``) and, when given, on
a stored meta-dataset (``--tasks``: an ``.npz`` written by ``--export-tasks``, e.g. 100 YAHPO
tasks x 200 trials), on ``cuda`` twice (determinism) and on ``cpu`` (reference), and checks
that the CUDA prior's file loads on the CPU and predicts what the CUDA-trained model predicts.
Writes ``gpu_check.md`` and ``gpu_check.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def export_tasks(path: Path, data: str, n_tasks: int = 100, n_trials: int = 200) -> None:
    """Store 100 YAHPO rbv2_xgboost tasks x 200 random trials for the device check."""
    from benchmarks.suites import load_suite
    from tuner.space import Encoder

    suite = load_suite("yahpo:rbv2_xgboost", data)
    enc = Encoder(suite.space)
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for task in suite.tasks[:n_tasks]:
        x = enc.sample(n_trials, rng)
        xs.append(x)
        ys.append(suite.evaluate(task, enc.decode_many(x)))
    np.savez_compressed(path, x=np.array(xs), y=np.array(ys), space=suite.space.to_yaml())


def _load_tasks(path: Path):
    from tuner.metadataset import MetaDataset
    from tuner.space import Encoder, parse_space

    z = np.load(path, allow_pickle=False)
    space = parse_space(str(z["space"]))
    enc = Encoder(space)
    tasks = [
        (f"t{i}", enc.decode_many(x), y)
        for i, (x, y) in enumerate(zip(z["x"], z["y"], strict=True))
    ]
    return MetaDataset.from_tasks(space, tasks)


def _train(dataset, device: str):
    import torch

    from tuner.prior import meta_train

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.monotonic()
    prior = meta_train(dataset, seed=0, device=device)
    return prior, time.monotonic() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("gpu-check"))
    p.add_argument("--tasks", type=Path)
    p.add_argument("--export-tasks", type=Path, help="write the task file (needs --data)")
    p.add_argument("--data")
    args = p.parse_args(argv)
    if args.export_tasks:
        export_tasks(args.export_tasks, args.data)
        print(f"wrote {args.export_tasks}")
        return 0

    import torch

    from tuner.metadataset import build_metadataset
    from tuner.prior import load_prior, save_prior
    from tuner.space import Encoder, load_space

    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(0)
    datasets = {
        "example studies (13 x 40)": build_metadataset(
            [str(REPO / "studies" / "past" / "*.db")],
            load_space(REPO / "search_spaces" / "mlp.yaml"),
        )
    }
    if args.tasks:
        datasets["YAHPO rbv2_xgboost (100 x 200)"] = _load_tasks(args.tasks)
    rows = []
    probe_rng = np.random.default_rng(1)
    for name, ds in datasets.items():
        entry = {"dataset": name}
        devices = ["cuda", "cuda", "cpu"] if torch.cuda.is_available() else ["cpu"]
        priors = []
        for dev in devices:
            prior, seconds = _train(ds, dev)
            priors.append(prior)
            entry.setdefault("seconds", []).append(
                [dev, round(seconds, 2), prior.info["training"]["steps"]]
            )
            print(name, dev, f"{seconds:.1f}s", prior.info["training"]["steps"], flush=True)
        x = ds.features.encode(
            Encoder(ds.space).decode_many(Encoder(ds.space).sample(64, probe_rng))
        )
        if len(priors) == 3:
            a, b = priors[0].predict_targets(x), priors[1].predict_targets(x)
            entry["cuda_deterministic"] = bool(np.array_equal(a.mean, b.mean))
            entry["cuda_repeat_max_diff"] = float(np.abs(a.mean - b.mean).max())
            path = save_prior(priors[0], args.out / "cuda.prior.safetensors")
            loaded = load_prior(path)  # the CUDA prior, used on the CPU
            entry["file_round_trip_max_diff"] = float(
                np.abs(loaded.predict_targets(x).mean - a.mean).max()
            )
            entry["validation_tau"] = {
                dev: {k: v["kendall_tau"] for k, v in pr.info["validation"].items()}
                for dev, pr in (("cuda", priors[0]), ("cpu", priors[2]))
            }
        rows.append(entry)
    report["runs"] = rows
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    lines = [
        "# GPU check: `mttune meta-train --device cuda`",
        "",
        f"torch {report['torch']}, GPU: {report.get('gpu', 'none')}.",
        "",
        "| data | device | seconds | steps |",
        "|---|---|---:|---:|",
    ]
    for e in rows:
        for dev, sec, steps in e["seconds"]:
            lines.append(f"| {e['dataset']} | {dev} | {sec} | {steps} |")
    for e in rows:
        if "cuda_deterministic" in e:
            lines += [
                "",
                f"{e['dataset']}: same seed twice on CUDA identical: "
                f"{e['cuda_deterministic']} (max diff {e['cuda_repeat_max_diff']:.2e}); "
                f"CUDA-trained file on the CPU vs on the GPU: max diff "
                f"{e['file_round_trip_max_diff']:.2e}; validation tau "
                f"{json.dumps(e['validation_tau'])}.",
            ]
    (args.out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
