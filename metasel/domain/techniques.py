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
