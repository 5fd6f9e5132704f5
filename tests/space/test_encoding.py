from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SPACES
from tuner.space import Encoder, SearchSpace, load_space


@st.composite
def spaces(draw) -> SearchSpace:
    params = {}
    n = draw(st.integers(1, 5))
    cat_names = []
    for i in range(n):
        kind = draw(st.sampled_from(["float", "flog", "fstep", "int", "ilog", "istep", "cat"]))
        name = f"p{i}"
        if kind == "float":
            lo = draw(st.floats(-1e3, 1e3))
            hi = lo + draw(st.floats(0, 1e3))
            spec = {"type": "float", "low": lo, "high": hi}
        elif kind == "flog":
            lo = draw(st.floats(1e-8, 1e3))
            spec = {"type": "float", "low": lo, "high": lo * draw(st.floats(1, 1e6)), "log": True}
        elif kind == "fstep":
            step = draw(st.sampled_from([0.1, 0.25, 0.5, 2.0, 1000.0]))
            # a low off the step's grid: its decimals must survive decoding
            offset = draw(st.sampled_from([0.0, 1e-4, 1.2345678e-4, 0.3]))
            lo = round(draw(st.integers(-20, 20)) * step + offset, 12)
            hi = round(lo + draw(st.integers(0, 40)) * step, 12)
            spec = {"type": "float", "low": lo, "high": hi, "step": step}
        elif kind == "int":
            lo = draw(st.integers(-100, 100))
            spec = {"type": "int", "low": lo, "high": lo + draw(st.integers(0, 200))}
        elif kind == "ilog":
            lo = draw(st.integers(1, 100))
            spec = {"type": "int", "low": lo, "high": lo + draw(st.integers(0, 5000)), "log": True}
        elif kind == "istep":
            step = draw(st.integers(1, 5))
            lo = draw(st.integers(-50, 50))
            spec = {
                "type": "int",
                "low": lo,
                "high": lo + step * draw(st.integers(0, 20)),
                "step": step,
            }
        else:
            k = draw(st.integers(1, 4))
            choices = draw(st.permutations(["a", 1, 2.5, False, None, "b"]))[:k]
            spec = {"type": "categorical", "choices": list(choices)}
            cat_names.append((name, list(choices)))
        if cat_names and kind != "cat" and draw(st.booleans()):
            parent, choices = draw(st.sampled_from(cat_names))
            spec["condition"] = {"param": parent, "in": choices[:1]}
        params[name] = spec
    return SearchSpace.from_dict({"objective": {"name": "y"}, "params": params})


@settings()
@given(space=spaces(), data=st.data())
def test_decode_of_any_point_is_valid_and_round_trips(space, data):
    enc = Encoder(space)
    u = np.array(data.draw(st.lists(st.floats(-0.5, 1.5), min_size=enc.dim, max_size=enc.dim)))
    config = enc.decode(u)
    assert space.contains(config) is None, (config, space.contains(config))
    x = enc.encode(config)
    assert x.shape == (enc.dim,)
    assert np.all(x >= 0.0) and np.all(x <= 1.0)
    again = enc.decode(x)
    assert again.keys() == config.keys()
    for k, v in config.items():
        if isinstance(v, float):
            assert math.isclose(again[k], v, rel_tol=1e-9, abs_tol=1e-9), (k, v, again[k])
        else:
            assert again[k] == v and type(again[k]) is type(v)
    # canonical encodings are fixed points
    assert np.allclose(enc.encode(again), x)


