"""``ask()`` latency of MetaPriorSampler next to TPESampler, at 10, 100 and 1000 trials.

    python -m benchmarks.ask_latency [--prior studies/mlp.prior.safetensors]

For each study size, a study is filled with that many finished trials (random configs of the
prior's space with a smooth synthetic objective), then ``--repeats`` trials are asked (with the
objective's ``suggest`` calls, where samplers do their work) and told; the medians are
reported. Both samplers run in the same process, one after the other, on the same studies.
Writes ``benchmarks/results/ask_latency.md``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import optuna

REPO = Path(__file__).resolve().parents[1]


def _objective_values(x: np.ndarray) -> np.ndarray:
    return np.sin(3 * x).sum(axis=1) + (x - 0.3).__pow__(2).sum(axis=1)


def _filled_study(space, n: int, sampler, seed: int) -> optuna.Study:
    from tuner.space import Encoder

    enc = Encoder(space)
    x = enc.sample(n, np.random.default_rng(seed))
    values = _objective_values(x)
    study = optuna.create_study(direction=space.objective.direction, sampler=sampler)
    dists = space.distributions
    study.add_trials(
        [
            optuna.trial.create_trial(
                params=c, distributions={k: dists[k] for k in c}, value=float(v)
            )
            for c, v in zip(enc.decode_many(x), values, strict=True)
        ]
    )
    return study


def measure(space, make_sampler, n: int, repeats: int, seed: int) -> tuple[float, float]:
    """Median seconds of ask (+ suggest) and of tell after ``n`` finished trials."""
    from tuner.space import Encoder

    enc = Encoder(space)
    study = _filled_study(space, n, make_sampler(), seed)
    asks, tells = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trial = study.ask()
        cfg = space.suggest(trial)
        t1 = time.perf_counter()
        study.tell(trial, float(_objective_values(enc.encode(cfg)[None])[0]))
        t2 = time.perf_counter()
        asks.append(t1 - t0)
        tells.append(t2 - t1)
    return float(np.median(asks)), float(np.median(tells))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prior", type=Path, default=REPO / "studies" / "mlp.prior.safetensors")
    p.add_argument("--sizes", default="10,100,1000")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ask_latency.md")
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    from tuner.prior import load_prior
    from tuner.sampler import MetaPriorSampler

    prior = load_prior(args.prior)
    space = prior.space
    samplers = {
        "MetaPriorSampler": lambda: MetaPriorSampler(prior, seed=0),
        "TPESampler": lambda: optuna.samplers.TPESampler(seed=0),
    }
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        for name, make in samplers.items():
            ask, tell = measure(space, make, n, args.repeats, seed=n)
            rows.append((n, name, ask, tell))
            print(
                f"{n:5d} {name:17s} ask {ask * 1000:7.1f} ms  tell {tell * 1000:6.1f} ms",
                flush=True,
            )
    lines = [
        "# `ask()` latency",
        "",
        f"Prior `{args.prior.name}`"
        f" ({len(space)} params, {prior.features.dim} encoded dims, ensemble of "
        f"{prior.model.ensemble}); Python {platform.python_version()}, optuna "
        f"{optuna.__version__}; median of {args.repeats} asks per cell. `ask` includes the "
        "objective's `suggest` calls (where samplers do their work); `tell` includes "
        "`after_trial` (MetaPriorSampler records its guard evidence there).",
        "",
        "| finished trials | sampler | ask (ms) | tell (ms) |",
        "|---:|---|---:|---:|",
    ]
    for n, name, ask, tell in rows:
        lines.append(f"| {n} | {name} | {ask * 1000:.1f} | {tell * 1000:.1f} |")
    at100 = {name: ask for n, name, ask, _ in rows if n == 100}
    if len(at100) == 2:
        ok = at100["MetaPriorSampler"] <= at100["TPESampler"]
        lines += [
            "",
            f"Goal: no slower than TPE at 100 trials: "
            f"{'met' if ok else 'missed'} ({at100['MetaPriorSampler'] * 1000:.1f} ms vs "
            f"{at100['TPESampler'] * 1000:.1f} ms).",
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
