"""Fuzzed specs and CSVs parse or raise InputDataError naming the file; --debug shows the traceback.

The corpus of malformed inputs (one line, exit code, store unchanged) is tests/cli/test_corpus.py."""


import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metasel import InputDataError
from metasel.cli import main
from metasel.data.importers import read_features_csv, read_generic_csv
from metasel.spec import parse_grid_spec, parse_task_spec

def test_debug_shows_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("[1]")
    r = CliRunner().invoke(main, ["--debug", "validate", str(bad)])
    assert r.exit_code != 0 and isinstance(r.exception, InputDataError)


# ------------------------------------------------------------------ fuzzing

json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
spec_keys = st.sampled_from(["model", "workload", "hardware", "objective", "budget", "name", "preset",
                             "prompt_len", "output_len", "batch_size", "shared_prefix", "layers", "dist"])
spec_like = st.dictionaries(spec_keys, json_like | st.dictionaries(spec_keys, json_like, max_size=6), max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_like)
def test_fuzz_task_spec_parses_or_raises_input_error(raw):
    try:
        spec = parse_task_spec(raw, source="fuzz.yaml")
    except InputDataError as exc:
        assert str(exc).startswith("fuzz.yaml")
    else:
        assert spec.task_id.startswith("t-")


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["base", "axes", "exclude", "methods", "repeats"]), json_like, max_size=5))
def test_fuzz_grid_spec(raw):
    try:
        parse_grid_spec(raw, source="g.yaml")
    except InputDataError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.text(alphabet=st.sampled_from(list("task,method,value,status\n01.-ei ok\"")), max_size=200))
def test_fuzz_csv_loaders(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("fz") / "x.csv"
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    for loader in (read_generic_csv, read_features_csv):
        try:
            loader(p)
        except InputDataError as exc:
            assert str(p) in str(exc) or "x.csv" in str(exc)


@settings(max_examples=100, deadline=None)
@given(spec_like)
def test_fuzz_yaml_roundtrip_through_file(tmp_path_factory, raw):
    from metasel.spec import load_task_spec

    p = tmp_path_factory.mktemp("y") / "s.yaml"
    try:
        p.write_text(yaml.safe_dump(raw))
    except (yaml.YAMLError, UnicodeEncodeError):
        return
    try:
        load_task_spec(p)
    except InputDataError as exc:
        assert str(p) in str(exc)
