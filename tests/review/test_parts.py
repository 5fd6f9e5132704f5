"""The parts of review on their own: the surrogate, the encoding moves, grouping, parsing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from scipy import stats

from tests.review.conftest import noisy_study
from tuner.review import read_study
from tuner.review._confidence import analyse, describe_method
from tuner.review._configs import Codec, ConfigIndex
from tuner.review._load import _json, _thin_guards
from tuner.review._surrogate import fit_gaussian_process, rank_luck
from tuner.studies import TrialAttr


@pytest.mark.parametrize("sigma", [0.02, 0.1, 0.3])
def test_surrogate_estimates_the_noise_and_the_function(sigma):
    rng = np.random.default_rng(0)
    x = rng.random((150, 2))
    truth = np.sin(4 * x[:, 0]) + (x[:, 1] - 0.5) ** 2
    gp = fit_gaussian_process(x, truth + rng.normal(0, sigma, len(x)))
    assert gp is not None
    assert 0.7 * sigma < gp.noise_sd < 1.3 * sigma
    grid = rng.random((200, 2))
    mean, cov = gp.posterior(grid)
    want = np.sin(4 * grid[:, 0]) + (grid[:, 1] - 0.5) ** 2
    z = (mean - want) / np.sqrt(np.diag(cov))
    assert np.mean(np.abs(z) < 1.96) > 0.85  # the latent intervals are about calibrated
    assert np.sqrt(np.mean((mean - want) ** 2)) < max(sigma, 0.05)
    assert np.allclose(gp.mean(grid), mean)


def test_selection_aware_posterior_debiases_lucky_runs_by_their_rank():
    rng = np.random.default_rng(1)
    x = rng.random((40, 2))
    y = np.sin(4 * x[:, 0]) + 0.2 * rng.standard_normal(40)
    gp = fit_gaussian_process(x, y)
    plain, cov = gp.posterior(x)
    aware, cov_aware = gp.selection_aware(x)
    np.testing.assert_allclose(cov_aware, cov)
    shift = aware - plain
    order = np.argsort(y)
    # the best runs are moved the pessimistic way (up: lower is better), the worse half not
    assert np.all(shift[order[:10]] > 0)
    np.testing.assert_allclose(shift[order[20:]], 0.0, atol=1e-12)
    # by w * noise * luck(rank), w from the leave-one-out variance (standardised units)
    process = gp.process
    _, loo_var = process.leave_one_out()
    i = order[0]
    w = loo_var[i] / (loo_var[i] + process.params.noise + process.jitter)
    luck = rank_luck(process.y)[i] * process.params.noise
    assert shift[i] == pytest.approx(gp.scale * w * luck)
    # configs the posterior does not condition on keep the plain posterior
    new = rng.random((5, 2))
    np.testing.assert_allclose(gp.selection_aware(new)[0], gp.posterior(new)[0])


def test_rank_luck_is_the_normal_score_of_the_best_half():
    luck = rank_luck(np.array([3.0, 1.0, 2.0, 4.0]))
    assert luck[1] == pytest.approx(-stats.norm.ppf(0.625 / 4.25))
    assert luck[1] > luck[2] > 0 and luck[0] == 0 and luck[3] == 0


def test_surrogate_caps_diverged_runs_and_skips_constant_values():
    rng = np.random.default_rng(1)
    x = rng.random((40, 1))
    y = (x[:, 0] - 0.5) ** 2 + rng.normal(0, 0.01, 40)
    y[:3] = 1e30  # diverged runs
    gp = fit_gaussian_process(x, y)
    assert gp is not None and gp.capped == 3
    assert gp.mean(np.array([[0.5]]))[0] < 0.1
    assert fit_gaussian_process(x, np.full(40, 0.7)) is None


def test_codec_moves_each_kind_of_parameter():
    codec = Codec(
        {
            "x": FloatDistribution(-1.0, 1.0),
            "lr": FloatDistribution(1e-4, 1.0, log=True),
            "layers": IntDistribution(1, 3),
            "drop": FloatDistribution(0.0, 0.5, step=0.1),
            "opt": CategoricalDistribution(["adam", "sgd"]),
        }
    )
    assert codec.dim == 6 and codec.names == ["x", "lr", "layers", "drop", "opt"]
    value, delta = codec.neighbour("x", 0.2, 0.05)
    assert value == pytest.approx(0.3) and delta == pytest.approx(0.05)
    value, _ = codec.neighbour("lr", 1e-2, -0.05)  # 5% of 4 decades: x 10^-0.2
    assert value == pytest.approx(1e-2 * 10**-0.2)
    assert codec.neighbour("layers", 2, 0.05) == (3, pytest.approx(1 / 3))  # next grid value
    assert codec.neighbour("layers", 3, 0.05) is None  # the top of the range
    assert codec.neighbour("drop", 0.2, -0.05)[0] == pytest.approx(0.1)
    assert codec.neighbour("x", 1.0, 0.05) is None
    value, delta = codec.neighbour("x", 0.95, 0.05)  # clipped at the end of the range
    assert value == 1.0 and delta == pytest.approx(0.025)
    assert codec.is_categorical("opt") and not codec.is_categorical("x")
    enc = codec.encode([{"x": 0.0, "opt": "sgd"}, {"x": 1.0, "lr": 1.0, "layers": 1}])
    assert enc.tolist()[0] == [0.5, 0.5, 0.5, 0.5, 0.0, 1.0]  # missing: neutral values
    assert enc[1, :3].tolist() == pytest.approx([1.0, 1.0, 1 / 6])


def test_a_config_whose_runs_tie_by_chance_gets_the_pooled_noise(tmp_path):
    """Two runs at the same accuracy (steps of 1/50) are not a zero-width interval."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import create_trial

    db = tmp_path / "tie.db"
    study = optuna.create_study(study_name="tie", storage=f"sqlite:///{db}", direction="maximize")
    dist = {"depth": CategoricalDistribution([2, 4, 6])}
    for depth, values in ((4, [0.90, 0.90]), (2, [0.80, 0.86, 0.84]), (6, [0.70, 0.76])):
        for v in values:
            study.add_trial(create_trial(params={"depth": depth}, distributions=dist, value=v))
    analysis = analyse(read_study(str(db), "tie"))
    tied = next(e for e in analysis.candidates if e.group.params == {"depth": 4})
    assert tied.method == "repeats" and tied.sd == 0.0
    assert tied.df == 4 and tied.pooled == 3 and tied.half_width > 0.02
    assert "pooled over 3 repeated configs" in describe_method(tied, analysis)


