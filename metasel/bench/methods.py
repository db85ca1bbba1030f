"""The methods registry: a method is a named combination of techniques.

Each method carries a technique vector (technique -> number), so the surrogate can
predict combinations that were never measured. Adding a method is one call::

    register(Method("sdpa+int8_dynamic", attention="sdpa", weights="int8_dynamic",
                    description="SDPA attention with int8 dynamic Linear layers"))

The backend (:mod:`metasel.bench.serve`) reads the fields; nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from metasel.domain import techniques as T
from metasel.errors import InputDataError

ATTENTION = ("eager", "sdpa")
WEIGHTS = ("float32", "bfloat16", "int8_dynamic")
CACHE = ("dynamic", "static")
BATCHING = ("sequential", "static", "continuous")
DECODING = ("greedy", "assisted", "prompt_lookup")


@dataclass(frozen=True)
class Method:
    """An acceleration configuration.

    Attributes:
        name: unique name, e.g. ``"sdpa+bf16+static_batching"``.
        attention: ``eager`` or ``sdpa`` attention kernels.
        weights: ``float32``, ``bfloat16`` or ``int8_dynamic`` (dynamic int8 Linear layers).
        cache: ``dynamic`` or ``static`` KV cache.
        compile: wrap the model's forward in ``torch.compile``.
        batching: ``sequential`` (one request at a time), ``static`` (requests padded
            into batches of the workload's ``batch_size``) or ``continuous``
            (transformers ``generate_batch`` with at most ``batch_size`` requests per step).
        prefix_cache: compute the shared prefix's KV cache once and reuse it.
        decoding: ``greedy``, ``assisted`` (a smaller draft model) or ``prompt_lookup``.
    """

    name: str
    attention: str = "sdpa"
    weights: str = "float32"
    cache: str = "dynamic"
    compile: bool = False
    batching: str = "sequential"
    prefix_cache: bool = False
    decoding: str = "greedy"
    description: str = ""

    def __post_init__(self):
        for name, value, allowed in (("attention", self.attention, ATTENTION), ("weights", self.weights, WEIGHTS),
                                     ("cache", self.cache, CACHE), ("batching", self.batching, BATCHING),
                                     ("decoding", self.decoding, DECODING)):
            if value not in allowed:
                raise InputDataError(f"method {self.name!r}: {name}: expected one of {list(allowed)}, got {value!r}")

    def techniques(self) -> dict[str, float]:
        """The technique vector: one number per technique, 0 when absent."""
        return {
            T.SDPA: float(self.attention == "sdpa"),
            T.BF16: float(self.weights == "bfloat16"),
            T.INT8_DYNAMIC: float(self.weights == "int8_dynamic"),
            T.WEIGHT_BITS: {"float32": 32.0, "bfloat16": 16.0, "int8_dynamic": 8.0}[self.weights],
            T.STATIC_CACHE: float(self.cache == "static"),
            T.COMPILE: float(self.compile),
            T.STATIC_BATCHING: float(self.batching == "static"),
            T.CONTINUOUS_BATCHING: float(self.batching == "continuous"),
            T.PREFIX_CACHE: float(self.prefix_cache),
            T.ASSISTED: float(self.decoding == "assisted"),
            T.PROMPT_LOOKUP: float(self.decoding == "prompt_lookup"),
        }

    def describe(self) -> str:
        if self.description:
            return self.description
        parts = [f"{self.attention} attention", f"{self.weights} weights", f"{self.cache} KV cache",
                 f"{self.batching} batching of requests"]
        if self.compile:
            parts.append("torch.compile")
        if self.prefix_cache:
            parts.append("shared-prefix KV cache reuse")
        if self.decoding != "greedy":
            parts.append(f"{self.decoding.replace('_', ' ')} speculative decoding")
        return ", ".join(parts)

    def descriptor(self) -> dict:
        return {"method": self.name, "techniques": self.techniques(), "description": self.describe()}


REGISTRY: dict[str, Method] = {}


def register(method: Method, *, replace: bool = False) -> Method:
    """Add a method to the registry (``replace=True`` to redefine one)."""
    if method.name in REGISTRY and not replace:
        raise InputDataError(f"method {method.name!r} is already registered")
    REGISTRY[method.name] = method
    return method


def get(name: str) -> Method:
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputDataError(f"unknown method {name!r}; known methods: {sorted(REGISTRY)}") from None


def resolve(names) -> list[Method]:
    """Methods by name; ``None`` means every method except the slow-to-set-up ``compile`` ones."""
    if names is None:
        return [m for m in REGISTRY.values() if not m.compile]
    return [get(n) for n in names]


for _m in (
    Method("baseline", attention="eager", description="eager attention, fp32, dynamic cache, requests one at a time"),
    Method("sdpa"),
    Method("static_cache", cache="static"),
    Method("compile", compile=True),
    Method("static_cache+compile", cache="static", compile=True),
    Method("bf16", weights="bfloat16"),
    Method("int8_dynamic", weights="int8_dynamic"),
    Method("static_batching", batching="static"),
    Method("continuous_batching", batching="continuous"),
    Method("prefix_cache", prefix_cache=True),
    Method("assisted", decoding="assisted"),
    Method("prompt_lookup", decoding="prompt_lookup"),
    Method("sdpa+bf16+static_batching", weights="bfloat16", batching="static"),
    Method("int8_dynamic+static_batching", weights="int8_dynamic", batching="static"),
    Method("static_cache+static_batching", cache="static", batching="static"),
    Method("bf16+prefix_cache", weights="bfloat16", prefix_cache=True),
    Method("int8_dynamic+prefix_cache", weights="int8_dynamic", prefix_cache=True),
    Method("assisted+static_batching", decoding="assisted", batching="static"),
):
    register(_m)
