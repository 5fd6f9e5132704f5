"""What the sampler says: the ``tuner`` loggers (Optuna's verbosity) and ``PriorReport``."""

from __future__ import annotations

import logging

import optuna
import pytest

import tuner
from tests.sampler.conftest import CENTRE, bowl
from tuner.sampler import MetaPriorSampler


@pytest.fixture
def verbosity():
    before = optuna.logging.get_verbosity()
    tuner.set_verbosity(None)
    yield
    tuner.set_verbosity(None)
    optuna.logging.set_verbosity(before)


def _uncovered_study(prior) -> None:
    """A study the prior covers none of: the sampler warns, on ``tuner.sampler``."""
    study = optuna.create_study(sampler=MetaPriorSampler(prior, seed=0))
    study.optimize(lambda t: t.suggest_float("lr", 1e-3, 1.0), n_trials=2)


def _said(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "covers none" in r.getMessage()]


def test_optuna_verbosity_silences_the_samplers_warnings(xy_prior, caplog, verbosity):
    caplog.set_level(logging.DEBUG)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _uncovered_study(xy_prior)
    said = _said(caplog)
    assert len(said) == 1 and said[0].name == "tuner.sampler" and said[0].levelname == "WARNING"

    caplog.clear()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # as for Optuna's own messages
    _uncovered_study(xy_prior)
    assert not _said(caplog)

    caplog.clear()
    tuner.set_verbosity(logging.WARNING)  # mttune's own verbosity wins over Optuna's
    _uncovered_study(xy_prior)
    assert len(_said(caplog)) == 1
    assert tuner.get_verbosity() == logging.WARNING
    tuner.set_verbosity(None)
    assert tuner.get_verbosity() == optuna.logging.ERROR


def test_coverage_is_info_and_shown_at_optuna_info(xy_prior, caplog, verbosity):
    caplog.set_level(logging.DEBUG)
    optuna.logging.set_verbosity(optuna.logging.INFO)
    study = optuna.create_study(sampler=MetaPriorSampler(xy_prior, seed=0))
    study.optimize(lambda t: t.suggest_float("x", -1, 1) + t.suggest_float("y", -1, 1), 1)
    infos = [r for r in caplog.records if r.name == "tuner.sampler" and r.levelname == "INFO"]
    assert infos and "MetaPriorSampler:" in infos[0].getMessage()


def test_loggers_outside_the_hierarchy_are_refused():
    from tuner._logging import get_logger

    assert get_logger("tuner.sampler").name == "tuner.sampler"
    with pytest.raises(ValueError, match="under 'tuner'"):
        get_logger("sampler")


def test_prior_report_prints_coverage_once_then_the_guard_after_each_trial(xy_prior, verbosity):
    import io

    from tuner.sampler import NegativeTransferGuard, PriorReport

    out = io.StringIO()
    study = optuna.create_study(
        direction="maximize",  # the prior ranks everything backwards: the guard fires
        sampler=MetaPriorSampler(xy_prior, seed=0, guard=NegativeTransferGuard(min_evidence=4)),
    )

    def objective(t):
        return bowl(t.suggest_float("x", -1, 1), t.suggest_float("y", -1, 1), CENTRE)

    study.optimize(objective, n_trials=25, callbacks=[PriorReport(file=out)])
    lines = out.getvalue().splitlines()
    assert lines[0] == "prior coverage: prior covers 2 of 2 parameters", lines
    trials = [ln for ln in lines if ln.startswith("trial ")]
    assert len(trials) == 25 and sum(ln.startswith("prior coverage") for ln in lines) == 1
    assert trials[0].startswith("trial 0 (prior, complete ") and "guard trust 0.95" in trials[0]
    assert any("guard FIRED" in ln for ln in trials), lines

    plain = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    quiet = io.StringIO()
    plain.optimize(objective, n_trials=2, callbacks=[PriorReport(file=quiet)])
    assert quiet.getvalue() == ""  # not sampled by MetaPriorSampler: nothing to say
