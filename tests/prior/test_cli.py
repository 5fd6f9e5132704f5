"""``mttune meta-train`` and ``mttune prior show`` on real SQLite studies."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
import torch

from tuner.cli import main
from tuner.prior import MEASURED_STRATEGIES, load_prior
from tuner.space import load_space

SPACE_YAML = """
name: bowl2
objective: {name: loss, direction: minimize}
params:
  a: {type: float, low: 0, high: 1}
  b: {type: float, low: 0, high: 1}
  kind: {type: categorical, choices: [x, y]}
"""


@pytest.fixture
def past(tmp_path):
    space_file = tmp_path / "space.yaml"
    space_file.write_text(SPACE_YAML)
    space = load_space(space_file)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for i in range(5):
        url = f"sqlite:///{tmp_path / f'past-{i}.db'}"
        study = optuna.create_study(
            study_name=f"task-{i}", storage=url, sampler=optuna.samplers.RandomSampler(seed=i)
        )

        def objective(trial, i=i):
            c = space.suggest(trial)
            return (c["a"] - 0.2 - 0.05 * i) ** 2 + (c["b"] - 0.6) ** 2 + 0.1 * (c["kind"] == "y")

        study.optimize(objective, n_trials=25)
    return tmp_path, space_file


def test_meta_train_then_show(past, capsys):
    tmp_path, space_file = past
    out = tmp_path / "p.safetensors"
    code = main(
        [
            "meta-train",
            "--space",
            str(space_file),
            "--from",
            str(tmp_path / "*.db"),
            "-o",
            str(out),
            "--max-steps",
            "60",
            "--quiet",
            "--seed",
            "3",
        ]
    )
    assert code == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "used 5 studies with 125 trials" in captured.err
    assert "wrote" in captured.out
    prior = load_prior(out)
    assert len(prior.info["sources"]["used"]) == 5
    assert prior.info["training"]["seed"] == 3
    assert main(["prior", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "learned from 5 studies / 125 trials" in shown and "kendall tau" in shown
    early = prior.info["early_strategy"]  # measured on the held-out studies, and shown
    assert set(early["mean_regret"]) == set(MEASURED_STRATEGIES)
    assert early["choice"] == min(early["mean_regret"], key=early["mean_regret"].get)
    assert early["studies"] == prior.info["splits"]["held_out"]
    assert f"first trials: {early['choice']}; " in shown
    assert f"model {early['mean_regret']['model']:.3f}" in shown
    assert prior.coverage is not None and prior.coverage.n_studies == 5
    assert main(["prior", "show", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["space"]["hash"] == load_space(space_file).hash
    assert "validation" in data and "versions" in data


def _short_meta_train(past, *flags: str) -> tuple[list[str], Path]:
    """A 20-step ``mttune meta-train`` of the past studies with ``flags``: its args, output."""
    tmp_path, space_file = past
    out = tmp_path / "p.safetensors"
    args = ["meta-train", "--space", str(space_file), "--from", str(tmp_path / "*.db")]
    return [*args, "-o", str(out), "--max-steps", "20", "--quiet", *flags], out


def test_a_prior_without_maml_says_so(past, capsys):
    args, out = _short_meta_train(past, "--inner-steps", "0")
    assert main(args) == 0, capsys.readouterr().err
    assert "no MAML (multi-task regression, 5 adaptation steps)" in capsys.readouterr().out
    assert main(["prior", "show", str(out)]) == 0
    out_text = capsys.readouterr().out
    assert "no MAML" in out_text and "second-order" not in out_text


def test_meta_train_with_meta_sgd_step_sizes(past, capsys):
    args, out = _short_meta_train(past, "--outer-lr", "0.002", "--inner-lr-shape", "element")
    assert main(args) == 0, capsys.readouterr().err
    prior = load_prior(out)
    assert prior.maml.inner_lr_shape == "element" and prior.maml.outer_lr == 0.002
    assert all(prior.log_lrs[k].shape == v.shape for k, v in prior.params.items())
    assert "(Meta-SGD step sizes)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*args[:-1], "row"])
    assert "invalid choice: 'row'" in capsys.readouterr().err


def test_meta_train_stores_the_cavia_context_step_size(past, capsys):
    from tuner.prior._maml import CONTEXT

    args, out = _short_meta_train(past, "--context", "2", "--context-lr", "0.3")
    assert main(args) == 0, capsys.readouterr().err
    prior = load_prior(out)
    assert prior.maml.context == 2 and prior.maml.context_lr == 0.3
    # learned from 0.3, clamped at 10 times it
    assert float(prior.log_lrs[CONTEXT].max()) <= math.log(3.0) + 1e-6


def test_meta_train_named_studies_and_too_little_data(past, capsys):
    tmp_path, space_file = past
    code = main(
        [
            "meta-train",
            "--space",
            str(space_file),
            "--from",
            str(tmp_path / "*.db"),
            "--study",
            "task-0",
            "task-1",
            "-o",
            str(tmp_path / "p.safetensors"),
            "--quiet",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "too little past data: 2 usable studies, need at least 3" in err
    assert not (tmp_path / "p.safetensors").exists()


def test_meta_train_on_four_studies_says_once_that_they_are_too_few_to_cross_fit(past, capsys):
    tmp_path, space_file = past
    argv = ["meta-train", "--space", str(space_file), "--from", str(tmp_path / "*.db")]
    argv += ["--study", "task-0", "task-1", "task-2", "task-3", "--max-steps", "20"]
    assert main([*argv, "-o", str(tmp_path / "p.safetensors"), "--quiet"]) == 0
    captured = capsys.readouterr()
    said = captured.out + captured.err
    assert said.count("so they are optimistic") == 1
    assert "warning: held-out tasks: only 4 tasks" in captured.out
    assert load_prior(tmp_path / "p.safetensors").info["splits"]["degraded"] is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_a_clear_error(past, capsys):
    tmp_path, space_file = past
    code = main(
        [
            "meta-train",
            "--space",
            str(space_file),
            "--from",
            str(tmp_path / "*.db"),
            "-o",
            str(tmp_path / "p.safetensors"),
            "--device",
            "cuda",
            "--quiet",
        ]
    )
    assert code == 1
    assert "sees no CUDA GPU" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--hidden", "0"], "--hidden must be in 1..4096, got 0"),
        (["--ensemble", "99"], "--ensemble must be in 1..64, got 99"),
        (["--max-steps", "0"], "--max-steps must be >= 1, got 0"),
        (["--inner-steps", "99"], "--inner-steps must be in 0..50, got 99"),
        (["--max-support", "64"], "--max-support must be in 1..points-1, got 64"),
        (["--context", "65"], "--context must be in 0..64, got 65"),
        (["--outer-lr", "0"], "--outer-lr must be > 0, got 0.0"),
        (["--weight-decay", "-1"], "--weight-decay must be >= 0, got -1.0"),
        (["--context-lr", "0"], "--context-lr must be > 0, got 0.0"),
    ],
)
def test_bad_settings_are_refused_before_the_studies_are_read(tmp_path, capsys, flags, needle):
    space_file = tmp_path / "space.yaml"
    space_file.write_text(SPACE_YAML)
    out = tmp_path / "p.safetensors"
    missing = str(tmp_path / "none-yet.db")  # would be its own error, were it read first
    code = main(
        ["meta-train", "--space", str(space_file), "--from", missing, "-o", str(out), *flags]
    )
    assert code == 1
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_show_of_a_bad_file_is_an_error(tmp_path, capsys):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\x00" * 100)
    assert main(["prior", "show", str(bad)]) == 1
    assert "not a readable safetensors prior" in capsys.readouterr().err


def test_meta_train_without_a_space_on_define_by_run_studies(past, capsys):
    """Plain Optuna studies record no space: it is inferred from their trials."""
    tmp_path, space_file = past
    out = tmp_path / "p.safetensors"
    argv = ["meta-train", "--from", str(tmp_path / "past-*.db"), "-o", str(out)]
    assert main([*argv, "--max-steps", "40", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "search space: inferred from 5 studies" in err and "parameter kind: in 5" in err
    prior = load_prior(out)
    assert prior.space.names == ["a", "b", "kind"]
    assert prior.space.distributions == load_space(space_file).distributions


def test_space_infer_writes_yaml_that_loads(past, capsys):
    tmp_path, space_file = past
    out = tmp_path / "inferred.yaml"
    assert main(["space", "infer", str(tmp_path / "past-*.db"), "-o", str(out)]) == 0
    assert load_space(out).distributions == load_space(space_file).distributions
    assert main(["space", "infer", str(tmp_path / "past-0.db")]) == 0
    assert "kind:" in capsys.readouterr().out  # no -o: printed
    for bad in ("", str(tmp_path)):
        assert main(["space", "infer", str(tmp_path / "past-0.db"), "-o", bad]) == 1
    assert "not a regular file" in capsys.readouterr().err
