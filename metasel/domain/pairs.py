"""Pair terms: what a method's techniques should do to a workload on a hardware, before any data.

A (task, hardware) context gives a few numbers (:func:`context_quantities`: log batch,
accelerator, decode-bound, ...), a method a few technique flags (:func:`method_quantities`),
and :func:`pair_terms` combines them into named, physics-shaped interactions
(:data:`PAIR_TERMS`). A learner may use them as inputs; a generic table has none (every
term is zero there).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from metasel.domain import techniques as T
from metasel.domain.model import CONV1D_ARCHS, model_numbers
from metasel.domain.numbers import log_or_nan, num
from metasel.domain.roofline import analytic_features
from metasel.domain.workload import workload_numbers

PAIR_TERMS = ("x.batching_log_batch", "x.batching_log_batch_accel", "x.weight_bytes_saved",
              "x.weight_bytes_saved_decode_bound", "x.bf16_not_native", "x.prefix_reuse",
              "x.speculative_log_output", "x.speculative_batched", "x.static_cache_accel",
              "x.lookup_landmark", "x.draft_landmark", "x.lookup_landmark_accel")

# Task features that landmarks (``metasel.bench.landmarks``) measure: tokens per target
# forward pass under prompt lookup and under assisted decoding.
LANDMARKS = ("lookup_tokens_per_pass", "draft_tokens_per_pass")
LANDMARK_TERMS = ("x.lookup_landmark", "x.draft_landmark", "x.lookup_landmark_accel")
N_CONTEXT_QUANTITIES = 11
N_METHOD_QUANTITIES = 9
LANDMARK_COLUMNS = slice(N_CONTEXT_QUANTITIES - len(LANDMARKS), None)  # the context quantities that are landmarks


def landmark_logs(features: Mapping[str, Any] | None) -> list[float]:
    """log of each landmark of a task's features (NaN where it has none, or an invalid one)."""
    out = []
    for name in LANDMARKS:
        v = num((features or {}).get(name))
        out.append(math.log(v) if v == v and math.isfinite(v) and v >= 1.0 else math.nan)
    return out


def context_quantities(spec: Mapping[str, Any], hw: Mapping[str, Any],
                       features: Mapping[str, Any] | None = None) -> np.ndarray:
    """The numbers of a (task, hardware) pair that the pair terms combine with a method's techniques.

    Order: log batch, on an accelerator, decode-bound, bf16 not native, prefix reuse,
    log output length, batched, quantisable share of matmul weights, bits per weight, then
    the log landmarks of the task's ``features`` (:data:`LANDMARKS`). Unknown numbers are 0
    (no effect), except the landmarks, which are NaN when the task has none (the encoder
    fills in the training mean).
    """
    model, workload = spec.get("model"), spec.get("workload")
    if not isinstance(model, Mapping) or not isinstance(workload, Mapping):
        return np.array([0.0] * LANDMARK_COLUMNS.start + landmark_logs(features))
    nums = model_numbers(model)
    _, _, out_len, batch, reqs = workload_numbers(workload)
    shared = num(workload.get("shared_prefix"), 0.0)
    device = str(hw.get("device", "")) if hw else ""
    accel = float(bool(device) and device != "cpu")
    native_bf16 = not hw or bool(accel) or bool(hw.get("avx512_bf16")) or bool(hw.get("amx"))
    an = analytic_features(spec, hw) if hw else {}
    # prompt tokens a prefix cache can skip: the shared part of every request after the first
    reuse = shared * (reqs - 1) / reqs if reqs == reqs and reqs > 0 else 0.0
    H, V = (num(model.get(k)) for k in ("hidden", "vocab"))
    if str(model.get("arch")) in CONV1D_ARCHS and nums["params"] == nums["params"]:
        blocks = nums["params"] - V * H  # everything but the (tied) embedding: blocks, norms
        share = V * H / (blocks + V * H) if blocks + V * H > 0 else 1.0  # only the LM head is a Linear
    else:
        share = 1.0
    vals = [log_or_nan(batch), accel, num(an.get("a.decode_bound"), 0.0), 0.0 if native_bf16 else 1.0, reuse,
            log_or_nan(out_len), float(batch > 1), share, 8.0 * nums["bytes_per_weight"]]
    return np.array([v if v == v else 0.0 for v in vals] + landmark_logs(features), dtype=float)


def method_quantities(techniques: Mapping[str, Any]) -> np.ndarray:
    """Technique flags the pair terms use: batching, int8 dynamic, weight bits, bf16, prefix
    cache, speculative decoding, static cache, prompt lookup, assisted decoding."""
    t = {k: num(v, 0.0) for k, v in techniques.items()}
    return np.array([max(t.get(T.STATIC_BATCHING, 0.0), t.get(T.CONTINUOUS_BATCHING, 0.0)), t.get(T.INT8_DYNAMIC, 0.0),
                     t.get(T.WEIGHT_BITS, 0.0), t.get(T.BF16, 0.0), t.get(T.PREFIX_CACHE, 0.0),
                     max(t.get(T.ASSISTED, 0.0), t.get(T.PROMPT_LOOKUP, 0.0)), t.get(T.STATIC_CACHE, 0.0),
                     t.get(T.PROMPT_LOOKUP, 0.0), t.get(T.ASSISTED, 0.0)])


def pair_terms(ctx: np.ndarray, mth: np.ndarray) -> np.ndarray:
    """Physics-shaped interactions of contexts (C, 11) and methods (M, 9) → (C, M, len(PAIR_TERMS)).

    What a method should change for a workload before any data: batching pays with the
    number of requests decoded together (more on accelerators); fewer weight bytes pay
    when decode is memory-bound (int8 dynamic quantises only Linear layers); bf16 is slow
    without native support; a prefix cache skips the shared prompt of later requests;
    speculative decoding pays with long outputs and runs at batch size 1 only; a static
    cache removes allocation overhead that matters on accelerators; prompt lookup and
    assisted decoding pay with the tokens per forward pass their landmark measured (prompt
    lookup differently on accelerators, where its host-side candidate search and
    dynamic cache weigh against launch-bound steps).
    """
    log_b, accel, decode_bound, bf16_slow, reuse, log_out, batched, share, bits, lookup_lm, draft_lm = (
        ctx[:, i][:, None] for i in range(N_CONTEXT_QUANTITIES))
    batching, int8, wbits, bf16, prefix, spec_dec, static, lookup, assisted = (
        mth[:, i][None, :] for i in range(N_METHOD_QUANTITIES))
    with np.errstate(divide="ignore", invalid="ignore"):
        lowered = np.where((wbits > 0) & (bits > 0) & (wbits < bits), wbits / np.where(bits > 0, bits, 1.0), 1.0)
        ratio = np.where(int8 > 0, 1.0 - share + share * lowered, lowered)
        saved = -np.log(np.clip(ratio, 1e-3, 1.0))
    terms = [batching * log_b, batching * log_b * accel, saved, saved * decode_bound, bf16 * bf16_slow,
             prefix * reuse, spec_dec * log_out, spec_dec * batched, static * accel, lookup * lookup_lm,
             assisted * draft_lm, lookup * lookup_lm * accel]
    return np.stack([np.broadcast_to(t, (ctx.shape[0], mth.shape[0])) for t in terms], axis=-1).astype(np.float32)
