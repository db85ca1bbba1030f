"""The technique vocabulary methods are described in, and which techniques are idle on a workload.

A method's technique vector maps these names to numbers (0 when absent); the collector's
registry (:mod:`metasel.bench.methods`) writes them and the pair terms read them, so the
names live here once.
"""

from __future__ import annotations

from typing import Any, Mapping

from metasel.domain.numbers import as_dict, num
from metasel.domain.workload import workload_numbers

SDPA = "sdpa"
BF16 = "bf16"
INT8_DYNAMIC = "int8_dynamic"
WEIGHT_BITS = "weight_bits"
STATIC_CACHE = "static_cache"
COMPILE = "compile"
STATIC_BATCHING = "static_batching"
CONTINUOUS_BATCHING = "continuous_batching"
PREFIX_CACHE = "prefix_cache"
ASSISTED = "assisted"
PROMPT_LOOKUP = "prompt_lookup"
INT4 = "int4"
MAX_BATCH_LOG2 = "max_batch_log2"
CHUNKED_PREFILL = "chunked_prefill"
FLASH_ATTENTION = "flash_attention"
PREFILL_BATCH_LOG2 = "prefill_batch_log2"
TECHNIQUES: tuple[str, ...] = (SDPA, BF16, INT8_DYNAMIC, WEIGHT_BITS, STATIC_CACHE, COMPILE, STATIC_BATCHING,
                               CONTINUOUS_BATCHING, PREFIX_CACHE, ASSISTED, PROMPT_LOOKUP, INT4, MAX_BATCH_LOG2,
                               CHUNKED_PREFILL, FLASH_ATTENTION, PREFILL_BATCH_LOG2)


ENGINE_PREFIX = "engine_"


def engine(name: str) -> str:
    """The one-hot technique of a serving engine (``engine_vllm``); transformers methods have none."""
    return ENGINE_PREFIX + name


#: the serving engines the collector measures (each one-hot in every engine method's vector)
ENGINES: tuple[str, ...] = ("ctranslate2", "ort_genai", "openvino", "llama_cpp", "vllm")
#: an engine's precision word (its own name for it) -> weight bits
PRECISION_BITS: dict[str, float] = {
    "float32": 32.0, "fp32": 32.0, "f32": 32.0, "bfloat16": 16.0, "bf16": 16.0, "float16": 16.0, "fp16": 16.0,
    "f16": 16.0, "half": 16.0, "auto": 16.0, "int8": 8.0, "int8_float32": 8.0, "q8_0": 8.0, "fp8": 8.0, "w8a8": 8.0,
    "int4": 4.0, "q4_K_M": 4.5, "q4_0": 4.0, "awq": 4.0, "gptq": 4.0, "awq_marlin": 4.0, "gptq_marlin": 4.0,
    "bitsandbytes": 4.0,
}
#: the settings that name an engine's precision, in the order they are looked for
PRECISION_SETTINGS: tuple[str, ...] = ("compute_type", "precision", "weight_format", "gguf_type", "dtype")
#: engines that batch continuously (a server's scheduler); the others batch statically
CONTINUOUS_ENGINES: frozenset[str] = frozenset({"vllm", "sglang", "tgi", "trtllm", "tensorrt_llm", "lmdeploy"})


def precision_bits(word: Any) -> float | None:
    """Weight bits of an engine's precision word (``q4_K_M`` -> 4.5), None if unknown."""
    return PRECISION_BITS.get(str(word)) or PRECISION_BITS.get(str(word).lower())


def engine_techniques(name: str, settings: Mapping[str, Any]) -> dict[str, float]:
    """An engine configuration's technique vector: which engine, weight bits, and its batching and
    decoding settings, named like the transformers methods' techniques where they mean the same
    thing. ``settings`` uses the engines' own names (``max_num_seqs``, ``gguf_type``, ...); a
    ``quantization`` setting (vLLM's) decides the weight bits over the dtype. An engine metasel
    does not measure gets its own one-hot beside the measured engines' zeros."""
    import math

    s = dict(settings)
    precision = next((s[k] for k in PRECISION_SETTINGS if k in s), "float32")
    bits = precision_bits(s["quantization"]) if s.get("quantization") else None
    bits = bits if bits is not None else precision_bits(precision)
    if bits is None:
        raise ValueError(f"{name}: unknown precision {precision!r}; known: {sorted(PRECISION_BITS)}")
    batch = int(s.get("max_batch", s.get("max_num_seqs", 1)))
    continuous = name in CONTINUOUS_ENGINES
    t = {engine(e): float(e == name) for e in ENGINES}
    if name not in ENGINES:
        t[engine(name)] = 1.0
    t.update({
        WEIGHT_BITS: bits, BF16: float(precision in ("bfloat16", "bf16")), INT8_DYNAMIC: float(bits == 8.0),
        INT4: float(bits < 8.0), MAX_BATCH_LOG2: math.log2(batch),
        STATIC_BATCHING: float(not continuous and batch > 1), CONTINUOUS_BATCHING: float(continuous and batch > 1),
        PREFIX_CACHE: float(bool(s.get("prefix_caching"))), PROMPT_LOOKUP: float(bool(s.get("ngram_speculative"))),
        CHUNKED_PREFILL: float(bool(s.get("chunked_prefill"))), FLASH_ATTENTION: float(bool(s.get("flash_attn"))),
        PREFILL_BATCH_LOG2: math.log2(int(s["n_batch"])) if "n_batch" in s else 0.0,
    })
    return t


