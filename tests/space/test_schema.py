from __future__ import annotations

import textwrap

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from tests.conftest import SPACES
from tuner.space import SearchSpace, SpaceError, load_space, parse_space

GOOD = """
name: demo
objective: {name: val_loss, direction: minimize}
params:
  lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
  layers: {type: int, low: 1, high: 4}
  width: {type: int, low: 16, high: 512, log: true}
  drop: {type: float, low: 0.0, high: 0.5, step: 0.1}
  opt: {type: categorical, choices: [adam, sgd]}
  momentum: {type: float, low: 0.0, high: 0.99, condition: {param: opt, equals: sgd}}
"""


def test_parses_all_kinds_into_optuna_distributions():
    space = parse_space(GOOD)
    d = space.distributions
    assert d["lr"] == FloatDistribution(1e-4, 0.1, log=True)
    assert d["layers"] == IntDistribution(1, 4)
    assert d["width"] == IntDistribution(16, 512, log=True)
    assert d["drop"] == FloatDistribution(0.0, 0.5, step=0.1)
    assert d["opt"] == CategoricalDistribution(["adam", "sgd"])
    assert space.params["momentum"].condition.values == ("sgd",)
    assert space.objective.name == "val_loss" and space.objective.direction == "minimize"
    assert space.names == ["lr", "layers", "width", "drop", "opt", "momentum"]


@pytest.mark.parametrize("name", ["mlp", "rbv2_xgboost", "lcbench"])
def test_shipped_spaces_load_and_round_trip(name):
    space = load_space(SPACES / f"{name}.yaml")
    again = parse_space(space.to_yaml())
    assert again == space
    assert again.hash == space.hash


def test_hash_is_stable_and_content_based():
    a = parse_space(GOOD)
    b = parse_space(GOOD.replace("name: demo", "name: other"))
    c = parse_space(GOOD.replace("high: 0.1,", "high: 0.2,"))
    # key order inside a parameter does not matter, values do
    d = parse_space(GOOD.replace("{type: int, low: 1, high: 4}", "{high: 4, low: 1, type: int}"))
    assert a.hash == b.hash == d.hash
    assert a.hash != c.hash
    assert len(a.hash) == 16


def test_help_texts_do_not_change_the_hash():
    a = parse_space(GOOD)
    int_param = "{type: int, low: 1, high: 4}"
    helped = parse_space(GOOD.replace(int_param, int_param[:-1] + ", help: units}"))
    assert helped.hash == a.hash and helped.diff(a) == []
    # files of mttune 0.1 recorded a hash that covered the help texts; without any help
    # text, the hash is what it was
    assert helped.legacy_hash != a.legacy_hash and a.legacy_hash == a.hash


def test_diff_names_the_differing_params():
    a = parse_space(GOOD)
    c = parse_space(GOOD.replace("high: 0.1,", "high: 0.2,"))
    diff = a.diff(c)
    assert len(diff) == 1 and diff[0].startswith("'lr'")
    assert a.diff(a) == []


