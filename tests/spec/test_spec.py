import pytest

from metasel import InputDataError
from metasel.spec import MODEL_PRESETS, ModelSpec, load_grid_spec, load_task_spec, parse_grid_spec, parse_task_spec

BASE = {"model": {"preset": "llama-5m"}, "workload": {"prompt_len": 32, "output_len": 8}}


def test_example_specs_load(tmp_path):
    from tests.conftest import ROOT

    spec = load_task_spec(ROOT / "examples" / "llama_chat.yaml")
    assert spec.model.arch == "llama" and spec.workload.batch_size == 4
    assert spec.workload.prompt_len.dist == "uniform" and spec.workload.prompt_len.upper() == 96
    assert spec.objective.direction == "max" and spec.objective.max_memory_mb == 4000
    grid = load_grid_spec(ROOT / "examples" / "tiny_grid.yaml")
    assert len(grid.tasks) == 2 and grid.methods == ("baseline", "sdpa", "static_batching")


def test_task_id_ignores_hardware_objective_budget_and_name():
    a = parse_task_spec(BASE)
    b = parse_task_spec({**BASE, "name": "x", "hardware": {"name": "box", "threads": 2},
                         "objective": {"metric": "latency_ms"}, "budget": {"benchmarks": 3}})
    assert a.task_id == b.task_id
    c = parse_task_spec({**BASE, "workload": {**BASE["workload"], "batch_size": 2}})
    assert c.task_id != a.task_id
    assert b.objective.direction == "min"


def test_explicit_dims_equal_preset():
    dims = {k: v for k, v in MODEL_PRESETS["llama-5m"].items()}
    a = parse_task_spec({**BASE, "model": dims})
    assert a.task_id == parse_task_spec(BASE).task_id


def test_model_arithmetic():
    m = ModelSpec(arch="llama", layers=2, hidden=64, heads=4, kv_heads=2, intermediate=128, vocab=100)
    # attention: 64*16*(4*2+2*2)=12288, mlp: 3*64*128=24576, norms 128 -> per layer 36992; emb 2*100*64
    assert m.num_params() == 2 * 36992 + 12800
    assert m.kv_bytes_per_token() == 2 * 2 * 2 * 16 * 4


def test_length_distributions_sample_in_range():
    import numpy as np

    spec = parse_task_spec({**BASE, "workload": {"prompt_len": {"dist": "lognormal", "mean": 50, "std": 20, "min": 10, "max": 90},
                                                 "output_len": 4}})
    xs = spec.workload.prompt_len.sample(np.random.default_rng(0), 500)
    assert min(xs) >= 10 and max(xs) <= 90 and 40 < np.mean(xs) < 60


def test_grid_expansion_with_exclusions():
    grid = parse_grid_spec({
        "base": BASE,
        "axes": {"model.preset": ["llama-5m", "gpt2-5m"], "workload.batch_size": [1, 2, 4]},
        "exclude": [{"model.preset": "gpt2-5m", "workload.batch_size": 4}],
        "repeats": 3,
    }, source="g.yaml")
    assert len(grid.tasks) == 5
    assert {(t.model.name, t.workload.batch_size) for t in grid.tasks} == {
        ("llama-5m", 1), ("llama-5m", 2), ("llama-5m", 4), ("gpt2-5m", 1), ("gpt2-5m", 2)}
    assert len({t.task_id for t in grid.tasks}) == 5


@pytest.mark.parametrize("raw, message", [
    ({**BASE, "workload": {"prompt_len": 32, "output_len": "many"}}, "workload.output_len: expected a positive integer, got 'many'"),
    ({**BASE, "workload": {"prompt_len": 32}}, "workload.output_len: required field is missing"),
    ({**BASE, "modle": {}}, "modle: unknown key"),
    ({**BASE, "model": {"preset": "gpt-9"}}, "model.preset: expected one of"),
    ({**BASE, "model": {"arch": "llama", "layers": 2}}, "model.hidden: required field is missing"),
    ({**BASE, "model": {**MODEL_PRESETS["llama-5m"], "heads": 5}}, "model.heads: expected a divisor of hidden"),
    ({**BASE, "workload": {"prompt_len": 32, "output_len": 4, "shared_prefix": 1.5}}, "shared_prefix"),
    ({**BASE, "workload": {"prompt_len": {"dist": "uniform", "min": 9, "max": 3}, "output_len": 4}}, "prompt_len.max: expected at least min"),
    ({**BASE, "objective": {"metric": "speed"}}, "objective.metric"),
    ({**BASE, "hardware": "fast"}, "hardware: expected 'auto'"),
    ({**BASE, "budget": {"benchmarks": -2}}, "budget.benchmarks"),
    ([1, 2], r"\(top level\): expected a mapping"),
])
def test_spec_errors_name_the_field(raw, message):
    with pytest.raises(InputDataError, match=message) as info:
        parse_task_spec(raw, source="spec.yaml")
    assert str(info.value).startswith("spec.yaml: ")
