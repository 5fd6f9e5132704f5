"""The built-in priors: shipped files, names and aliases, wrong names, CLI, the rebuild."""

from __future__ import annotations

import json
import struct

import optuna
import pytest

from tuner.cli import main
from tuner.prior import BUILTIN_DIR, MEASURED_STRATEGIES, PriorFileError, builtin_names, load_prior
from tuner.sampler import MetaPriorSampler
from tuner.space import load_space
from tuner.studies import StudyAttr, TrialAttr

BUILTINS = ("decision-tree", "mlp", "xgboost")
# The names users write, by built-in: every one must reach a feature.
NAMES = {
    "xgboost": {
        "learning_rate": "learning_rate",
        "eta": "learning_rate",
        "n_estimators": "n_estimators",
        "num_boost_round": "n_estimators",
        "nrounds": "n_estimators",
        "max_depth": "max_depth",
        "min_child_weight": "min_child_weight",
        "subsample": "subsample",
        "colsample_bytree": "colsample_bytree",
        "colsample_bylevel": "colsample_bylevel",
        "reg_lambda": "reg_lambda",
        "lambda": "reg_lambda",
        "reg_alpha": "reg_alpha",
        "alpha": "reg_alpha",
        "gamma": "gamma",
    },
    "mlp": {
        "lr": "lr",
        "learning_rate": "lr",
        "batch_size": "batch_size",
        "weight_decay": "weight_decay",
        "momentum": "momentum",
        "num_layers": "num_layers",
        "n_layers": "num_layers",
        "hidden": "hidden_size",
        "hidden_size": "hidden_size",
        "width": "hidden_size",
        "dropout": "dropout",
    },
    "decision-tree": {
        "max_depth": "max_depth",
        "maxdepth": "max_depth",
        "min_samples_leaf": "min_samples_leaf",
        "min_samples_split": "min_samples_split",
        "ccp_alpha": "ccp_alpha",
        "cp": "ccp_alpha",
    },
}


def _header(path) -> dict:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(json.loads(f.read(n))["__metadata__"]["mttune"])


def test_the_builtins_are_shipped():
    assert builtin_names() == list(BUILTINS)


@pytest.mark.parametrize("name", BUILTINS)
def test_shipped_file_loads_small_with_provenance_and_its_space_hash(name):
    path = BUILTIN_DIR / f"{name}.safetensors"
    assert path.stat().st_size < 1024 * 1024
    prior = load_prior(name)
    meta = _header(path)
    assert meta["space_hash"] == prior.space.hash  # what CI checks of every shipped file
    about = prior.info["builtin"]
    assert about["name"] == name and about["license"] == "Apache-2.0"
    assert "YAHPO" in about["attribution"] and about["scenario"] in about["source"]
    assert about["tasks"] >= 30 and about["trials"] >= about["tasks"] * 100
    assert len(prior.info["sources"]["used"]) == about["tasks"]
    assert {"0-shot", "10-shot"} <= set(prior.info["validation"])
    assert prior.info["validation"]["10-shot"]["kendall_tau"] > 0.2  # it learned something
    assert "seconds" not in prior.info["training"]  # nothing that varies between builds
    early = prior.info["early_strategy"]  # measured as meta-train does, the model kept
    assert early["measured_choice"] in MEASURED_STRATEGIES and "seconds" not in early
    assert early["choice"] == "model" and MetaPriorSampler(prior).early_strategy == "model"
    assert set(early["mean_regret"]) == set(MEASURED_STRATEGIES) and len(early["studies"]) >= 5
    assert prior.coverage is not None  # what the hedge and the measurement need
    assert all(f.help for f in prior.features)


@pytest.mark.parametrize("name", BUILTINS)
def test_user_facing_names_and_aliases_reach_the_features(name):
    features = load_prior(name).features
    for written, canonical in NAMES[name].items():
        feature = features.lookup(written)
        assert feature is not None, written
        assert feature.name == canonical


def test_an_existing_file_is_read_by_path(tmp_path):
    copy = tmp_path / "mine.safetensors"
    copy.write_bytes((BUILTIN_DIR / "mlp.safetensors").read_bytes())
    assert load_prior(copy).info["builtin"]["name"] == "mlp"


@pytest.mark.parametrize("wrong", ["xgbost", "studies/none.safetensors", "XGBoost"])
def test_a_name_that_is_neither_builtin_nor_file_lists_the_builtins(wrong):
    with pytest.raises(PriorFileError) as e:
        load_prior(wrong)
    message = str(e.value)
    assert wrong in message and "not a built-in prior" in message
    assert "decision-tree, mlp, xgboost" in message


