"""Benchmark: ``mttune review`` on a 100,000-trial study (goal: seconds).

Builds a SQLite study the way ``mttune run --prior`` leaves one (five parameters of every
kind, the runner's and the sampler's trial attributes, 4% failed and 6% pruned trials)
with raw inserts through Optuna's own schema, then times

* ``mttune review DB --study big --json`` as a fresh process (what a user waits for,
  Python start-up and imports included), and ``--html``;
* the stages in process: reading, the confidence analysis, the whole report, the HTML page.

Usage::

    python benchmarks/review_large.py [--trials 100000] [--keep DB] [--out results.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tuner.review import build_review, read_study, render_html  # noqa: E402
from tuner.review._confidence import analyse  # noqa: E402
from tuner.studies import StudyAttr, TrialAttr  # noqa: E402

STUDY = "big"


def _dist(name: str, **attributes) -> str:
    return json.dumps({"name": name, "attributes": attributes})


DISTS = {
    "lr": _dist("FloatDistribution", step=None, low=1e-5, high=1.0, log=True),
    "dropout": _dist("FloatDistribution", step=0.05, low=0.0, high=0.5, log=False),
    "width": _dist("IntDistribution", log=False, step=1, low=16, high=512),
    "momentum": _dist("FloatDistribution", step=None, low=0.0, high=0.99, log=False),
    "optimizer": _dist("CategoricalDistribution", choices=["adam", "sgd", "rmsprop"]),
}
GUARD = json.dumps({"trust": 0.9, "evidence": 20, "concordance": 0.7, "z": 2.0, "fired": False})
PRIOR = json.dumps({"path": "p.safetensors", "sources": ["a", "b"], "source_trials": 400})
INSERT = {
    "trials": "INSERT INTO trials (trial_id, number, study_id, state, datetime_start, "
    "datetime_complete) VALUES (?, ?, ?, ?, ?, ?)",
    "values": "INSERT INTO trial_values (trial_id, objective, value, value_type) "
    "VALUES (?, ?, ?, ?)",
    "params": "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) "
    "VALUES (?, ?, ?, ?)",
    "attrs": "INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (?, ?, ?)",
}


def build(db: Path, n: int, seed: int = 0) -> float:
    """Create the study with raw inserts; returns the seconds it took."""
    t0 = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    optuna.create_study(study_name=STUDY, storage=f"sqlite:///{db}", direction="minimize")
    rng = np.random.default_rng(seed)
    cols = {
        "lr": np.exp(rng.uniform(math.log(1e-5), 0.0, n)),
        "dropout": rng.integers(0, 11, n) * 0.05,
        "width": rng.integers(16, 513, n).astype(float),
        "momentum": rng.uniform(0, 0.99, n),
        "optimizer": rng.integers(0, 3, n).astype(float),
    }
    value = (
        0.05 * (np.log10(cols["lr"]) + 2.5) ** 2
        + 0.3 * (cols["dropout"] - 0.2) ** 2
        + 0.02 * np.abs(np.log2(cols["width"] / 128))
        + 0.05 * (cols["momentum"] - 0.9) ** 2
        + 0.03 * (cols["optimizer"] == 1)
        + rng.normal(0, 0.02, n)
    )
    pruned = np.where(rng.random(n) < 0.06, "PRUNED", "COMPLETE")
    state = np.where(rng.random(n) < 0.04, "FAIL", pruned)
    source = rng.choice(["prior", "adapted-prior", "fallback"], n, p=[0.01, 0.6, 0.39])
    pred = np.round(value * 10 + rng.normal(0, 0.5, n), 6)
    seeds = rng.integers(0, 2**31 - 1, n)
    start = datetime.datetime(2026, 1, 1)
    rows: dict[str, list[tuple]] = {"trials": [], "values": [], "params": [], "attrs": []}
    for i in range(n):
        tid = i + 1
        t = start + datetime.timedelta(seconds=10 * i)
        end = t + datetime.timedelta(seconds=9)
        rows["trials"].append((tid, i, 1, state[i], t.isoformat(" "), end.isoformat(" ")))
        if state[i] == "COMPLETE":
            rows["values"].append((tid, 0, float(value[i]), "FINITE"))
        rows["params"] += [(tid, k, float(cols[k][i]), DISTS[k]) for k in DISTS]
        metrics = {"val_loss": float(value[i]), "val_accuracy": 0.9}
        rows["attrs"] += [
            (tid, TrialAttr.SEED.key, str(int(seeds[i]))),
            (tid, TrialAttr.DURATION.key, "9.0"),
            (tid, TrialAttr.EXIT_CODE.key, "1" if state[i] == "FAIL" else "0"),
            (tid, TrialAttr.METRICS.key, json.dumps(metrics)),
            (tid, TrialAttr.RUNNER.key, json.dumps({"host": "bench", "pid": 1})),
            (tid, TrialAttr.SOURCE.key, json.dumps(str(source[i]))),
            (tid, TrialAttr.PRED_MEAN.key, json.dumps(float(pred[i]))),
            (tid, TrialAttr.GUARD.key, GUARD),
        ]
        if state[i] == "FAIL":
            reason = f"the script exited with code 1: CUDA error {i % 3}"
            rows["attrs"].append((tid, TrialAttr.FAIL_REASON.key, json.dumps(reason)))
    con = sqlite3.connect(db)
    with con:
        con.execute(
            "INSERT INTO study_user_attributes (study_id, key, value_json) VALUES (1, ?, ?)",
            (StudyAttr.PRIOR.key, PRIOR),
        )
        for table, sql in INSERT.items():
            con.executemany(sql, rows[table])
    con.execute("PRAGMA journal_mode=WAL")  # as mttune run leaves it
    con.close()
    return time.perf_counter() - t0


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def cli(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tuner", "review", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=REPO,
    )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--keep", help="keep the study database at this path")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "review.md"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mttune-bench-"))
    db = Path(args.keep) if args.keep else tmp / "big.db"
    if db.exists():
        db.unlink()
    built = build(db, args.trials)
    size_mb = db.stat().st_size / 1e6
    stamp = (db.stat().st_size, db.stat().st_mtime_ns)
    rows = []
    t_import = cli("--help")
    rows.append(("`mttune --help` (Python start-up and imports only)", t_import))
    rows.append(("`mttune review DB` (list the studies)", cli(str(db))))
    rows.append(
        ("`mttune review DB --study big --json`", cli(str(db), "--study", STUDY, "--json"))
    )
    html = tmp / "big.html"
    rows.append(
        (
            "`mttune review DB --study big --html PAGE` (terminal report and page)",
            cli(str(db), "--study", STUDY, "--html", str(html)),
        )
    )
    data, t_read = timed(read_study, str(db), STUDY)
    _, t_analyse = timed(analyse, data)
    review, t_review = timed(build_review, str(db), STUDY)
    _, t_html = timed(render_html, review)
    assert (db.stat().st_size, db.stat().st_mtime_ns) == stamp, "review wrote to the database"
    rows += [
        ("in process: read the study (sqlite3, read-only)", t_read),
        ("in process: confidence analysis (GP fit, candidates, P(best))", t_analyse),
        ("in process: the whole report (read + every section)", t_review),
        ("in process: render the HTML page", t_html),
    ]
    complete = int((data.states == "COMPLETE").sum())
    lines = [
        "# `mttune review` on a large study",
        "",
        f"Made by `python benchmarks/review_large.py` on {datetime.date.today()}: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores "
        f"(load average {os.getloadavg()[0]:.1f} at the end: other work shared them), "
        f"Python {platform.python_version()}, optuna {optuna.__version__}.",
        "",
        f"Study: {args.trials:,} trials ({complete:,} complete), 5 parameters, 8 user "
        f"attributes per trial, SQLite in WAL mode, {size_mb:.0f} MB "
        f"(built with raw inserts in {built:.1f} s). The database's size and mtime were "
        "unchanged after every review.",
        "",
        "| what | seconds |",
        "|---|---:|",
        *[f"| {what} | {sec:.2f} |" for what, sec in rows],
        "",
        f"HTML page: {html.stat().st_size / 1e6:.1f} MB (plotly.js embedded once).",
        "Of a CLI review, about the first line's time is Python start-up and imports "
        "(`import tuner` imports torch); the rest is the in-process report.",
        f"Recommended: trial #{review.report['recommended']['number']} "
        f"({review.report['recommended']['method']}).",
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    shutil.rmtree(tmp, ignore_errors=True)  # the database too, unless --keep put it elsewhere


if __name__ == "__main__":
    main()
