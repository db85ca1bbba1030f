"""Named numeric features of tasks, hardware and methods, and their text descriptions.

Task features come from the spec (model dimensions, workload statistics) or, for a
generic algorithm-selection task, from its own feature columns (``f.*``); hardware
features from its specs; method features from its technique vector. The descriptions are
what text embeddings are made of.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from metasel.domain.model import model_numbers
from metasel.domain.numbers import log_or_nan, num
from metasel.domain.roofline import hardware_totals
from metasel.domain.workload import prompt_stats, workload_numbers

#: one indicator feature per architecture (this order fixes the feature columns)
ARCH_FEATURES: tuple[str, ...] = ("llama", "qwen2", "mistral", "mixtral", "gpt2", "gemma", "opt", "bloom", "gptj", "deci")


def task_features(spec: Mapping[str, Any], features: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Numeric features of a task descriptor (inference spec, or a generic task's own features)."""
    out: dict[str, float] = {}
    for k, v in (features or {}).items():
        out[f"f.{k}"] = num(v)
    model, workload = spec.get("model"), spec.get("workload")
    if not isinstance(model, Mapping) or not isinstance(workload, Mapping):
        return out
    nums = model_numbers(model)
    p_mean, p_max, out_len, batch, reqs = workload_numbers(workload)
    out.update({
        "t.log_params": log_or_nan(nums["params"]), "t.log_active_params": log_or_nan(nums["active_params"]),
        "t.log_layers": log_or_nan(num(model.get("layers"))), "t.log_hidden": log_or_nan(num(model.get("hidden"))),
        "t.log_heads": log_or_nan(num(model.get("heads"))), "t.log_kv_heads": log_or_nan(num(model.get("kv_heads"))),
        "t.gqa_ratio": num(model.get("heads")) / max(num(model.get("kv_heads"), 1.0), 1.0),
        "t.log_intermediate": log_or_nan(num(model.get("intermediate"))), "t.log_vocab": log_or_nan(num(model.get("vocab"))),
        "t.bytes_per_weight": nums["bytes_per_weight"], "t.log_kv_bytes_per_token": log_or_nan(nums["kv_bytes_per_token"]),
        "t.experts": num(model.get("experts"), 1.0),
        "t.log_prompt_mean": log_or_nan(p_mean), "t.log_prompt_max": log_or_nan(p_max),
        "t.prompt_spread": (p_max - p_mean) / p_mean if p_mean and p_mean == p_mean else 0.0,
        "t.log_output": log_or_nan(out_len), "t.log_batch": log_or_nan(batch), "t.log_requests": log_or_nan(reqs),
        "t.sequential_rounds": log_or_nan(reqs / batch) if batch else math.nan,
        "t.shared_prefix": num(workload.get("shared_prefix"), 0.0),
        "t.log_prompt_tokens": log_or_nan(p_mean * reqs), "t.log_generated_tokens": log_or_nan(out_len * reqs),
    })
    for arch in ARCH_FEATURES:
        out[f"t.arch_{arch}"] = float(model.get("arch") == arch)
    return out


def hardware_features(specs: Mapping[str, Any]) -> dict[str, float]:
    """Numeric features of a hardware descriptor's specs."""
    if not specs:
        return {}
    count = num(specs.get("count"), 1.0)
    peak, bw, mem = hardware_totals(specs)
    device = str(specs.get("device", ""))
    out = {
        "h.log_peak_tflops": log_or_nan(peak), "h.log_mem_bw_gbs": log_or_nan(bw), "h.log_memory_gb": log_or_nan(mem),
        "h.log_count": log_or_nan(count), "h.log_threads": log_or_nan(num(specs.get("threads"))),
        "h.log_cores": log_or_nan(num(specs.get("cores"))),
        "h.is_cpu": float(device == "cpu"), "h.is_gpu": float(device in ("cuda", "gpu")),
        "h.is_accelerator": float(device == "accelerator"),
        "h.avx512": float(specs.get("isa") == "avx512"), "h.bf16_isa": float(bool(specs.get("avx512_bf16"))),
    }
    for vendor in ("nvidia", "amd", "intel", "intel-habana", "sambanova"):
        out[f"h.vendor_{vendor}"] = float(specs.get("vendor") == vendor)
    return out


def method_features(techniques: Mapping[str, Any]) -> dict[str, float]:
    return {f"m.{k}": num(v, 0.0) for k, v in techniques.items()}


def describe_task(name: str, spec: Mapping[str, Any]) -> str:
    model, workload = spec.get("model"), spec.get("workload")
    if not isinstance(model, Mapping) or not isinstance(workload, Mapping):
        return f"task {name}"
    nums = model_numbers(model)
    p_mean, _ = prompt_stats(workload.get("prompt_len"))
    text = (f"{model.get('hf_id') or model.get('arch')} language model with {nums['params'] / 1e6:.0f} million parameters, "
            f"{model.get('layers')} layers, {model.get('dtype', 'float32')} weights; serving prompts of about "
            f"{p_mean:.0f} tokens, generating {workload.get('output_len')} tokens, batch size {workload.get('batch_size')}, "
            f"{num(workload.get('shared_prefix'), 0):.0%} shared prefix")
    if workload.get("domain"):
        text += f"; text domain: {workload['domain']}"
    return text


def describe_hardware(name: str, specs: Mapping[str, Any]) -> str:
    bits = [str(name)]
    for key in ("gpu", "accelerator", "cpu_model", "vendor"):
        if specs.get(key):
            bits.append(f"{key} {specs[key]}")
    for key in ("count", "threads", "memory_gb", "peak_tflops", "mem_bw_gbs"):
        if specs.get(key) is not None:
            bits.append(f"{key.replace('_', ' ')} {specs[key]}")
    return ", ".join(bits)


def describe_method(name: str, description: str) -> str:
    return f"inference method {name}: {description}" if description else f"inference method {name}"
