"""MAML on a synthetic family with a known answer: adaptation helps, zero-shot finds the bowl."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.prior.conftest import CENTRE, SMALL_MAML, SMALL_MODEL, bowl_family, bowl_task
from tuner.metadataset import rank_normalize, relative_to_support
from tuner.prior import MAMLConfig, meta_train, observation_targets
from tuner.prior._maml import (
    Surrogate,
    batched_query_loss,
    init_ensemble,
    surrogate_shapes,
)


def _mse(pred, t):
    return float(np.mean((pred - t) ** 2))


def test_adaptation_reduces_query_loss_on_new_tasks(bowl_prior):
    rng = np.random.default_rng(123)
    before, after = [], []
    for _ in range(10):
        _, configs, y = bowl_task(rng, 60)
        x = bowl_prior.encoder.encode_many(configs)
        k = 10
        # targets relative to the support set, for support and query alike (as in training)
        z = rank_normalize(y)
        t = relative_to_support(z, (np.arange(60) < k).astype(np.float64))
        adapted = bowl_prior.predict_targets(x[k:], x[:k], t[:k])
        frozen = bowl_prior.predict_targets(x[k:], x[:k], t[:k], steps=0)
        after.append(_mse(adapted.mean, t[k:]))
        before.append(_mse(frozen.mean, t[k:]))
    assert np.mean(after) < 0.7 * np.mean(before), (np.mean(after), np.mean(before))


def test_zero_shot_proposals_find_the_family_optimum(bowl_prior):
    proposals = bowl_prior.zero_shot(3, seed=0)
    assert len(proposals) == 3
    first = np.array([proposals[0]["a"], proposals[0]["b"]])
    assert np.linalg.norm(first - CENTRE) < 0.2, first
    # diverse, not near-duplicates
    pts = np.array([[p["a"], p["b"]] for p in proposals])
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).mean(-1))
    assert d[np.triu_indices(3, 1)].min() >= 0.15 - 1e-9
    # better than random configs on new tasks of the family
    rng = np.random.default_rng(7)
    wins = 0
    for _ in range(20):
        c, _, _ = bowl_task(rng, 1)
        zero_shot = ((first - c) ** 2).sum()
        random_median = np.median(((rng.random((200, 2)) - c) ** 2).sum(axis=1))
        wins += zero_shot < random_median
    assert wins == 20


def test_few_shot_predictions_rank_new_task_well(bowl_prior):
    rng = np.random.default_rng(99)
    taus = []
    from scipy.stats import kendalltau

    for _ in range(8):
        _, configs, y = bowl_task(rng, 45)
        observed = list(zip(configs[:5], y[:5], strict=True))
        pred = bowl_prior.predict(configs[5:], observed)
        taus.append(kendalltau(pred.mean, y[5:]).statistic)
    assert np.mean(taus) > 0.5


def test_validation_metrics_and_calibration_are_recorded(bowl_prior):
    val = bowl_prior.info["validation"]
    assert {"0-shot", "5-shot", "20-shot"} <= set(val)
    assert val["20-shot"]["kendall_tau"] > val["0-shot"]["kendall_tau"] - 0.05
    for m in val.values():
        assert 0.75 <= m["coverage_95"] <= 1.0, m
    assert bowl_prior.info["training"]["best_step"] >= SMALL_MAML.val_every
    assert len(bowl_prior.info["splits"]["held_out"]) >= 2


def test_inner_learning_rate_is_learned(bowl_prior):
    init = math.log(SMALL_MAML.inner_lr)
    moved = [float((v - init).abs().max()) for v in bowl_prior.log_lrs.values()]
    assert max(moved) > 1e-3


def test_second_order_gradients_differ_from_first_order():
    gen = torch.Generator().manual_seed(0)
    base, params = init_ensemble(2, 16, 2, 2, gen)
    lrs = {k: torch.full((2,), math.log(0.1)) for k in params}
    x = torch.rand(2, 3, 20, 2, generator=gen)
    z = torch.randn(2, 3, 20, generator=gen)
    sup = torch.zeros(2, 3, 20)
    sup[..., :8] = 1
    grads = {}
    for fo in (False, True):
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        batched_query_loss(p, lrs, base, x, z, sup, 1 - sup, 3, fo).mean().backward()
        grads[fo] = torch.cat([v.grad.flatten() for v in p.values()])
    assert not torch.allclose(grads[False], grads[True])


def test_same_seed_same_prior_different_seed_different_prior():
    ds = bowl_family(6, 30, seed=1)
    cfg = MAMLConfig(max_steps=20, val_every=10, meta_batch=4)
    a = meta_train(ds, model=SMALL_MODEL, maml=cfg, seed=5)
    b = meta_train(ds, model=SMALL_MODEL, maml=cfg, seed=5)
    c = meta_train(ds, model=SMALL_MODEL, maml=cfg, seed=6)
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k])
    assert any(not torch.equal(a.params[k], c.params[k]) for k in a.params)
    assert a.zero_shot(2, seed=0) == b.zero_shot(2, seed=0)


def test_observation_targets_are_relative_and_direction_aware():
    t = observation_targets([3.0, 1.0, 2.0], "minimize")
    assert t[1] < t[2] < t[0] and abs(t.mean()) < 1e-12
    assert np.allclose(observation_targets([3.0, 1.0, 2.0], "maximize"), -t)
    assert observation_targets([5.0], "minimize").tolist() == [0.0]
    assert observation_targets([], "minimize").size == 0


def test_no_maml_ablation_trains_plain_regression():
    ds = bowl_family(6, 30, seed=2)
    prior = meta_train(
        ds, model=SMALL_MODEL, maml=MAMLConfig(max_steps=20, val_every=10, inner_steps=0), seed=0
    )
    assert prior.maml.prediction_steps == 5  # adapts by fine-tuning at prediction time
    pred = prior.predict([{"a": 0.3, "b": 0.7}])
    assert pred.mean.shape == (1,) and np.isfinite(pred.std).all()


@pytest.mark.parametrize("lr_shape", ["tensor", "element"])
def test_numpy_inference_path_matches_torch(lr_shape):
    from tuner.prior._fast import FastEnsemble
    from tuner.prior._maml import inner_lr_shape, predict

    gen = torch.Generator().manual_seed(0)
    base, params = init_ensemble(7, 16, 3, 4, gen)
    maml = MAMLConfig(inner_lr_shape=lr_shape)
    lrs = {}
    for k, v in params.items():
        shape = inner_lr_shape(v.shape, maml)
        lrs[k] = math.log(0.05) + 0.5 * torch.randn(shape, generator=gen)
    fast = FastEnsemble.from_torch(params, lrs)
    rng = np.random.default_rng(0)
    for n in (0, 1, 17):
        xo, to, xc = rng.random((n, 7)), rng.standard_normal(n), rng.random((50, 7))
        ref = predict(
            params,
            lrs,
            base,
            torch.tensor(xo, dtype=torch.float32),
            torch.tensor(to, dtype=torch.float32),
            torch.tensor(xc, dtype=torch.float32),
            3,
        ).numpy()
        got = fast.adapt(xo, to, 3).predict(xc)
        np.testing.assert_allclose(got, ref, atol=1e-4)


def test_meta_sgd_learns_a_step_size_per_weight():
    ds = bowl_family(8, 40, seed=3)
    maml = MAMLConfig(max_steps=60, val_every=20, meta_batch=4, inner_lr_shape="element")
    prior = meta_train(ds, model=SMALL_MODEL, maml=maml, seed=0)
    for name, p in prior.params.items():
        assert prior.log_lrs[name].shape == p.shape
    # the step sizes of one tensor and member moved apart: they are learned one by one
    first = prior.log_lrs["net.0.weight"][0]
    assert float(first.max() - first.min()) > 1e-3
    # the prior adapts with them: observations move its predictions
    x = [{"a": 0.3, "b": 0.7}, {"a": 0.9, "b": 0.1}]
    observed = [({"a": 0.9, "b": 0.1}, 0.0), ({"a": 0.3, "b": 0.7}, 1.0)]
    assert not np.allclose(prior.predict(x).mean, prior.predict(x, observed).mean)


def test_meta_sgd_and_per_tensor_step_sizes_give_the_same_first_step_at_init():
    """At the initial step size, one per element or one per tensor is the same update."""
    from tuner.prior._maml import adapt_members, inner_lr_shape

    gen = torch.Generator().manual_seed(1)
    base, params = init_ensemble(3, 8, 2, 2, gen)
    x, t = torch.rand(9, 3, generator=gen), torch.randn(9, generator=gen)
    out = []
    for lr_shape in ("tensor", "element"):
        maml = MAMLConfig(inner_lr_shape=lr_shape)
        lrs = {k: torch.full(inner_lr_shape(v.shape, maml), -2.0) for k, v in params.items()}
        out.append(adapt_members(params, lrs, base, x, t, 2))
    for k in params:
        torch.testing.assert_close(out[0][k], out[1][k])


@pytest.mark.parametrize("lr_shape", ["tensor", "element"])
def test_numpy_inference_path_matches_torch_with_a_cavia_context(lr_shape):
    from tuner.prior._fast import FastEnsemble
    from tuner.prior._maml import CONTEXT, inner_lr_shape, predict

    gen = torch.Generator().manual_seed(2)
    base, params = init_ensemble(7 + 3, 16, 2, 4, gen)  # 7 inputs, a context of 3
    shape = inner_lr_shape((4, 3), MAMLConfig(inner_lr_shape=lr_shape))
    lrs = {CONTEXT: 0.5 * torch.randn(shape, generator=gen)}
    fast = FastEnsemble.from_torch(params, lrs, context=3)
    rng = np.random.default_rng(2)
    for n in (0, 1, 17):
        xo, to, xc = rng.random((n, 7)), rng.standard_normal(n), rng.random((50, 7))
        as_t = [torch.tensor(v, dtype=torch.float32) for v in (xo, to, xc)]
        ref = predict(params, lrs, base, *as_t, 3).numpy()
        adapted = fast.adapt(xo, to, 3)
        np.testing.assert_allclose(adapted.predict(xc), ref, atol=1e-4)
        # only the context moved: the first layer's bias, nothing else
        kept = [*zip(adapted.weights, fast.weights, strict=True)]
        kept += zip(adapted.biases[1:], fast.biases[1:], strict=True)
        assert all(np.array_equal(a, b) for a, b in kept)
        assert n == 0 or not np.allclose(adapted.biases[0], fast.biases[0])


def test_cavia_adapts_only_its_context_and_learns_its_step_size():
    from tuner.prior._maml import CONTEXT

    ds = bowl_family(8, 40, seed=3)
    maml = MAMLConfig(max_steps=60, val_every=20, meta_batch=4, context=2)
    prior = meta_train(ds, model=SMALL_MODEL, maml=maml, seed=0)
    assert set(prior.log_lrs) == {CONTEXT}
    assert prior.params["net.0.weight"].shape[-1] == 2 + 2  # config + context columns
    assert float((prior.log_lrs[CONTEXT] - math.log(1.0)).abs().max()) > 1e-3
    x = [{"a": 0.3, "b": 0.7}, {"a": 0.9, "b": 0.1}]
    observed = [({"a": 0.9, "b": 0.1}, 0.0), ({"a": 0.3, "b": 0.7}, 1.0)]
    assert not np.allclose(prior.predict(x).mean, prior.predict(x, observed).mean)


def test_weight_decay_shrinks_the_network_but_not_the_step_sizes():
    ds = bowl_family(6, 30, seed=1)
    plain = MAMLConfig(max_steps=20, val_every=20, meta_batch=4)
    decayed = MAMLConfig(max_steps=20, val_every=20, meta_batch=4, weight_decay=10.0)
    a = meta_train(ds, model=SMALL_MODEL, maml=plain, seed=0)
    b = meta_train(ds, model=SMALL_MODEL, maml=decayed, seed=0)
    norm = {p: sum(float(v.norm()) for v in p.params.values()) for p in (a, b)}
    assert norm[b] < 0.8 * norm[a]
    # the step sizes are learned as before, not pulled towards 0 (log lr towards 1)
    for k in a.log_lrs:
        assert float(b.log_lrs[k].mean()) == pytest.approx(float(a.log_lrs[k].mean()), abs=0.3)
    assert b.maml.weight_decay == 10.0


def test_a_negative_weight_decay_is_refused():
    from tuner._errors import MttuneError

    with pytest.raises(MttuneError, match=r"weight_decay must be >= 0, got -0.1"):
        MAMLConfig(weight_decay=-0.1)


def test_a_context_step_size_that_is_not_positive_is_refused():
    from tuner._errors import MttuneError

    with pytest.raises(MttuneError, match=r"context_lr must be > 0, got -0.5"):
        MAMLConfig(context=4, context_lr=-0.5)


def test_cavia_starts_its_context_step_size_at_context_lr():
    from tuner.prior._maml import CONTEXT

    ds = bowl_family(6, 30, seed=2)
    maml = MAMLConfig(max_steps=1, val_every=1, meta_batch=4, context=2, context_lr=0.1)
    prior = meta_train(ds, model=SMALL_MODEL, maml=maml, seed=0)
    assert prior.maml.context_lr == 0.1
    # one Adam step (lr 5e-3) from log 0.1, far from the default's log 1.0
    assert float((prior.log_lrs[CONTEXT] - math.log(0.1)).abs().max()) < 0.05


def test_a_context_without_inner_steps_is_refused():
    from tuner._errors import MttuneError

    with pytest.raises(MttuneError, match=r"context \(CAVIA\) needs inner_steps >= 1"):
        MAMLConfig(context=4, inner_steps=0)


def test_an_unknown_inner_lr_shape_is_refused():
    from tuner._errors import MttuneError

    with pytest.raises(MttuneError, match=r"inner_lr_shape must be one of tensor, element"):
        MAMLConfig(inner_lr_shape="row")


@pytest.mark.parametrize(("dim", "hidden", "layers"), [(3, 5, 1), (12, 64, 2), (7, 3, 4)])
def test_surrogate_shapes_match_the_module(dim, hidden, layers):
    net = Surrogate(dim, hidden, layers)
    shapes = {name: tuple(p.shape) for name, p in net.named_parameters()}
    assert surrogate_shapes(dim, hidden, layers) == shapes


def test_diverged_meta_training_is_a_clear_error():
    from tuner._errors import MttuneError

    maml = MAMLConfig(max_steps=20, val_every=5, outer_lr=5.0)
    with pytest.raises(MttuneError, match=r"meta-training diverged: .*\(outer_lr=5\.0"):
        meta_train(bowl_family(6, 30, seed=2), model=SMALL_MODEL, maml=maml, seed=0)
