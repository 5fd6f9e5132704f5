"""The leave-one-out conformal check that widens the surrogate's intervals.

The rule on known scores, then real studies of the noisy quadratic (``conftest.noisy_study``,
40 random-search trials, noise scale 0.2) with Gaussian and with Student-t (df 2) noise: the
true value of every config is known, so the coverage of the intervals before and after the
widening can be counted.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tests.review.conftest import noisy_study, quad
from tuner._gp import GPParams, GPPosterior
from tuner.review import Calibration, read_study, review_data
from tuner.review._calibration import calibrate, conformal_factor
from tuner.review._confidence import _probability_of_best, analyse
from tuner.studies import open_storage

DOCS = Path(__file__).resolve().parents[2] / "docs"
REPS = 32
Z95 = float(stats.norm.ppf(0.975))


def test_the_factor_is_the_conformal_quantile_over_the_gaussian_one():
    scores = np.arange(1, 41) / 10.0  # 0.1 ... 4.0, shuffled below
    cal = conformal_factor(np.random.default_rng(0).permutation(scores), level=0.95)
    # ceil(41 * 0.95) = 39: the 39th smallest of 40
    assert cal.quantile == pytest.approx(3.9)
    assert cal.factor == pytest.approx(3.9 / Z95)
    assert cal.widened and cal.residuals == 40 and cal.level == 0.95
    assert cal.gaussian_quantile == pytest.approx(Z95)


def test_the_factor_never_narrows_and_uses_the_largest_score_when_few():
    small = conformal_factor(np.full(50, 0.5), level=0.95)
    assert small.factor == 1.0 and not small.widened and small.quantile == 0.5
    # 10 scores: ceil(11 * 0.95) = 11 > 10, so the largest
    scores = np.array([0.1, 0.2, 3.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    few = conformal_factor(scores, level=0.95)
    assert few.quantile == 3.0 and few.factor == pytest.approx(3.0 / Z95)
    assert conformal_factor(np.array([2.0]), level=0.68).quantile == 2.0


@pytest.mark.parametrize(
    ("scores", "level", "message"),
    [
        ([1.0], 1.0, r"level must be in \(0, 1\), got 1\.0"),
        ([1.0], 0.0, r"level must be in \(0, 1\), got 0\.0"),
        ([], 0.95, "at least one residual, got none"),
        ([1.0, math.nan], 0.95, "finite and >= 0, got nan"),
        ([1.0, -0.5], 0.95, r"finite and >= 0, got -0\.5"),
    ],
)
def test_bad_input_is_refused_with_the_rule_and_the_value(scores, level, message):
    with pytest.raises(ValueError, match=message):
        conformal_factor(np.array(scores), level=level)


def test_calibrate_uses_the_standardised_leave_one_out_residuals():
    rng = np.random.default_rng(3)
    x = rng.random((30, 2))
    y = np.sin(3 * x[:, 0]) + 0.1 * rng.standard_normal(30)
    params = GPParams.of(2, 0.5, 1.0, 0.01)
    process = GPPosterior(x, y, params, jitter=1e-9)
    scores = []
    for i in range(30):  # refit without each point: its prediction of a new run there
        keep = np.arange(30) != i
        m, v = GPPosterior(x[keep], y[keep], params, jitter=1e-9).predict(x[i : i + 1])
        scores.append(abs(y[i] - m[0]) / math.sqrt(v[0] + params.noise + 1e-9))
    got, want = calibrate(process, level=0.9), conformal_factor(np.array(scores), level=0.9)
    assert got.quantile == pytest.approx(want.quantile, rel=1e-6)
    assert got.factor == pytest.approx(want.factor, rel=1e-6) and got.residuals == 30


def _studies(tmp_path_factory, df: float | None) -> list:
    db = tmp_path_factory.mktemp("calibration") / "many.db"
    storage = open_storage(str(db))
    out = []
    for rep in range(REPS):
        noisy_study(storage, f"s{rep}", n=40, sigma=0.2, seed=500 + rep, df=df)
        out.append(analyse(read_study(str(db), f"s{rep}"), seed=rep))
    return out


@pytest.fixture(scope="module")
def gaussian(tmp_path_factory):
    """32 studies with N(0, 0.2^2) noise."""
    return _studies(tmp_path_factory, None)


@pytest.fixture(scope="module")
def heavy(tmp_path_factory):
    """32 studies with 0.2 * t(2) noise (infinite variance)."""
    return _studies(tmp_path_factory, 2.0)


def _coverage(analyses: list) -> tuple[float, float]:
    """Coverage of the top-k surrogate intervals: as the model has them, and as widened."""
    before, after = [], []
    for a in analyses:
        for e in a.candidates[: a.top_k]:
            if e.method == "surrogate":
                miss = abs(e.mean - quad(e.group.params))
                before.append(miss <= e.half_width / a.calibration.factor)
                after.append(miss <= e.half_width)
    return float(np.mean(before)), float(np.mean(after))


def test_gaussian_noise_leaves_the_intervals_about_as_the_model_has_them(gaussian):
    factors = np.array([a.calibration.factor for a in gaussian])
    assert np.median(factors) <= 1.1, f"factors {np.round(factors, 2)}"
    assert factors.max() <= 1.5, f"factors {np.round(factors, 2)}"


def test_heavy_tailed_noise_widens_the_intervals_towards_the_nominal_coverage(gaussian, heavy):
    factors = np.array([a.calibration.factor for a in heavy])
    gauss = np.median([a.calibration.factor for a in gaussian])
    assert np.median(factors) >= 1.05 and np.median(factors) > gauss, f"{np.round(factors, 2)}"
    before, after = _coverage(heavy)
    assert abs(after - 0.95) < abs(before - 0.95), f"coverage {before:.3f} -> {after:.3f}"


def test_the_widened_interval_is_the_model_interval_times_the_factor(heavy):
    for a in heavy[:8]:
        assert isinstance(a.calibration, Calibration) and a.calibration.factor >= 1.0
        once = [e for e in a.candidates if e.method == "surrogate"]
        _, cov = a.gp.selection_aware(a.codec.encode([e.group.params for e in once]))
        model_sd = np.sqrt(np.diag(cov))
        np.testing.assert_allclose([e.se for e in once], model_sd * a.calibration.factor)


def test_p_best_draws_from_the_widened_posterior(heavy):
    """Where the intervals widen, P(best) is on the whole less sure of its leaders."""
    widened = [a for a in heavy if a.calibration.factor > 1.05]
    assert len(widened) >= 4, f"{len(widened)} heavy-tailed studies widened their intervals"
    leaders = {"model": [], "widened": []}
    for a in widened:
        top = a.candidates[: a.top_k]
        assert sum(e.p_best for e in top) == pytest.approx(1.0)
        for name, factor in (("model", 1.0), ("widened", a.calibration.factor)):
            again = [copy.copy(e) for e in top]
            _probability_of_best(again, a.gp, a.codec, np.random.default_rng(0), factor=factor)
            leaders[name].append(max(e.p_best for e in again))
    assert np.mean(leaders["widened"]) < np.mean(leaders["model"]), leaders


@pytest.mark.parametrize(("df", "widened"), [(2.0, True), (None, False)])
def test_the_report_carries_the_calibration_and_says_once_when_it_widened(tmp_path, df, widened):
    db = tmp_path / "one.db"
    noisy_study(f"sqlite:///{db}", "one", n=40, sigma=0.2, seed=500, df=df)
    review = review_data(read_study(str(db), "one"), seed=0)
    cal = review.analysis.calibration
    assert cal.widened is widened
    report = json.loads(review.to_json())
    assert report["confidence"]["surrogate"]["calibration"] == {
        "factor": pytest.approx(cal.factor),
        "residuals": 40,
        "level": 0.95,
        "widened": widened,
        "quantile": pytest.approx(cal.quantile),
        "gaussian_quantile": pytest.approx(Z95),
    }
    said = [n for n in report["notes"] if "widened" in n]
    assert len(said) == (1 if widened else 0)
    if widened:
        assert f"widened {cal.factor:.2f}x" in said[0] and f"{cal.quantile:.2f}" in said[0]


def test_the_calibration_field_is_documented():
    text = (DOCS / "json.md").read_text()
    line = re.search(r'"calibration": \{[^}]*\}', text)
    assert line is not None, "docs/json.md: confidence.surrogate.calibration"
    for key in ("factor", "residuals", "level", "widened", "quantile", "gaussian_quantile"):
        assert f'"{key}"' in line.group(0), key
    assert "leave-one-out" in (DOCS / "review.md").read_text()
