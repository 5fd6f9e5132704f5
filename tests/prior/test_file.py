"""The prior file: round trip, and every kind of wrong, truncated or hostile file."""

from __future__ import annotations

import copy
import json
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.prior.conftest import SPACE
from tuner.prior import PriorFileError, load_prior, save_prior


@pytest.fixture
def saved(bowl_prior, tmp_path):
    return save_prior(bowl_prior, tmp_path / "bowl.prior.safetensors")


def test_round_trip_keeps_predictions_and_metadata(bowl_prior, saved):
    loaded = load_prior(saved)
    configs = [{"a": 0.1, "b": 0.9}, {"a": 0.3, "b": 0.7}]
    observed = [({"a": 0.5, "b": 0.5}, 0.2), ({"a": 0.2, "b": 0.6}, 0.05)]
    p1 = bowl_prior.predict(configs, observed)
    p2 = loaded.predict(configs, observed)
    np.testing.assert_allclose(p1.mean, p2.mean, rtol=1e-6)
    np.testing.assert_allclose(p1.std, p2.std, rtol=1e-6)
    assert loaded.space == bowl_prior.space
    assert loaded.info == json.loads(json.dumps(bowl_prior.info))
    assert loaded.calibration == bowl_prior.calibration
    np.testing.assert_allclose(loaded.portfolio, bowl_prior.portfolio, rtol=1e-6)
    assert loaded.zero_shot(2) == bowl_prior.zero_shot(2)


@pytest.mark.parametrize("magic", [b"\x80", b"PK"], ids=["pickle", "zip"])
def test_header_length_that_looks_like_pickle_or_zip_magic_loads(bowl_prior, tmp_path, magic):
    """A header of 128 + 256 k bytes starts with 0x80 (pickle's first opcode), one of
    19280 + 65536 k bytes with "PK" (zip): both are real priors and load."""
    prior = copy.copy(bowl_prior)
    path = tmp_path / "p.safetensors"

    def header_start(pad: int) -> bytes:
        prior.info = {**bowl_prior.info, "pad": "x" * pad}
        save_prior(prior, path)
        return path.read_bytes()[:8]

    base = struct.unpack("<Q", header_start(0))[0]
    want = int.from_bytes(magic, "little")
    modulus = 256 ** len(magic)
    gap = (want - base) % modulus
    starts = {pad: header_start(pad) for pad in range(max(gap - 8, 0), gap + 8)}
    pad = next(p for p, head in starts.items() if head.startswith(magic))
    header_start(pad)
    assert load_prior(path).info["pad"] == "x" * pad


def _expect_error(path, needle):
    with pytest.raises(PriorFileError) as e:
        load_prior(path)
    assert needle in str(e.value), str(e.value)
    assert str(path) in str(e.value)


def test_missing_empty_and_random_bytes(tmp_path):
    _expect_error(tmp_path / "nope.safetensors", "not found")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    _expect_error(empty, "empty")
    noise = tmp_path / "noise.safetensors"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    _expect_error(noise, "not a readable safetensors prior")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_files(saved, tmp_path, keep):
    data = saved.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(PriorFileError):
        load_prior(cut)


