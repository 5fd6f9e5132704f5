"""Fuzzing the two parsers that read user input: search-space files and script output."""

from __future__ import annotations

import yaml
from hypothesis import given
from hypothesis import strategies as st

from tuner.runners._protocol import ScriptSpec, _Run, parse_metrics_line
from tuner.space import SearchSpace, SpaceError, parse_space

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)

param_specs = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["float", "int", "categorical", "double", 3, None]),
        "low": json_values,
        "high": json_values,
        "log": json_values,
        "step": json_values,
        "choices": json_values,
        "condition": json_values,
    },
)


@given(st.text(max_size=300))
def test_space_parser_on_arbitrary_text(text):
    try:
        space = parse_space(text)
    except SpaceError as e:
        assert str(e).startswith("<string>")
    else:
        assert isinstance(space, SearchSpace)


@given(
    st.dictionaries(st.sampled_from(["a", "b", "c", "lr"]), param_specs, max_size=4), json_values
)
def test_space_parser_on_structured_garbage(params, objective):
    text = yaml.safe_dump({"objective": objective, "params": params})
    try:
        space = parse_space(text)
    except SpaceError:
        return
    # whatever parses must round-trip and validate its own configs
    assert parse_space(space.to_yaml()) == space


@given(st.text(max_size=500))
def test_metrics_line_parser_never_raises(line):
    record = parse_metrics_line(line)
    assert record is None or isinstance(record, dict)


@given(st.lists(st.binary(max_size=300), max_size=12), st.integers(0, 1))
def test_output_stream_parser_never_raises(chunks, exit_code):
    spec = ScriptSpec(path=__file__, form="command", objective="loss")  # type: ignore[arg-type]
    run = _Run(spec, on_report=lambda step, value: False, max_output_bytes=2048)
    for chunk in chunks:
        run.feed_stdout(chunk)
    run.feed_stdout(b"", final=True)
    outcome = run.outcome(exit_code, 0.1)
    assert outcome.state in ("complete", "failed", "pruned")
    if outcome.state == "complete":
        assert outcome.value is not None and outcome.value == outcome.value  # not NaN
    else:
        assert outcome.reason


@given(
    st.lists(
        st.sampled_from(
            [
                b'{"step": 1, "loss": 0.5}\n',
                b'{"loss": 0.25}\n',
                b"noise\n",
                b'{"loss": NaN}\n',
                b'{"step": "x", "loss": 1}\n',
                b'{"loss": "high"}\n',
                b"\xff\xfe",
                b"{",
                b"}\n",
            ]
        ),
        max_size=10,
    )
)
def test_output_parser_on_plausible_lines(chunks):
    spec = ScriptSpec(path=__file__, form="command", objective="loss")  # type: ignore[arg-type]
    run = _Run(spec, on_report=None, max_output_bytes=1 << 20)
    for chunk in chunks:
        run.feed_stdout(chunk)
    run.feed_stdout(b"", final=True)
    outcome = run.outcome(0, 0.1)
    finals = [
        c for c in chunks if c in (b'{"loss": 0.25}\n', b'{"loss": NaN}\n', b'{"loss": "high"}\n')
    ]
    if not finals and not any(c == b'{"step": 1, "loss": 0.5}\n' for c in chunks):
        assert outcome.state == "failed"
