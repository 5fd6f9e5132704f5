"""Ray backend benchmark: parallel speed-up and per-trial overhead.

    python -m benchmarks.ray_speedup [--trials 12] [--sleep 2] [--out benchmarks/results/ray.md]

1. Speed-up of ``--workers 2`` over 1 worker on trials that sleep (``tests/scripts/sleepy.py``),
   both on one local Ray (its start-up is timed apart). Goal: >= 1.8x. Two measures: the
   wall-clock of the whole run (which includes starting the trial actors once per run) and
   the span of the trials themselves (first script start to last script end).
2. Per-trial overhead of the Ray backend against the Optuna backend, one trial at a time, on
   a trivial script (``tests/scripts/quad.py``, three reports). Each backend runs a short and
   a long study; the marginal cost of one more trial is (wall_long - wall_short) / extra
   trials, and its overhead is that minus the script's own run time (``duration_s``). What
   is left of the short run is the fixed cost of starting a run.

Results go to a markdown table (``--out``) and stdout. Timings depend on the machine and on
what else runs on it: the table records its CPU count and load.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import optuna

from tuner.runners import (
    RayOptions,
    RunOptions,
    ScriptSpec,
    create_or_resume_study,
    make_pruner,
    make_sampler,
    ray_cluster,
    run_ray,
    run_study,
)
from tuner.space import load_space
from tuner.studies import TrialAttr

REPO = Path(__file__).resolve().parents[1]
SPACE = load_space(REPO / "tests" / "spaces" / "quad.yaml")
SLEEPY = ScriptSpec.detect(REPO / "tests" / "scripts" / "sleepy.py")
TRIVIAL = ScriptSpec.detect(REPO / "tests" / "scripts" / "quad.py")


def _study(folder: Path, name: str) -> optuna.Study:
    url = f"sqlite:///{folder / name}.db"
    return create_or_resume_study(url, name, SPACE, make_sampler("random", 0), make_pruner("none"))


def _run(backend: str, study: optuna.Study, script: ScriptSpec, n: int, workers: int) -> float:
    """Wall-clock seconds of one run of ``n`` trials."""
    options = RunOptions(n_trials=n, seed=0)
    t0 = time.perf_counter()
    if backend == "optuna":
        run_study(study, script, SPACE, options)
    else:
        run_ray(study, script, SPACE, options, RayOptions(workers=workers, scheduler="none"))
    return time.perf_counter() - t0


def speedup(folder: Path, n_trials: int) -> dict[int, dict[str, float]]:
    """Wall-clock and trial span of ``n_trials`` sleeping trials with 1 and 2 workers."""
    out: dict[int, dict[str, float]] = {}
    for workers in (1, 2):
        study = _study(folder, f"sleepy-{workers}")
        wall = _run("ray", study, SLEEPY, n_trials, workers)
        metrics = [t.user_attrs[TrialAttr.METRICS.key] for t in study.get_trials()]
        span = max(m["t_end"] for m in metrics) - min(m["t_start"] for m in metrics)
        out[workers] = {"wall": wall, "span": span}
        print(f"  sleepy, {workers} worker(s): wall {wall:.1f} s, trial span {span:.1f} s")
    return out


def overhead(folder: Path, short: int, long: int, repeat: int) -> dict[str, dict[str, float]]:
    """Fixed and per-trial cost of each backend, one trial at a time, on a trivial script.

    Each measure is the median of ``repeat`` rounds (the backends alternate within a round).
    """
    rounds: dict[str, list[dict[str, float]]] = {"optuna": [], "ray": []}
    for r in range(repeat):
        for backend in rounds:
            walls, durations = {}, []
            for n in (short, long):
                study = _study(folder, f"trivial-{backend}-{n}-{r}")
                walls[n] = _run(backend, study, TRIVIAL, n, 1)
                durations += [t.user_attrs[TrialAttr.DURATION.key] for t in study.get_trials()]
            per_trial = (walls[long] - walls[short]) / (long - short)
            script = statistics.mean(durations)
            rounds[backend].append(
                {
                    "per_trial": per_trial,
                    "script": script,
                    "overhead": per_trial - script,
                    "fixed": walls[short] - short * per_trial,
                }
            )
            print(
                f"  trivial, {backend}, round {r + 1}: {per_trial * 1000:.0f} ms per trial "
                f"(script {script * 1000:.0f} ms), fixed {rounds[backend][-1]['fixed']:.1f} s"
            )
    return {
        backend: {key: statistics.median(m[key] for m in ms) for key in ms[0]}
        for backend, ms in rounds.items()
    }


def report(
    ray_start: float,
    n_sleepy: int,
    sleep: float,
    speed: dict[int, dict[str, float]],
    cost: dict[str, dict[str, float]],
    short: int,
    long: int,
) -> str:
    """The markdown report."""
    wall_x = speed[1]["wall"] / speed[2]["wall"]
    span_x = speed[1]["span"] / speed[2]["span"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    ray, opt = cost["ray"], cost["optuna"]
    lines = [
        "# Ray backend: speed-up and overhead",
        "",
        f"Measured by `python -m benchmarks.ray_speedup` on {platform.system()} with "
        f"{os.cpu_count()} CPUs (load average {load:.1f} at the end), Python "
        f"{platform.python_version()}, local Ray. Starting the local Ray took {ray_start:.1f} s "
        "(not counted below).",
        "",
        f"## Speed-up: {n_sleepy} trials that sleep {sleep:g} s (goal >= 1.8x)",
        "",
        "| | 1 worker | 2 workers | speed-up |",
        "|---|---:|---:|---:|",
        f"| wall-clock of the run | {speed[1]['wall']:.1f} s | {speed[2]['wall']:.1f} s "
        f"| {wall_x:.2f}x |",
        f"| span of the trials (first script start to last script end) "
        f"| {speed[1]['span']:.1f} s | {speed[2]['span']:.1f} s | {span_x:.2f}x |",
        "",
        "The wall-clock includes starting the trial actors (once per run and worker: the "
        "worker imports mttune); the span is the trials alone.",
        "",
        f"## Overhead: trivial script, one trial at a time ({short} and {long} trials, "
        "medians of the rounds)",
        "",
        "| backend | per trial | script itself | overhead per trial | fixed cost per run |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, c in (("optuna", opt), ("ray", ray)):
        lines.append(
            f"| {name} | {c['per_trial'] * 1000:.0f} ms | {c['script'] * 1000:.0f} ms "
            f"| {c['overhead'] * 1000:.0f} ms | {c['fixed']:.1f} s |"
        )
    lines += [
        "",
        "Against the Optuna backend, a trial on Ray costs "
        f"{(ray['per_trial'] - opt['per_trial']) * 1000:+.0f} ms and a run "
        f"{ray['fixed'] - opt['fixed']:+.1f} s (starting the trial actor: its worker imports "
        "mttune), plus starting Ray when the run starts it. Per-trial numbers are differences "
        "of two runs and move by tens of ms with the machine's load.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="sleeping trials per run")
    parser.add_argument("--sleep", type=float, default=2.0, help="seconds each trial sleeps")
    parser.add_argument("--short", type=int, default=4, help="trials of the short study")
    parser.add_argument("--long", type=int, default=24, help="trials of the long study")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the overhead measure")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ray.md"))
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    os.environ["SLEEP_S"] = str(args.sleep)  # scripts run in the environment Ray starts with
    with tempfile.TemporaryDirectory(prefix="mttune-bench-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        with ray_cluster(RayOptions(workers=2)):
            ray_start = time.perf_counter() - t0
            print(f"local Ray started in {ray_start:.1f} s")
            speed = speedup(folder, args.trials)
            cost = overhead(folder, args.short, args.long, args.repeat)
    text = report(ray_start, args.trials, args.sleep, speed, cost, args.short, args.long)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