def _space(params: str, objective: str = "{name: loss}") -> str:
    return f"objective: {objective}\nparams:\n" + textwrap.indent(textwrap.dedent(params), "  ")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (_space("x: {type: double, low: 0, high: 1}"), "unknown type 'double'"),
        (_space("x: {type: float, low: 2, high: 1}"), "low (2) must be <= high (1)"),
        (_space("x: {type: float, low: 0, high: 1, log: true}"), "log scale needs low > 0"),
        (_space("x: {type: int, low: -3, high: 5, log: true}"), "log scale needs low > 0"),
        (_space("x: {type: categorical, choices: []}"), "non-empty list"),
        (_space("x: {type: categorical, choices: [a, a]}"), "duplicates"),
        (_space("x: {type: categorical, choices: [1, true]}"), "are equal in Python"),
        (
            _space("x: {type: float, low: 0, high: 1}\nx: {type: int, low: 0, high: 3}"),
            "duplicate key 'x'",
        ),
        ("params: {x: {type: float, low: 0, high: [1}", "invalid YAML"),
        (_space("x: {type: float, low: 0}"), "needs 'high'"),
        (_space("x: {type: float, low: a, high: 1}"), "'low' must be a number"),
        (_space("x: {type: float, low: 0, high: 1, step: 0}"), "'step' must be > 0"),
        (
            _space("x: {type: float, low: 1, high: 9, step: 1, log: true}"),
            "'step' cannot be combined",
        ),
        (_space("x: {type: int, low: 0, high: 5, step: 2}"), "multiple of step"),
        (_space("x: {type: int, low: 0.5, high: 5}"), "must be whole"),
        (_space("x: {type: float, low: 0, high: 1, colour: red}"), "unknown key(s) ['colour']"),
        (
            _space("x: {type: float, low: 0, high: 1, condition: {param: y, in: [a]}}"),
            "not a parameter defined above",
        ),
        (
            _space(
                "y: {type: float, low: 0, high: 1}\n"
                "x: {type: float, low: 0, high: 1, condition: {param: y, in: [a]}}"
            ),
            "must be categorical",
        ),
        (
            _space(
                "y: {type: categorical, choices: [a]}\n"
                "x: {type: float, low: 0, high: 1, condition: {param: y, in: [b]}}"
            ),
            "not choices of 'y'",
        ),
        (
            _space("x: {type: float, low: 0, high: 1}", "{name: loss, direction: up}"),
            "direction must be 'minimize' or 'maximize'",
        ),
        ("objective: {name: loss}\nparams: {}", "'params' must be a non-empty mapping"),
        ("- 1\n- 2", "must be a mapping"),
        (_space("x: {type: float, low: .nan, high: 1}"), "must be finite"),
    ],
)
def test_bad_files_name_file_param_and_rule(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as e:
        load_space(path)
    message = str(e.value)
    assert needle in message
    assert str(path) in message
    if "x:" in text and "YAML" not in needle and "params" not in needle:
        assert "'x'" in message or "'y'" in message or "objective" in message


def test_missing_file_says_so(tmp_path):
    with pytest.raises(SpaceError, match="not found"):
        load_space(tmp_path / "nope.yaml")


def test_contains_and_active_params():
    space = parse_space(GOOD)
    cfg = {"lr": 0.01, "layers": 2, "width": 64, "drop": 0.2, "opt": "adam"}
    assert space.contains(cfg) is None
    assert "momentum" not in space.active_params(cfg)
    assert "missing" in space.contains({**cfg, "opt": "sgd"})
    assert space.contains({**cfg, "opt": "sgd", "momentum": 0.9}) is None
    assert "outside" in space.contains({**cfg, "lr": 1.0})
    assert "not in the space" in space.contains({**cfg, "zzz": 1})


def test_from_distributions_round_trip():
    dists = {"a": FloatDistribution(0, 1), "b": CategoricalDistribution([1, 2])}
    space = SearchSpace.from_distributions(dists)
    assert space.distributions == dists


def test_suggest_follows_conditions():
    import optuna

    space = parse_space(GOOD)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_momentum = {True: 0, False: 0}
    for _ in range(20):
        trial = study.ask()
        cfg = space.suggest(trial)
        assert space.contains(cfg) is None
        seen_momentum[cfg["opt"] == "sgd"] += "momentum" in cfg
        study.tell(trial, 0.0)
    assert seen_momentum[False] == 0 and seen_momentum[True] > 0


def test_exponent_notation_that_yaml_reads_as_text_is_a_number():
    """PyYAML (YAML 1.1) reads 1e-5 as a string; everyone writing a space means 0.00001."""
    text = "objective: {{name: y}}\nparams:\n  lr: {{type: float, low: {}, high: 0.1}}\n"
    assert parse_space(text.format("1e-5")).hash == parse_space(text.format("0.00001")).hash
    with pytest.raises(SpaceError, match=r"'low' must be a number, got 'abc'\. Write it unquoted"):
        parse_space(text.format("abc"))