def test_absurd_header_length(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    _expect_error(bad, "not a readable safetensors prior")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_never_executes(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    _expect_error(evil, "pickle")
    assert not marker.exists()
    # the same payload inside a torch.save zip
    zipped = tmp_path / "evil2.safetensors"
    torch.save({"x": _Payload(marker)}, zipped)
    _expect_error(zipped, "pickle/zip")
    assert not marker.exists()
    # python source disguised as a prior
    code = tmp_path / "evil3.safetensors"
    code.write_text(f"import os; os.system('touch {marker}')\n")
    _expect_error(code, "not a readable safetensors prior")
    assert not marker.exists()


def _rewrite(saved, tmp_path, *, meta=None, tensors=None):
    from safetensors import safe_open

    with safe_open(str(saved), "pt") as f:
        header = dict(f.metadata())
    t = load_file(str(saved))
    if tensors is not None:
        tensors(t)
    if meta is not None:
        m = json.loads(header["mttune"])
        meta(m)
        header["mttune"] = json.dumps(m)
    out = tmp_path / "tampered.safetensors"
    save_file(t, str(out), metadata=header)
    return out


def test_shapes_that_contradict_the_metadata(saved, tmp_path):
    def grow(m):
        m["model"]["hidden"] = 64

    _expect_error(_rewrite(saved, tmp_path, meta=grow), "but the metadata implies")


def test_huge_settings_in_the_header_are_refused_before_any_allocation(saved, tmp_path):
    def huge(m):
        m["model"]["hidden"] = 200_000  # a 160 GB network, were it built

    _expect_error(_rewrite(saved, tmp_path, meta=huge), "hidden must be in 1..4096")

    def big(m):
        m["model"]["hidden"] = 4096
        m["model"]["layers"] = 8  # allowed settings, but not the tensors in the file

    _expect_error(_rewrite(saved, tmp_path, meta=big), "but the metadata implies")


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda i: i.update(sources="oops"), "'info.sources' must be an object"),
        (lambda i: i["sources"].update(used=[1]), "'info.sources.used' must be a list"),
        (lambda i: i["splits"].update(train="t0"), "'info.splits.train' must be a list"),
        (lambda i: i["splits"].update(degraded="no"), "'info.splits.degraded' must be"),
        (lambda i: i.update(tasks={"train": "t0"}), "'info.tasks.train' must be a list"),
        (
            lambda i: i["calibration_check"]["held_out"].update(coverage_95="most"),
            "'info.calibration_check.held_out.coverage_95' must be a number",
        ),
        (lambda i: i["validation"]["0-shot"].pop("mse"), "'info.validation.0-shot.mse'"),
        (lambda i: i["versions"].update(torch=2), "'info.versions'"),
        (lambda i: i.update(early_strategy={"choice": "x"}), "'info.early_strategy.choice'"),
        (
            lambda i: i.update(early_strategy={"measured_choice": "tpe"}),
            "'info.early_strategy.measured_choice' must be one of",
        ),
        (
            lambda i: i.update(early_strategy={"reason": ["kept"]}),
            "'info.early_strategy.reason' must be a string",
        ),
        (
            lambda i: i.update(early_strategy={"mean_regret": {"model": "low"}}),
            "'info.early_strategy.mean_regret' must map strategies to numbers",
        ),
    ],
)
def test_tampered_provenance_is_a_clear_error(saved, tmp_path, edit, needle):
    """``prior show``, ``run --prior`` and ``review`` read these fields: typed at load."""
    _expect_error(_rewrite(saved, tmp_path, meta=lambda m: edit(m["info"])), needle)


def test_missing_and_extra_tensors(saved, tmp_path):
    key = next(k for k in load_file(str(saved)) if k.startswith("params."))
    _expect_error(_rewrite(saved, tmp_path, tensors=lambda t: t.pop(key)), "is missing")

    def add(t):
        t["surprise"] = torch.zeros(1)

    _expect_error(_rewrite(saved, tmp_path, tensors=add), "unexpected tensors")


def test_non_finite_weights(saved, tmp_path):
    def poison(t):
        k = next(k for k in t if k.startswith("params."))
        t[k] = t[k].clone()
        t[k].view(-1)[0] = float("nan")

    _expect_error(_rewrite(saved, tmp_path, tensors=poison), "NaN or inf")


def test_tampered_space_and_metadata(saved, tmp_path):
    def widen(m):
        m["space"]["params"]["a"]["high"] = 5.0

    _expect_error(_rewrite(saved, tmp_path, meta=widen), "hash does not match")

    def bad_space(m):
        m["space"]["params"]["a"]["low"] = 9.0

    _expect_error(_rewrite(saved, tmp_path, meta=bad_space), "stored search space is invalid")

    def other_format(m):
        m["format"] = "mttune-prior/99"

    _expect_error(_rewrite(saved, tmp_path, meta=other_format), "not supported")

    def bad_model(m):
        m["model"]["ensemble"] = -1

    _expect_error(_rewrite(saved, tmp_path, meta=bad_model), "invalid model/MAML settings")

    def bad_cal(m):
        m["calibration"]["a"] = ["x"]

    _expect_error(_rewrite(saved, tmp_path, meta=bad_cal), "invalid calibration")