def test_sampler_takes_a_builtin_name_and_maps_alias_names():
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sampler = MetaPriorSampler("xgboost", seed=0)
    study = optuna.create_study(sampler=sampler)

    def objective(trial):
        eta = trial.suggest_float("eta", 1e-3, 0.5, log=True)
        rounds = trial.suggest_int("nrounds", 10, 500, log=True)
        depth = trial.suggest_int("max_depth", 2, 10)
        return (eta - 0.05) ** 2 + (rounds - 200) ** 2 / 1e5 + (depth - 5) ** 2 / 100

    study.optimize(objective, n_trials=3)
    coverage = StudyAttr.COVERAGE.get(study.user_attrs)
    assert coverage is not None
    sources = TrialAttr.PARAM_SOURCES.get(study.trials[0].user_attrs)
    assert sources is not None and set(sources) == {"eta", "nrounds", "max_depth"}
    assert "fallback" not in set(sources.values())  # the prior knows all three by alias


def test_cli_prior_list_one_line_per_builtin(capsys):
    assert main(["prior", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(BUILTINS)
    assert "n_estimators" in lines[2] and "OpenML" in lines[2]


def test_cli_prior_show_a_builtin(capsys):
    assert main(["prior", "show", "xgboost"]) == 0
    out = capsys.readouterr().out
    assert "built-in prior xgboost" in out and "YAHPO" in out
    assert "learning_rate (aliases eta)" in out


def test_cli_space_from_prior_writes_the_shipped_example_space(tmp_path, capsys):
    out = tmp_path / "space.yaml"
    assert main(["space", "from-prior", "xgboost", "-o", str(out)]) == 0
    space = load_space(out)
    shipped = load_space(BUILTIN_DIR.parents[2] / "search_spaces" / "xgboost.yaml")
    assert space.hash == shipped.hash
    assert "eta" in out.read_text()  # the aliases are listed in the header


def test_cli_wrong_prior_name_is_an_error_not_a_traceback(tmp_path, capsys):
    assert main(["prior", "show", "nope"]) == 1
    assert "built-ins: decision-tree, mlp, xgboost" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.yahpo
def test_rebuild_is_bit_for_bit(yahpo_dir, tmp_path):
    """The build, twice, gives identical files (a short run: the full one is ``--check``)."""
    from benchmarks.build_builtin_priors import FAMILIES, build

    a = build(FAMILIES["decision-tree"], yahpo_dir, tmp_path / "a", max_steps=10)
    b = build(FAMILIES["decision-tree"], yahpo_dir, tmp_path / "b", max_steps=10)
    assert a.read_bytes() == b.read_bytes()
    prior = load_prior(a)
    assert prior.features == load_prior("decision-tree").features
    assert prior.space.hash == load_prior("decision-tree").space.hash


REPO = BUILTIN_DIR.parents[2]


@pytest.mark.slow
def test_the_one_liner_runs_the_xgboost_example_with_the_builtin_prior(tmp_path, monkeypatch):
    pytest.importorskip("xgboost")
    monkeypatch.setenv("XGB_DATASET", "wine")
    db = tmp_path / "x.db"
    argv = ["run", str(REPO / "examples" / "xgboost_sklearn.py")]
    argv += ["--space", str(REPO / "search_spaces" / "xgboost.yaml"), "--prior", "xgboost"]
    assert main([*argv, "--n-trials", "2", "--storage", f"sqlite:///{db}", "--seed", "0"]) == 0
    study = optuna.load_study(study_name="xgboost", storage=f"sqlite:///{db}")
    trials = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(trials) == 2 and all(0 < t.value < 2 for t in trials)
    sources = TrialAttr.PARAM_SOURCES.get(trials[0].user_attrs)
    assert set(sources.values()) == {"prior"}  # every parameter came from the prior


def test_the_xgboost_example_speaks_the_command_form(tmp_path):
    pytest.importorskip("xgboost")
    import os
    import subprocess
    import sys

    env = {**os.environ, "XGB_DATASET": "iris", "MTTUNE_SEED": "1"}
    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "xgboost_sklearn.py"), "--n_estimators", "20"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.splitlines()
    steps = [json.loads(line) for line in out[:-1]]
    final = json.loads(out[-1])
    assert [s["step"] for s in steps] == [9, 19]
    assert 0 < final["val_logloss"] < 1 and final["val_accuracy"] > 0.8
