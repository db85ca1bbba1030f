"""Model arithmetic: one formula, by hand, and the spec uses it."""

import math

import pytest

from metasel.domain.model import model_numbers, serve_flops
from metasel.spec import MODEL_PRESETS, ModelSpec


def test_parameter_count_by_hand():
    # llama: 2 layers × (attention H·hd·(2·heads + 2·kv) + 3-matrix MLP 3·H·I + 2 norms H) + untied embeddings 2·V·H
    llama = {"arch": "llama", "layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "intermediate": 128, "vocab": 1000}
    attn, mlp = 64 * 16 * (2 * 4 + 2 * 2), 3 * 64 * 128
    n = model_numbers(llama)
    assert n["params"] == 2 * (attn + mlp + 2 * 64) + 2 * 1000 * 64
    assert n["kv_bytes_per_token"] == 2 * 2 * 2 * 16 * 4.0  # K and V × layers × kv heads × head dim × fp32 bytes
    # gpt2: two MLP matrices and tied embeddings
    gpt2 = {**llama, "arch": "gpt2", "kv_heads": 4}
    attn2 = 64 * 16 * (2 * 4 + 2 * 4)
    assert model_numbers(gpt2)["params"] == 2 * (attn2 + 2 * 64 * 128 + 2 * 64) + 1000 * 64
    # mixture of experts: every expert is a parameter, two of eight are touched per token
    moe = {**llama, "experts": 8, "experts_per_token": 2}
    m = model_numbers(moe)
    assert m["params"] - m["active_params"] == 2 * 6 * mlp
    assert serve_flops(llama, 10, 6, 3) == 2.0 * n["active_params"] * 16 * 3
    assert math.isnan(model_numbers({"arch": "llama"})["params"])  # missing dimensions: unknown, not a guess


@pytest.mark.parametrize("preset", sorted(MODEL_PRESETS))
def test_spec_counts_with_the_domain_formula(preset):
    spec = ModelSpec(**MODEL_PRESETS[preset])
    numbers = model_numbers(MODEL_PRESETS[preset])
    assert spec.num_params() == int(numbers["params"]) and spec.kv_bytes_per_token() == numbers["kv_bytes_per_token"]
    assert spec.head_dim == numbers["head_dim"]  # the presets' dimensions divide evenly


def test_task_features_of_odd_workloads_are_numbers_or_nan():
    from metasel.domain.features import task_features

    model = {"arch": "llama", "layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "intermediate": 128, "vocab": 1000}
    f = task_features({"model": model, "workload": {"prompt_len": 8, "output_len": 4, "batch_size": 0}})
    assert math.isnan(f["t.sequential_rounds"]) and f["t.arch_llama"] == 1.0
    generic = task_features({"kind": "generic"}, {"x0": "1.5", "x1": "n/a"})  # a generic task's own features
    assert set(generic) == {"f.x0", "f.x1"} and generic["f.x0"] == 1.5 and math.isnan(generic["f.x1"])