def test_foreign_safetensors_file(tmp_path):
    foreign = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    _expect_error(foreign, "without mttune metadata")
    bad_json = tmp_path / "badjson.safetensors"
    save_file({"w": torch.zeros(2)}, str(bad_json), metadata={"mttune": "{not json"})
    _expect_error(bad_json, "not valid JSON")


def test_saved_prior_is_readable_as_the_umask_allows(bowl_prior, tmp_path):
    """safetensors writes 0600; a prior is shared with a team, so it follows the umask."""
    old = os.umask(0o022)
    try:
        path = save_prior(bowl_prior, tmp_path / "shared.safetensors")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_features_and_portfolio_configs_round_trip(bowl_prior, saved):
    loaded = load_prior(saved)
    assert loaded.features == bowl_prior.features
    assert loaded.portfolio_configs == json.loads(json.dumps(bowl_prior.portfolio_configs))
    assert [f.name for f in loaded.features] == SPACE.names


def test_a_format_1_file_still_loads_with_the_features_of_its_space(bowl_prior, saved, tmp_path):
    """Files written before priors knew parameters by name: one space's unit cube."""

    def downgrade(m):
        m["format"] = "mttune-prior/1"
        del m["features"], m["portfolio_configs"]

    old = load_prior(_rewrite(saved, tmp_path, meta=downgrade))
    assert old.features == bowl_prior.features
    configs = [{"a": 0.1, "b": 0.9}, {"a": 0.3, "b": 0.7}]
    np.testing.assert_allclose(
        old.predict(configs).mean, bowl_prior.predict(configs).mean, rtol=1e-6
    )
    # its portfolio configs are decoded from the unit cube
    assert len(old.portfolio_configs) == len(bowl_prior.portfolio)
    for c, ref in zip(old.portfolio_configs, bowl_prior.portfolio_configs, strict=True):
        assert c == pytest.approx(ref, abs=1e-6)


def test_an_unknown_format_says_how_to_fix_it(saved, tmp_path):
    bumped = _rewrite(saved, tmp_path, meta=lambda m: m.update(format="mttune-prior/9"))
    _expect_error(bumped, "Meta-train the prior again")


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda m: m.update(features="a, b"), "metadata 'features' has the wrong type"),
        (lambda m: m["features"][0].update(kind="tensor"), "stored features are invalid"),
        (lambda m: m["features"][0].update(low="x"), "stored features are invalid"),
        (lambda m: m["features"].pop(), "without features"),
        (lambda m: m["portfolio_configs"].pop(), "'portfolio_configs' must be"),
        (lambda m: m["portfolio_configs"][0].update(a=[1, 2]), "'portfolio_configs' must be"),
    ],
)
def test_tampered_features_are_a_clear_error(saved, tmp_path, edit, needle):
    _expect_error(_rewrite(saved, tmp_path, meta=edit), needle)


def test_a_meta_sgd_prior_round_trips_with_its_per_weight_step_sizes(tmp_path):
    from tests.prior.conftest import SMALL_MODEL, bowl_family
    from tuner.prior import MAMLConfig, meta_train

    maml = MAMLConfig(max_steps=20, val_every=10, meta_batch=4, inner_lr_shape="element")
    prior = meta_train(bowl_family(6, 30, seed=4), model=SMALL_MODEL, maml=maml, seed=0)
    loaded = load_prior(save_prior(prior, tmp_path / "metasgd.safetensors"))
    assert loaded.maml.inner_lr_shape == "element"
    for name, value in prior.log_lrs.items():
        assert torch.equal(loaded.log_lrs[name], value)
    configs = [{"a": 0.1, "b": 0.9}, {"a": 0.3, "b": 0.7}]
    observed = [({"a": 0.5, "b": 0.5}, 0.2), ({"a": 0.2, "b": 0.6}, 0.05)]
    np.testing.assert_allclose(
        loaded.predict(configs, observed).mean, prior.predict(configs, observed).mean, rtol=1e-6
    )


