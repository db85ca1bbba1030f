"""Model arithmetic: parameter counts, bytes per weight, KV-cache bytes per token.

One formula, used by :class:`metasel.spec.ModelSpec` and by the features alike.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from metasel.domain.numbers import num

KNOWN_ARCHS: tuple[str, ...] = (
    "llama", "mistral", "mixtral", "qwen2", "gpt2", "gptj", "bloom", "opt", "gemma", "deci",
)
#: Bytes per weight of each weight dtype.
DTYPES: dict[str, float] = {
    "float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5,
}
#: Architectures with a two-matrix MLP and tied input/output embeddings.
TWO_MATRIX_MLP: tuple[str, ...] = ("gpt2", "gptj", "bloom", "opt")
#: Architectures whose transformer blocks use HF ``Conv1D`` rather than ``nn.Linear``:
#: dynamic int8 quantisation of Linear layers leaves their blocks in float.
CONV1D_ARCHS: tuple[str, ...] = ("gpt2", "openai-gpt")


def model_numbers(model: Mapping[str, Any]) -> dict[str, float]:
    """Parameter counts and sizes of a model dict (``ModelSpec`` fields); NaN where a dimension is missing.

    Returns ``params`` (embeddings, attention, MLP with every expert, norms),
    ``active_params`` (touched per token), ``bytes_per_weight``, ``kv_bytes_per_token``
    and ``head_dim``.
    """
    L, H, nh, kv, inter, V = (num(model.get(k)) for k in ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab"))
    E, k = num(model.get("experts"), 1.0), num(model.get("experts_per_token"), 1.0)
    bpw = DTYPES.get(str(model.get("dtype", "float32")), 4.0)
    hd = H / nh if nh == nh and nh > 0 else math.nan
    two = str(model.get("arch")) in TWO_MATRIX_MLP
    attn = H * hd * (2 * nh + 2 * kv)
    mlp = (2 if two else 3) * H * inter
    emb = V * H * (1 if two else 2)
    params = L * (attn + mlp * E + 2 * H) + emb
    active = L * (attn + mlp * min(k, E) + 2 * H) + emb
    return {"params": params, "active_params": active, "bytes_per_weight": bpw,
            "kv_bytes_per_token": 2.0 * L * kv * hd * bpw, "head_dim": hd}


def serve_flops(model: Mapping[str, Any], prompt_mean: float, output_len: float, num_requests: float) -> float:
    """FLOPs of one plain (greedy, no cache reuse) serve of a workload: 2 × active parameters per token."""
    return 2.0 * model_numbers(model)["active_params"] * (prompt_mean + output_len) * num_requests