#: how an engine method's name spells its settings, in this order (the rest follow as key=value)
_NAME_ORDER = ("compute_type", "precision", "weight_format", "gguf_type", "dtype", "quantization", "max_batch",
               "max_num_seqs", "n_batch", "prefix_caching", "chunked_prefill", "ngram_speculative", "flash_attn")
_SHORT = {"max_batch": "b", "max_num_seqs": "seqs", "n_batch": "nb"}
_FLAGS = {"prefix_caching": "prefix", "chunked_prefill": "chunked", "ngram_speculative": "ngram", "flash_attn": "fa"}


def engine_method_name(name: str, settings: Mapping[str, Any]) -> str:
    """``ctranslate2/int8+b8``-style names: the engine, then its settings in a fixed order
    (flags by name when on, batch sizes as ``b8``/``seqs16``/``nb512``, other settings as
    ``key=value``); an engine with no settings given is just its name."""
    parts = []
    for key in (*_NAME_ORDER, *sorted(k for k in settings if k not in _NAME_ORDER)):
        if key not in settings:
            continue
        v = settings[key]
        if key in _FLAGS:
            if v:
                parts.append(_FLAGS[key])
        elif key in _SHORT:
            parts.append(f"{_SHORT[key]}{v}")
        elif key in _NAME_ORDER[:6]:
            parts.append(str(v))
        else:
            parts.append(f"{key}={v}")
    return f"{name}/" + "+".join(parts) if parts else name


def engine_of(techniques: Any) -> str:
    """The serving engine a technique vector (a mapping or its JSON) names; ``transformers`` if none."""
    hits = [k[len(ENGINE_PREFIX):] for k, v in as_dict(techniques).items() if k.startswith(ENGINE_PREFIX) and num(v, 0.0)]
    return hits[0] if hits else "transformers"


def idle_techniques(task: Mapping[str, Any]) -> tuple[str, ...]:
    """The techniques that do nothing on this task's workload: the collector's static batching
    of requests that arrive one at a time (batch size 1, or a single request) is plain
    sequential generation, and a prefix cache with no shared prefix caches nothing
    (:mod:`metasel.bench.serve` runs the very same calls)."""
    workload = as_dict(task.get("spec")).get("workload")
    if not isinstance(workload, Mapping):
        return ()
    _, _, _, batch, reqs = workload_numbers(workload)
    idle = (STATIC_BATCHING,) if batch <= 1 or reqs <= 1 else ()
    return idle + ((PREFIX_CACHE,) if num(workload.get("shared_prefix"), 0.0) <= 0 else ())


def same_computation(task: Mapping[str, Any], methods: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``method -> representative`` over ``methods`` (name -> descriptor) for one task.

    A method with a technique that is idle on this task (:func:`idle_techniques`) runs the
    same computation as the method whose techniques are the remaining ones (``int8_dynamic``
    for ``int8_dynamic+static_batching`` at batch size 1), and as every other method idle
    down to the same techniques: they share one representative (that plain method, else the
    first name). When two methods have those plain techniques, the technique vectors do not
    tell methods apart (a foreign table's), so nothing is grouped there. Every other method
    represents itself.
    """
    out = {name: name for name in methods}
    idle_here = idle_techniques(task)
    if not idle_here:
        return out
    plain: dict[tuple, list[str]] = {}  # techniques -> methods with nothing idle
    idle: dict[tuple, list[str]] = {}  # techniques left once the idle ones are off -> methods
    for name in sorted(methods):
        t = {k: num(v, 0.0) for k, v in as_dict(methods[name].get("techniques")).items()}
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