def test_a_file_from_before_inner_lr_shape_loads_with_per_tensor_step_sizes(
    bowl_prior, saved, tmp_path
):
    def downgrade(m):
        del m["maml"]["inner_lr_shape"]

    old = load_prior(_rewrite(saved, tmp_path, meta=downgrade))
    assert old.maml.inner_lr_shape == "tensor"
    configs = [{"a": 0.1, "b": 0.9}]
    observed = [({"a": 0.5, "b": 0.5}, 0.2), ({"a": 0.2, "b": 0.6}, 0.05)]
    np.testing.assert_allclose(
        old.predict(configs, observed).mean, bowl_prior.predict(configs, observed).mean, rtol=1e-6
    )


def test_a_file_from_before_context_lr_loads_with_a_context_step_size_of_1(saved, tmp_path):
    def downgrade(m):
        del m["maml"]["context_lr"]

    assert load_prior(_rewrite(saved, tmp_path, meta=downgrade)).maml.context_lr == 1.0


def test_step_sizes_of_the_wrong_shape_for_inner_lr_shape(saved, tmp_path):
    def claim_element(m):
        m["maml"]["inner_lr_shape"] = "element"

    _expect_error(
        _rewrite(saved, tmp_path, meta=claim_element),
        "'log_lr.net.0.weight' has shape (3,), but maml.inner_lr_shape 'element' implies",
    )

    def unknown(m):
        m["maml"]["inner_lr_shape"] = "row"

    _expect_error(_rewrite(saved, tmp_path, meta=unknown), "inner_lr_shape must be one of")


def test_a_cavia_prior_round_trips_and_its_shapes_are_checked(tmp_path):
    from tests.prior.conftest import SMALL_MODEL, bowl_family
    from tuner.prior import MAMLConfig, meta_train

    maml = MAMLConfig(max_steps=20, val_every=10, meta_batch=4, context=3)
    prior = meta_train(bowl_family(6, 30, seed=5), model=SMALL_MODEL, maml=maml, seed=0)
    saved = save_prior(prior, tmp_path / "cavia.safetensors")
    loaded = load_prior(saved)
    assert loaded.maml.context == 3 and set(loaded.log_lrs) == {"context"}
    configs = [{"a": 0.1, "b": 0.9}, {"a": 0.3, "b": 0.7}]
    observed = [({"a": 0.5, "b": 0.5}, 0.2), ({"a": 0.2, "b": 0.6}, 0.05)]
    np.testing.assert_allclose(
        loaded.predict(configs, observed).mean, prior.predict(configs, observed).mean, rtol=1e-6
    )
    out = tmp_path / "edited"
    out.mkdir()
    # a file whose settings say another context size: the first layer does not fit
    wider = _rewrite(saved, out, meta=lambda m: m["maml"].update(context=4))
    _expect_error(wider, "'params.net.0.weight' has shape (3, 32, 5), but the metadata implies")
    # per-element context step sizes claimed, per-member ones stored
    element = _rewrite(saved, out, meta=lambda m: m["maml"].update(inner_lr_shape="element"))
    _expect_error(element, "'log_lr.context' has shape (3,), but maml.inner_lr_shape")


def test_the_portfolio_coverage_round_trips_and_old_files_load_without_it(
    bowl_prior, saved, tmp_path
):
    loaded = load_prior(saved)
    assert bowl_prior.coverage is not None
    np.testing.assert_allclose(loaded.coverage.values, bowl_prior.coverage.values, rtol=1e-6)
    np.testing.assert_array_equal(loaded.coverage.owners, bowl_prior.coverage.owners)

    def drop(t):
        del t["coverage.values"], t["coverage.owners"]

    assert load_prior(_rewrite(saved, tmp_path, tensors=drop)).coverage is None


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t.pop("coverage.owners"), "come together"),
        (lambda t: t.update({"coverage.values": t["coverage.values"][:-1]}), "must be ("),
        (lambda t: t.update({"coverage.owners": t["coverage.owners"] + 1000}), "owners must"),
        (lambda t: t.update({"coverage.owners": t["coverage.owners"].float()}), "int64"),
        (
            lambda t: t.update({"coverage.values": t["coverage.values"] * float("nan")}),
            "finite float32",
        ),
    ],
)
def test_tampered_coverage_is_a_clear_error(saved, tmp_path, edit, needle):
    _expect_error(_rewrite(saved, tmp_path, tensors=edit), needle)
