"""Malformed inputs give one clear line, exit 1, and leave the store byte-for-byte unchanged."""

import hashlib

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metasel import InputDataError
from metasel.cli import main
from metasel.data.importers import read_features_csv, read_generic_csv
from metasel.spec import parse_grid_spec, parse_task_spec

GOOD_SPEC = "model: {preset: llama-5m}\nworkload: {prompt_len: 16, output_len: 4}\n"
GOOD_CSV = "task,method,value\ni1,a,1.0\n"

# (file name, content, extra CLI args); the command is `validate` for .yaml, `import` otherwise.
CASES = [
    ("empty.yaml", b"", []),
    ("blank.yaml", b"   \n\n", []),
    ("binary.yaml", bytes(range(256)) * 4, []),
    ("latin1.yaml", "model: {name: caf\xe9}\n".encode("latin-1"), []),
    ("badyaml.yaml", b"model: {preset: llama-5m\nworkload: [", []),
    ("list.yaml", b"- 1\n- 2\n", []),
    ("scalar.yaml", b"42\n", []),
    ("nomodel.yaml", b"workload: {prompt_len: 16, output_len: 4}\n", []),
    ("noworkload.yaml", b"model: {preset: llama-5m}\n", []),
    ("unknownkey.yaml", (GOOD_SPEC + "colour: red\n").encode(), []),
    ("unknownmodelkey.yaml", b"model: {preset: llama-5m, wings: 2}\nworkload: {prompt_len: 16, output_len: 4}\n", []),
    ("badpreset.yaml", b"model: {preset: llama-1t}\nworkload: {prompt_len: 16, output_len: 4}\n", []),
    ("strlen.yaml", b"model: {preset: llama-5m}\nworkload: {prompt_len: 16, output_len: many}\n", []),
    ("neglen.yaml", b"model: {preset: llama-5m}\nworkload: {prompt_len: -16, output_len: 4}\n", []),
    ("zerobatch.yaml", b"model: {preset: llama-5m}\nworkload: {prompt_len: 16, output_len: 4, batch_size: 0}\n", []),
    ("floatlayers.yaml", b"model: {arch: llama, layers: 2.5, hidden: 64, heads: 4, kv_heads: 2, intermediate: 128, vocab: 100}\nworkload: {prompt_len: 16, output_len: 4}\n", []),
    ("nanprefix.yaml", b"model: {preset: llama-5m}\nworkload: {prompt_len: 16, output_len: 4, shared_prefix: .nan}\n", []),
    ("boolbatch.yaml", b"model: {preset: llama-5m}\nworkload: {prompt_len: 16, output_len: 4, batch_size: true}\n", []),
    ("badarch.yaml", b"model: {arch: transformer9, layers: 2, hidden: 64, heads: 4, kv_heads: 2, intermediate: 128, vocab: 100}\nworkload: {prompt_len: 16, output_len: 4}\n", []),
    ("badmetric.yaml", (GOOD_SPEC + "objective: {metric: vibes}\n").encode(), []),
    ("negprice.yaml", (GOOD_SPEC + "hardware: {name: box, price_per_hour: -1}\n").encode(), []),
    ("baddist.yaml", b"model: {preset: llama-5m}\nworkload: {prompt_len: {dist: zipf, a: 2}, output_len: 4}\n", []),
    ("gridaxis.yaml", (b"base: {model: {preset: llama-5m}, workload: {prompt_len: 16, output_len: 4}}\naxes: {workload.batch_size: 4}\n"), []),
    ("gridbadtask.yaml", (b"base: {model: {preset: llama-5m}, workload: {prompt_len: 16, output_len: 4}}\naxes: {workload.batch_size: [1, -1]}\n"), []),
    ("gridexcludeall.yaml", (b"base: {model: {preset: llama-5m}, workload: {prompt_len: 16, output_len: 4}}\naxes: {workload.batch_size: [1]}\nexclude: [{workload.batch_size: 1}]\n"), []),
    ("empty.csv", b"", []),
    ("binary.csv", b"\x00\x01\x02task,method,value\n", []),
    ("utf16.csv", "task,method,value\ni1,a,1\n".encode("utf-16"), []),
    ("headeronly.csv", b"task,method,value\n", []),
    ("missingcol.csv", b"task,method\ni1,a\n", ["--format", "generic"]),
    ("nan.csv", b"task,method,value\ni1,a,NaN\n", []),
    ("inf.csv", b"task,method,value\ni1,a,inf\n", []),
    ("negative.csv", b"task,method,value\ni1,a,-2\n", []),
    ("text.csv", b"task,method,value\ni1,a,fast\n", []),
    ("emptytask.csv", b"task,method,value\n,a,1\n", []),
    ("badstatus.csv", b"task,method,value,status\ni1,a,,ok\n", []),
    ("extracol.csv", b"task,method,value,colour\ni1,a,1,red\n", []),
    ("ragged.csv", b"task,method,value\ni1,a,1,2,3\n", []),
    ("unknownheader.csv", b"alpha,beta\n1,2\n", []),
    ("dupheader.csv", b"task,method,value,value\ni1,a,1,2\n", ["--format", "generic"]),
    ("badfeatures.csv", GOOD_CSV.encode(), ["--features", "FEATURES"]),
    ("nofolder", None, ["--format", "metasel"]),
    ("llmbench.csv", b"model,hardware,framework,batch_size_semantics\nx,y,z,w\n", []),
]

FEATURES_BAD = b"task,x\ni1,abc\n"


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def populated_store(tmp_path):
    store = tmp_path / "store.sqlite"
    good = tmp_path / "good.csv"
    good.write_text("task,method,value\ni0,a,1\ni0,b,2\n")
    r = CliRunner().invoke(main, ["--store", str(store), "import", str(good), "--objective", "min"])
    assert r.exit_code == 0, r.output
    return store


def test_at_least_thirty_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name, content, args", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_one_line_error_store_unchanged(tmp_path, populated_store, name, content, args):
    target = tmp_path / name
    if content is not None:
        target.write_bytes(content)
    args = [a if a != "FEATURES" else str(tmp_path / "f.csv") for a in args]
    if "--features" in args:
        (tmp_path / "f.csv").write_bytes(FEATURES_BAD)
    before = _digest(populated_store)
    command = ["validate"] if name.endswith(".yaml") else ["import"]
    result = CliRunner().invoke(main, ["--store", str(populated_store), *command, str(target), *args])
    assert result.exit_code == 1, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metasel: error: "), result.stderr
    assert "Traceback" not in result.output
    assert name.split(".")[0] in lines[0] or "FEATURES" in str(args) or "f.csv" in lines[0]
    assert _digest(populated_store) == before


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
