"""Do review's numbers mean what they say? Checked over many studies with a known truth.

Every study here is a real search of ``f(x, y) = (x - 0.3)^2 + (y + 0.1)^2`` plus Gaussian
noise of known sd, stored in SQLite; the true value of any config is known, so the
intervals' coverage and the quality of the recommendation can be measured.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.review.conftest import noisy_study, quad
from tuner.review import VerifyOptions, read_study, review_data, verify_study
from tuner.review._confidence import analyse
from tuner.runners import ScriptSpec
from tuner.studies import open_storage

REPS = 48


@pytest.fixture(scope="module")
def surrogate_runs(tmp_path_factory):
    """48 studies (40 random-search trials each; noise sd 0.05 or 0.2; half maximise)."""
    db = tmp_path_factory.mktemp("stats") / "many.db"
    storage = open_storage(str(db))  # WAL, as mttune run writes: faster to fill
    out = []
    for rep in range(REPS):
        sigma = 0.05 if rep % 2 == 0 else 0.2
        direction = "minimize" if rep % 4 < 2 else "maximize"
        noisy_study(storage, f"s{rep}", n=40, sigma=sigma, seed=1000 + rep, direction=direction)
        analysis = analyse(read_study(str(db), f"s{rep}"), seed=rep)
        out.append(analysis)
    return out


def test_surrogate_intervals_cover_the_true_value_at_about_95_percent(surrogate_runs):
    covered, widths = [], {0.05: [], 0.2: []}
    for rep, analysis in enumerate(surrogate_runs):
        rec = analysis.recommended
        assert rec.method == "surrogate"
        s = analysis.data.sign
        lo, hi = sorted([s * (rec.mean - rec.half_width), s * (rec.mean + rec.half_width)])
        true = s * quad(rec.group.params)
        covered.append(lo <= true <= hi)
        sigma = 0.05 if rep % 2 == 0 else 0.2
        widths[sigma].append(rec.half_width / sigma)
    rate = float(np.mean(covered))
    assert 0.85 <= rate <= 1.0, f"95% intervals covered the truth in {rate:.0%} of {REPS} studies"
    # and they are informative: narrower than the interval of a single observation (the
    # surrogate pools the neighbours), so coverage is not bought with width
    for sigma, ratio in widths.items():
        assert np.median(ratio) < 1.96, f"noise sd {sigma}: median half-width {ratio}"


def test_recommendation_beats_the_noisy_best_on_average(surrogate_runs):
    rec_true, best_true = [], []
    for analysis in surrogate_runs:
        rec_true.append(quad(analysis.recommended.group.params))
        best_true.append(quad(analysis.data.params[analysis.best_observed_row]))
    rec_true, best_true = np.array(rec_true), np.array(best_true)
    differ = rec_true != best_true
    assert differ.sum() >= REPS // 4, "the recommendation should often differ at this noise"
    assert rec_true.mean() < 0.8 * best_true.mean()
    assert (rec_true[differ] < best_true[differ]).mean() > 0.5


def test_p_best_is_a_distribution_and_favours_the_recommendation(surrogate_runs):
    for analysis in surrogate_runs[:10]:
        top = analysis.candidates[: analysis.top_k]
        probs = [e.p_best for e in top]
        assert all(p is not None and 0.0 <= p <= 1.0 for p in probs)
        assert sum(probs) == pytest.approx(1.0)
        bounds = [e.bound for e in top]
        assert bounds == sorted(bounds)


def test_noise_estimate_is_close_to_the_true_noise(surrogate_runs):
    for sigma, runs in ((0.05, surrogate_runs[0::2]), (0.2, surrogate_runs[1::2])):
        estimates = np.array([a.noise_sd for a in runs])
        assert 0.6 * sigma < np.median(estimates) < 1.4 * sigma


@pytest.mark.slow
def test_verified_intervals_cover_the_true_value_at_about_95_percent(tmp_path, noisy_script):
    """30 studies; the top 2 configs of each verified with 3 fresh-seed runs (60 intervals)."""
    db = tmp_path / "verify.db"
    storage = open_storage(str(db))
    spec = ScriptSpec.detect(noisy_script)
    covered, widths = [], []
    for rep in range(30):
        noisy_study(storage, f"v{rep}", n=12, sigma=0.05, seed=rep)
        result = verify_study(
            str(db),
            f"v{rep}",
            spec,
            VerifyOptions(top_k=2, repeats=3, perturb=0.0, seed=rep),
        )
        assert len(result.runs) == 6 and all(r.state == "complete" for r in result.runs)
        assert len(result.verified) == 2
        for est in result.verified:
            assert est.method == "verify-repeats" and est.n_used == 3 and est.df == 4
            lo, hi = est.mean - est.half_width, est.mean + est.half_width
            covered.append(lo <= quad(est.group.params) <= hi)
            widths.append(est.half_width)
    rate = float(np.mean(covered))
    assert 0.85 <= rate <= 1.0, f"verified 95% intervals covered the truth in {rate:.0%}"
    # not bought with width: within twice the interval of a 3-run mean with the noise known
    assert np.median(widths) < 2 * 1.96 * 0.05 / np.sqrt(3)


def test_review_report_carries_the_analysis_interval(tmp_path):
    db = tmp_path / "one.db"
    noisy_study(f"sqlite:///{db}", "one", n=30, sigma=0.1, seed=3, direction="maximize")
    review = review_data(read_study(str(db), "one"), seed=0)
    rec = review.analysis.recommended
    report = review.to_dict()["recommended"]
    assert report["method"] == "surrogate"
    assert report["mean"] == pytest.approx(-rec.mean)
    lo, hi = report["interval"]
    assert lo < report["mean"] < hi
    assert hi - lo == pytest.approx(2 * rec.half_width)
    # maximising: the pessimistic bound is the lower end
    assert report["bound"] == pytest.approx(lo)
