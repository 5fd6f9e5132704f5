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


@pytest.fixture(scope="module")
def tiny_prior():
    from tuner.metadataset import MetaDataset
    from tuner.prior import MAMLConfig, ModelConfig, meta_train
    from tuner.space import SearchSpace

    space = SearchSpace.from_dict(
        {
            "name": "line",
            "objective": {"name": "value", "direction": "minimize"},
            "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        }
    )
    tasks = [
        (f"t{i}", [{"x": k / 9} for k in range(10)], [(k / 9 - 0.1 * i) ** 2 for k in range(10)])
        for i in range(6)
    ]
    return meta_train(
        MetaDataset.from_tasks(space, tasks),
        model=ModelConfig(hidden=8, ensemble=2),
        maml=MAMLConfig(max_steps=10, val_every=5),
        seed=0,
    )


def _fold(fold, prior, choices: tuple[str, str], curves: dict[str, list[float]]) -> None:
    from tuner.prior import save_prior

    fold.mkdir(parents=True, exist_ok=True)
    for name, choice in zip(("prior", "prior-nomaml"), choices, strict=True):
        prior.info["early_strategy"] = {"choice": choice}
        save_prior(prior, fold / f"{name}.safetensors")
    rows = [{"method": m, "task": "t", "seed": 0, "values": v} for m, v in curves.items()]
    (fold / "runs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_measured_takes_in_each_fold_the_strategy_its_priors_measured(tmp_path, tiny_prior):
    raw = tmp_path / "s0" / "raw"
    raw.mkdir(parents=True)
    (raw / "reference.json").write_text(json.dumps({"t": {"best": 0.0, "median": 1.0}}))
    runs = {
        "mttune-model": [0.9, 0.9, 0.9],
        "mttune-hedge-3": [0.2, 0.2, 0.2],
        "mttune-nomaml-model": [0.8, 0.8, 0.8],
        "mttune-nomaml-hedge": [0.4, 0.4, 0.4],
    }
    _fold(raw / "fold-a", tiny_prior, ("hedge-3", "hedge"), runs)
    _fold(raw / "fold-b", tiny_prior, ("model", "model"), runs)
    lines = table([tmp_path / "s0"], "minimize", pair="measured")
    # pooled over the folds: MAML (0.2 + 0.9) / 2, no MAML (0.4 + 0.8) / 2
    assert "| MAML, its measured first trials | s0 | 0.550 | 0.550 |" in lines
    assert "| no MAML, its measured first trials | s0 | 0.600 | 0.600 |" in lines


def test_measured_without_the_chosen_strategys_runs_names_it(tmp_path, tiny_prior):
    raw = tmp_path / "s0" / "raw"
    raw.mkdir(parents=True)
    (raw / "reference.json").write_text(json.dumps({"t": {"best": 0.0, "median": 1.0}}))
    _fold(
        raw,
        tiny_prior,
        ("hedge-1", "model"),
        {"mttune-model": [0.5], "mttune-nomaml-model": [0.5]},
    )
    with pytest.raises(SystemExit, match=r"no runs of mttune-hedge-1: .*mttune-nomaml-hedge"):
        table([tmp_path / "s0"], "minimize", pair="measured")
