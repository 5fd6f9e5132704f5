"""Past studies in real SQLite storages -> meta-dataset."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuner.metadataset import MetaDatasetError, build_metadataset, expand_sources, rank_normalize
from tuner.space import parse_space

SPACE = parse_space(
    """
objective: {name: loss}
params:
  x: {type: float, low: 0, high: 1}
  kind: {type: categorical, choices: [a, b]}
  k: {type: int, low: 1, high: 5, condition: {param: kind, equals: b}}
"""
)


def _objective(trial: optuna.Trial) -> float:
    cfg = SPACE.suggest(trial)
    return (cfg["x"] - 0.3) ** 2 + cfg.get("k", 0) * 0.01


def _study(url: str, name: str, n: int = 12, direction: str = "minimize", seed: int = 0):
    study = optuna.create_study(
        study_name=name,
        storage=url,
        direction=direction,
        sampler=optuna.samplers.RandomSampler(seed=seed),
    )
    sign = 1 if direction == "minimize" else -1
    study.optimize(lambda t: sign * _objective(t), n_trials=n)
    return study


@pytest.fixture
def storage(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'past.db'}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    _study(url, "min-a", seed=1)
    _study(url, "max-b", direction="maximize", seed=2)
    # another space: different parameter names
    other = optuna.create_study(study_name="other-space", storage=url)
    other.optimize(lambda t: t.suggest_float("lr", 1e-3, 1.0, log=True), n_trials=6)
    # failed and pruned trials mixed in
    mixed = optuna.create_study(study_name="mixed", storage=url)
    for i in range(10):
        t = mixed.ask()
        SPACE.suggest(t)
        if i % 3 == 0:
            mixed.tell(t, state=optuna.trial.TrialState.FAIL)
        elif i % 3 == 1:
            mixed.tell(t, state=optuna.trial.TrialState.PRUNED)
        else:
            mixed.tell(t, 1.0 + i)
    # out of bounds: same names, wider range
    wide = optuna.create_study(study_name="wide", storage=url)
    for i in range(12):
        wide.enqueue_trial({"x": 0.25 * i, "kind": "a"})
        wide.optimize(
            lambda t: (
                t.suggest_float("x", 0, 3) + 0 * len(t.suggest_categorical("kind", ["a", "b"]))
            ),
            n_trials=1,
        )
    mo = optuna.create_study(study_name="multi", storage=url, directions=["minimize"] * 2)
    mo.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=5)
    nan_study = optuna.create_study(study_name="few", storage=url)
    nan_study.optimize(_objective, n_trials=3)
    return url


def test_extracts_usable_studies_and_explains_skips(storage):
    ds = build_metadataset([storage], SPACE)
    names = {t.study for t in ds.tasks}
    assert names == {"min-a", "max-b", "wide"}
    report = ds.report
    skipped = dict((n.split(":")[-1], r) for n, r in report.skipped_studies)
    assert "do not fit the search space" in skipped["other-space"]
    assert "only 3 usable" in skipped["mixed"]
    assert skipped["multi"] == "multi-objective"
    assert "only 3 usable" in skipped["few"]
    assert report.skipped_trials["state FAIL"] == 4
    assert report.skipped_trials["state PRUNED"] == 3
    assert report.skipped_trials["other space"] == 6  # study "other-space": no 'x' or 'kind'
    assert report.ignored_params["lr"] == 6
    # values beyond the YAML's range are data: study "wide" keeps all 12 trials (x up to
    # 2.75), and the prior's coordinates cover them
    wide = next(t for t in ds.tasks if t.study == "wide")
    assert wide.n == 12 and wide.values.max() == pytest.approx(2.75)
    x = ds.features.lookup("x")
    assert (x.low, x.high) == (0.0, 3.0) and wide.x[:, 0].max() <= 1.0
    assert report.params["x"] == {"studies": 3, "trials": 36}
    lines = "\n".join(report.lines())
    assert "used 3 studies" in lines and "skipped study" in lines


def test_direction_aware_targets(storage):
    ds = build_metadataset([storage], SPACE, studies=["min-a", "max-b", "wide"], min_trials=2)
    for task in ds.tasks:
        best = int(
            np.argmin(task.values) if task.direction == "minimize" else np.argmax(task.values)
        )
        assert task.z[best] == task.z.min()
        assert task.x.shape == (task.n, 4)  # x, kind one-hot (2), k
    maxed = next(t for t in ds.tasks if t.study == "max-b")
    assert maxed.direction == "maximize"


def test_conditional_params_only_active_ones(storage):
    ds = build_metadataset([storage], SPACE, studies=["min-a", "max-b", "wide"], min_trials=2)
    for task in ds.tasks:
        for cfg in task.configs:
            assert ("k" in cfg) == (cfg["kind"] == "b")


def test_globs_and_errors(tmp_path, storage):
    url2 = f"sqlite:///{tmp_path / 'more.db'}"
    _study(url2, "min-c", seed=3)
    files = expand_sources([str(tmp_path / "*.db")])
    assert [f.split("/")[-1] for f in files] == ["more.db", "past.db"]
    ds = build_metadataset([str(tmp_path / "*.db")], SPACE)
    assert len(ds.tasks) == 4
    with pytest.raises(MetaDatasetError, match="matches no file"):
        expand_sources([str(tmp_path / "nothing-*.db")])
    with pytest.raises(MetaDatasetError, match=r"not found"):
        build_metadataset([storage], SPACE, studies=["nope"])
    with pytest.raises(MetaDatasetError, match="too little past data: 1 usable studies"):
        build_metadataset([storage], SPACE, studies=["min-a"])
    (tmp_path / "junk.db").write_bytes(b"hello, not sqlite")
    with pytest.raises(MetaDatasetError, match="not an SQLite database"):
        build_metadataset([str(tmp_path / "junk.db")], SPACE)


def test_one_study_named_three_ways_is_one_task(tmp_path, storage, monkeypatch):
    monkeypatch.chdir(tmp_path)
    same = ["past.db", "./past.db", f"sqlite:///{tmp_path / 'past.db'}"]
    assert len(expand_sources(same)) == 1
    ds = build_metadataset(same, SPACE)
    names = [t.name for t in ds.tasks]
    assert len(names) == len(set(names)) == 3


def test_files_that_share_a_name_keep_their_tasks_apart(tmp_path):
    for folder, seed in (("a", 1), ("b", 2), ("c", 3)):
        (tmp_path / folder).mkdir()
        _study(f"sqlite:///{tmp_path / folder / 'study.db'}", "s", seed=seed)
    ds = build_metadataset([str(tmp_path / "*" / "study.db")], SPACE)
    names = [t.name for t in ds.tasks]
    assert len(names) == len(set(names)) == 3
    assert all(n.endswith("/study.db:s") for n in names)


def test_read_is_read_only(tmp_path, storage):
    import os

    db = tmp_path / "past.db"
    before = db.read_bytes()
    os.chmod(db, 0o444)
    try:
        build_metadataset([str(db)], SPACE)
    finally:
        os.chmod(db, 0o644)
    assert db.read_bytes() == before


@given(
    st.lists(st.integers(-1000, 1000), min_size=1, max_size=50),
    st.floats(0.01, 100),
    st.floats(-100, 100),
)
def test_rank_normalize_is_scale_free_and_ordered(values, a, b):
    v = np.array(values, dtype=float) / 7.0  # distinct values stay distinct after a*v + b
    z = rank_normalize(v)
    assert np.allclose(rank_normalize(a * v + b), z)
    assert np.allclose(rank_normalize(-v, "maximize"), z)
    order = np.argsort(v, kind="stable")
    assert np.all(np.diff(z[order]) >= -1e-12)
    bound = math.sqrt(2) * 4
    assert np.all(np.abs(z) < bound)


def test_rank_normalize_robust_to_outliers():
    v = np.array([0.1, 0.2, 0.3, 0.4])
    assert np.allclose(rank_normalize(np.append(v, 1e30)), rank_normalize(np.append(v, 0.5)))
    with pytest.raises(ValueError, match="finite"):
        rank_normalize(np.array([1.0, np.nan]))


def test_reading_a_wal_database_leaves_no_file_behind(tmp_path):
    from tuner.studies import open_storage

    folder = tmp_path / "past"
    folder.mkdir()
    for i in range(3):  # mttune run's storages are in WAL mode
        storage = open_storage(str(folder / f"s{i}.db"))
        _study(storage, f"wal-{i}", seed=i)
        storage.engine.dispose()
    for f in folder.glob("*-*"):  # what a finished writer may leave: not ours to keep
        f.unlink()
    before = sorted(p.name for p in folder.iterdir())
    folder.chmod(0o555)
    try:
        ds = build_metadataset([str(folder / "*.db")], SPACE)
    finally:
        folder.chmod(0o755)
    assert len(ds.tasks) == 3
    assert sorted(p.name for p in folder.iterdir()) == before


def _drifting_history(tmp_path) -> list[str]:
    """Plain-Optuna define-by-run studies whose spaces drifted (no YAML anywhere)."""
    urls = []
    for i, (high, log, extra) in enumerate(
        [(0.3, True, False), (0.1, True, True), (0.2, False, True)]
    ):
        url = f"sqlite:///{tmp_path / f'h{i}.db'}"
        urls.append(url)

        def objective(trial, high=high, log=log, extra=extra):
            lr = trial.suggest_float("lr", 1e-4, high, log=log)
            opt = trial.suggest_categorical("optimizer", ["adam", "sgd"])
            m = trial.suggest_float("momentum", 0.0, 0.99) if opt == "sgd" else 0.0
            ls = trial.suggest_float("label_smoothing", 0.0, 0.2) if extra else 0.0
            return (math.log10(lr) + 2) ** 2 + m + ls

        study = optuna.create_study(
            study_name=f"h{i}", storage=url, sampler=optuna.samplers.RandomSampler(seed=i)
        )
        study.optimize(objective, n_trials=20)
    return urls


def test_studies_whose_spaces_drifted_are_pooled_without_a_space(tmp_path):
    urls = _drifting_history(tmp_path)
    ds = build_metadataset(urls)
    assert len(ds.tasks) == 3 and sum(t.n for t in ds.tasks) == 60  # no trial skipped
    space = ds.space
    assert space.names == ["lr", "optimizer", "momentum", "label_smoothing"]
    lr = space.params["lr"].distribution
    assert (lr.low, lr.high, lr.log) == (1e-4, 0.3, True)  # union of ranges, log kept
    cond = space.params["momentum"].condition
    assert cond is not None and (cond.parent, cond.values) == ("optimizer", ("sgd",))
    assert space.params["label_smoothing"].condition is None
    # label_smoothing is missing from the first study although active: a presence column
    assert ds.features.lookup("label_smoothing").masked
    assert not ds.features.lookup("momentum").masked  # its absence is the condition's
    first = next(t for t in ds.tasks if t.study == "h0")
    col = ds.features.columns("label_smoothing")
    assert (first.x[:, col.stop - 1] == 0).all()
    assert ds.report.params["label_smoothing"] == {"studies": 2, "trials": 40}
    assert ds.report.space_from == "3 studies"
    assert any("'lr': ranges pooled" in n for n in ds.report.notes)


def test_infer_space_writes_a_space_that_loads(tmp_path):
    from tuner.metadataset import infer_space

    space, report = infer_space(_drifting_history(tmp_path))
    again = parse_space(space.to_yaml())
    assert again == space and again.params["momentum"].condition is not None
    assert len(report.sources) == 3
