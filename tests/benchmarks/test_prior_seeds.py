"""The MAML ablation over meta-training seeds: per-seed rows, their spread, the pooled target."""

from __future__ import annotations

import json

import pytest

from benchmarks.prior_seeds import table


def _folder(tmp_path, name: str, curves: dict[str, list[float]]):
    raw = tmp_path / name / "raw"
    raw.mkdir(parents=True)
    (raw / "reference.json").write_text(json.dumps({"t": {"best": 0.0, "median": 1.0}}))
    rows = [{"method": m, "task": "t", "seed": 0, "values": v} for m, v in curves.items()]
    (raw / "runs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return raw.parent


def test_rows_per_seed_their_spread_and_the_pooled_target(tmp_path):
    one = _folder(tmp_path, "s0", {"mttune": [0.4, 0.2, 0.1], "mttune-nomaml": [0.4, 0.4, 0.4]})
    two = _folder(tmp_path, "s1", {"mttune": [0.8, 0.4, 0.3], "mttune-nomaml": [0.4, 0.4, 0.2]})
    lines = table([one, two], "minimize")
    assert lines[0] == "| prior | run (folder) | @1 | @3 |"
    assert "| MAML (default) | s1 | 0.800 | 0.300 |" in lines
    # per-seed means 0.4 and 0.8 at trial 1: mean 0.6, sd 0.283 (ddof 1)
    assert "| MAML (default) | mean ± sd | 0.600 ± 0.283 | 0.200 ± 0.141 |" in lines
    # pooled at 3: 0.2 vs 0.3 (33 % lower, met); at 1: 0.6 vs 0.4 (higher, missed)
    assert lines[-1] == "| target: MAML vs no MAML | pooled | missed (-50 %) | met (+33 %) |"


def test_a_folder_without_the_pairs_runs_says_what_to_run(tmp_path):
    shipped = _folder(tmp_path, "s0", {"mttune": [0.4], "mttune-nomaml": [0.4]})
    with pytest.raises(SystemExit, match="--methods mttune-model,mttune-nomaml-model"):
        table([shipped], "minimize", pair="model")
