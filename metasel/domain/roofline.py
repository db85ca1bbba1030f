"""Roofline estimates from a task and a hardware: what the physics says before any data."""

from __future__ import annotations

from typing import Any, Mapping

from metasel.domain.model import model_numbers
from metasel.domain.numbers import log_or_nan, num
from metasel.domain.workload import workload_numbers


def hardware_totals(hw: Mapping[str, Any]) -> tuple[float, float, float]:
    """(peak TFLOP/s, memory bandwidth GB/s, memory GB) of a hardware's specs, all devices together (NaN if unknown)."""
    count = num(hw.get("count"), 1.0)
    peak = num(hw.get("total_tflops"), num(hw.get("peak_tflops")) * (count if hw.get("device") != "cpu" else 1.0))
    bw = num(hw.get("total_mem_bw_gbs"), num(hw.get("mem_bw_gbs")) * count)
    mem = num(hw.get("total_memory_gb"), num(hw.get("accelerator_memory_gb"), num(hw.get("memory_gb"))))
    return peak, bw, mem


def analytic_features(spec: Mapping[str, Any], hw: Mapping[str, Any]) -> dict[str, float]:
    """Roofline features (``a.*``): FLOPs per token, weight and KV bytes, prefill and decode times, memory fit."""
    model, workload = spec.get("model"), spec.get("workload")
    if not isinstance(model, Mapping) or not isinstance(workload, Mapping) or not hw:
        return {}
    nums = model_numbers(model)
    p_mean, _, out_len, batch, reqs = workload_numbers(workload)
    peak, bw, mem = hardware_totals(hw)
    peak, bw, mem = peak * 1e12, bw * 1e9, mem * 2**30
    if not bw == bw:  # unknown bandwidth (CPUs): a nominal 20 GB/s per thread, capped at 100 GB/s
        bw = min(20e9 * num(hw.get("threads"), 1.0), 100e9)
    flops_tok = 2.0 * nums["active_params"]
    weight_bytes = nums["params"] * nums["bytes_per_weight"]
    kv_bytes = nums["kv_bytes_per_token"] * (p_mean + out_len) * batch
    prefill = flops_tok * p_mean * reqs / peak
    rounds = max(reqs / batch, 1.0)
    step = max((weight_bytes + kv_bytes) / bw, flops_tok * batch / peak)
    decode = step * out_len * rounds
    total = prefill + decode
    return {
        "a.log_flops_per_token": log_or_nan(flops_tok), "a.log_weight_bytes": log_or_nan(weight_bytes),
        "a.log_kv_cache_bytes": log_or_nan(kv_bytes), "a.log_prefill_s": log_or_nan(prefill),
        "a.log_decode_step_s": log_or_nan(step), "a.log_total_s": log_or_nan(total),
        "a.log_roofline_tok_s": log_or_nan(out_len * reqs / total),
        "a.memory_fit": (weight_bytes + kv_bytes) / mem if mem == mem and mem > 0 else float("nan"),
        "a.decode_bound": float((weight_bytes + kv_bytes) / bw > flops_tok * batch / peak),
    }
