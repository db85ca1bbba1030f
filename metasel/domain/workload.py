"""Workload statistics from a workload dict (``WorkloadSpec.to_json`` fields)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from metasel.domain.numbers import num


def prompt_stats(p: Any) -> tuple[float, float]:
    """(mean, max) of a prompt-length field (an int or a distribution mapping)."""
    if isinstance(p, Mapping):
        if p.get("dist") == "choice":
            ch = [float(c) for c in p.get("choices", [])] or [float("nan")]
            return float(np.mean(ch)), float(np.max(ch))
        hi = num(p.get("max"))
        if p.get("dist") == "uniform":
            return (num(p.get("min")) + hi) / 2.0, hi
        return num(p.get("mean")), hi
    v = num(p)
    return v, v


def workload_numbers(workload: Mapping[str, Any]) -> tuple[float, float, float, float, float]:
    """(mean prompt length, max prompt length, output length, batch size, number of requests)."""
    p_mean, p_max = prompt_stats(workload.get("prompt_len"))
    batch = num(workload.get("batch_size"), 1.0)
    return p_mean, p_max, num(workload.get("output_len")), batch, num(workload.get("num_requests"), batch)