def test_configs_are_grouped_and_verification_repeats_kept_apart(tmp_path):
    import optuna
    from optuna.trial import create_trial

    db = tmp_path / "g.db"
    study = noisy_study(f"sqlite:///{db}", "g", n=5, sigma=0.1, seed=0)
    first = study.trials[0]
    for kind, value in (("repeat", 1.0), ("repeat", 2.0), ("perturb", 3.0)):
        params = dict(first.params)
        tag = {"of": 0, "kind": kind}
        if kind == "perturb":
            params["x"] = min(params["x"] + 0.1, 1.0)
            tag.update(param="x", delta=0.05)
        study.add_trial(
            create_trial(
                params=params,
                distributions=first.distributions,
                value=value,
                user_attrs={TrialAttr.VERIFY.key: tag},
            )
        )
    study.add_trial(create_trial(state=optuna.trial.TrialState.FAIL))
    data = read_study(str(db), "g")
    assert data.verification.tolist() == [False] * 5 + [True] * 3 + [False]
    index = ConfigIndex(data)
    assert len(index) == 6 and len(index.complete) == 8
    (twice,) = index.repeated()
    assert twice.rows == [0, 5, 6] and twice.search_rows == [0] and twice.repeat_rows == [5, 6]
    assert twice.representative(data) == 0 and twice.y.tolist()[1:] == [1.0, 2.0]
    singles = index.single_rows()
    assert sorted(singles.tolist()) == [1, 2, 3, 4, 7]
    assert list(data.values[singles]) == sorted(data.values[singles])


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=6,
    )
)
def test_attribute_json_decodes_like_the_json_module(value):
    text = json.dumps(value)
    decoded = _json(text)
    assert decoded == json.loads(text)
    assert type(decoded) is type(json.loads(text))


def test_attribute_json_special_values():
    assert math.isnan(_json("NaN")) and _json("Infinity") == math.inf
    assert _json('"a\\"b"') == 'a"b' and _json("-1e-05") == -1e-05
    assert _json("not json") == "not json"


def test_only_the_guards_review_reports_are_kept():
    fired = json.dumps({"trust": 0.1, "fired": True})
    calm = json.dumps({"trust": 0.9, "fired": False})
    attrs = [{"mttune.guard": calm}, {"mttune.guard": fired}, {}, {"mttune.guard": calm}]
    _thin_guards(attrs)
    assert attrs == [
        {},
        {"mttune.guard": {"trust": 0.1, "fired": True}},
        {},
        {"mttune.guard": {"trust": 0.9, "fired": False}},
    ]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_the_latest_distribution_is_the_last_trials_after_a_range_came_back(tmp_path, kind):
    """x in [0, 1], then [0, 0.5], then [0, 1] again: the latest range is [0, 1]."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    path = tmp_path / ("s.db" if kind == "sqlite" else "s.log")
    storage = f"sqlite:///{path}" if kind == "sqlite" else str(path)
    if kind == "journal":
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="s", storage=storage)
    for high in (1.0, 1.0, 0.5, 0.5, 1.0, 1.0):
        dist = {"x": FloatDistribution(0.0, high)}
        study.add_trial(create_trial(params={"x": 0.25}, distributions=dist, value=0.0))
    assert read_study(str(path), "s").distributions["x"] == FloatDistribution(0.0, 1.0)