@settings()
@given(space=spaces(), seed=st.integers(0, 2**16))
def test_encode_of_sampled_configs_round_trips(space, seed):
    import optuna

    enc = Encoder(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trial = study.ask()
    config = space.suggest(trial)
    x = enc.encode(config)
    assert np.all((x >= 0) & (x <= 1))
    decoded = enc.decode(x)
    for k, v in config.items():
        if isinstance(v, float):
            assert math.isclose(decoded[k], v, rel_tol=1e-9, abs_tol=1e-12)
        else:
            assert decoded[k] == v


def test_uniform_u_gives_uniform_ints():
    space = SearchSpace.from_dict(
        {"params": {"k": {"type": "int", "low": 1, "high": 4}}, "objective": "y"}
    )
    enc = Encoder(space)
    u = np.linspace(0, 1, 4001)[:, None]
    values = [c["k"] for c in enc.decode_many(u)]
    counts = np.bincount(values)[1:]
    assert counts.min() >= 990 and counts.max() <= 1010


def test_one_hot_and_inactive_encoding():
    space = load_space(SPACES / "rbv2_xgboost.yaml")
    enc = Encoder(space)
    cfg = {
        "booster": "gblinear",
        "nrounds": 100,
        "lambda": 1.0,
        "alpha": 1.0,
        "subsample": 0.5,
        "num.impute.selected.cpo": "impute.hist",
    }
    x = enc.encode(cfg)
    sl = enc.param_slices()
    assert list(x[sl["booster"]]) == [1.0, 0.0, 0.0]
    assert x[sl["eta"]][0] == 0.5  # inactive -> neutral
    assert enc.decode(x) == cfg
    assert len(enc.dim_names) == enc.dim


# A config of search_spaces/mlp.yaml.
MLP_CONFIG = {
    "lr": 0.01,
    "weight_decay": 1e-4,
    "hidden": 32,
    "n_layers": 2,
    "dropout": 0.1,
    "batch_size": 32,
    "optimizer": "adam",
}


def test_bad_values_are_rejected():
    enc = Encoder(load_space(SPACES / "mlp.yaml"))
    good = MLP_CONFIG
    enc.encode(good)
    with pytest.raises(ValueError, match="outside"):
        enc.encode({**good, "lr": 5.0})
    with pytest.raises(ValueError, match="not one of the choices"):
        enc.encode({**good, "optimizer": "rmsprop"})
    with pytest.raises(ValueError, match="lacks active parameter 'momentum'"):
        enc.encode({**good, "optimizer": "sgd"})


def test_partial_encoding_gives_what_is_missing_or_outside_the_neutral_value():
    enc = Encoder(load_space(SPACES / "mlp.yaml"))
    good = {**MLP_CONFIG, "optimizer": "sgd", "momentum": 0.9}
    sl = enc.param_slices()
    bad = {**good, "lr": 5.0, "optimizer": "rmsprop", "dropout": "high"}
    del bad["hidden"]
    x = enc.encode_many([good, bad], partial=True)
    assert np.array_equal(x[0], enc.encode(good))
    for name in ("lr", "hidden", "dropout"):
        assert x[1, sl[name]].tolist() == [0.5]
    assert x[1, sl["optimizer"]].tolist() == [0.0] * len(x[1, sl["optimizer"]])
    # momentum is inactive: the optimizer is not sgd
    assert x[1, sl["momentum"]].tolist() == [0.5]
    for name in ("weight_decay", "n_layers", "batch_size"):
        assert np.array_equal(x[1, sl[name]], x[0, sl[name]])
    with pytest.raises(ValueError, match="outside"):
        enc.encode_many([bad])


@settings()
@given(space=spaces(), seed=st.integers(0, 2**16))
def test_vectorised_canonicalize_equals_decode_then_encode(space, seed):
    enc = Encoder(space)
    u = np.random.default_rng(seed).uniform(-0.2, 1.2, size=(16, enc.dim))
    np.testing.assert_allclose(
        enc.canonicalize(u), enc.encode_many(enc.decode_many(u)), atol=1e-12
    )


def test_grid_enumerates_every_config_of_a_finite_space_once():
    space = SearchSpace.from_dict(
        {
            "name": "g",
            "objective": {"name": "v", "direction": "minimize"},
            "params": {
                "a": {"type": "int", "low": 1, "high": 10, "log": True},
                "b": {"type": "int", "low": 0, "high": 20, "step": 5},
                "c": {"type": "float", "low": 0.1, "high": 0.5, "step": 0.1},
                "k": {"type": "categorical", "choices": ["x", "y"]},
                "d": {
                    "type": "int",
                    "low": 1,
                    "high": 3,
                    "condition": {"param": "k", "in": ["y"]},
                },
            },
        }
    )
    enc = Encoder(space)
    assert enc.size == 10 * 5 * 5 * 2 * 3 and enc.discrete == ("a", "b", "c", "k", "d")
    grid = enc.grid(2000)
    configs = enc.decode_many(grid)
    # d exists only where k is y: 250 configs with k=x, 750 with k=y
    assert len(grid) == 1000 == len({tuple(sorted(c.items())) for c in configs})
    assert {c["c"] for c in configs} == {0.1, 0.2, 0.3, 0.4, 0.5}
    np.testing.assert_array_equal(enc.canonicalize(grid), grid)
    assert enc.grid(999) is None
    moved = enc.decode_many(enc.step(grid[:300], np.random.default_rng(0)))
    for before, after in zip(configs[:300], moved, strict=True):
        changed = {n for n in before.keys() | after.keys() if before.get(n) != after.get(n)}
        assert len(changed) == 1 or changed == {"k", "d"}  # d exists only where k is y
        name = min(changed)
        if name in ("a", "b"):
            assert abs(after[name] - before[name]) == {"a": 1, "b": 5}[name]
        elif name == "c":
            assert abs(after[name] - before[name]) == pytest.approx(0.1)


def test_a_continuous_space_has_no_grid():
    space = SearchSpace.from_dict(
        {
            "name": "f",
            "objective": {"name": "v", "direction": "minimize"},
            "params": {
                "x": {"type": "float", "low": 0, "high": 1},
                "n": {"type": "int", "low": 1, "high": 3},
            },
        }
    )
    enc = Encoder(space)
    assert enc.size is None and enc.grid(10**6) is None and enc.discrete == ("n",)
