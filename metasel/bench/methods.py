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
    engine: str = "transformers"
    settings: tuple = ()

    def __post_init__(self):
        if self.engine != "transformers":
            _check_engine_settings(self)
            return
        for name, value, allowed in (("attention", self.attention, ATTENTION), ("weights", self.weights, WEIGHTS),
                                     ("cache", self.cache, CACHE), ("batching", self.batching, BATCHING),
                                     ("decoding", self.decoding, DECODING)):
            if value not in allowed:
                raise InputDataError(f"method {self.name!r}: {name}: expected one of {list(allowed)}, got {value!r}")

    def techniques(self) -> dict[str, float]:
        """The technique vector: one number per technique, 0 when absent."""
        if self.engine != "transformers":
            return _engine_techniques(self)
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
        if self.engine != "transformers":
            return f"{self.engine}: " + ", ".join(f"{k}={v}" for k, v in self.settings)
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
        import difflib

        close = difflib.get_close_matches(str(name), list(REGISTRY), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise InputDataError(f"unknown method {str(name)[:80]!r}; {hint}'metasel collect --list' shows all "
                             f"{len(REGISTRY)}") from None


def resolve(names) -> list[Method]:
    """Methods by name or pattern (``ctranslate2/*``: every CTranslate2 method); ``None`` means every
    transformers method except the slow-to-set-up ``compile`` ones (engine methods are named)."""
    import fnmatch

    if names is None:
        return [m for m in REGISTRY.values() if not m.compile and m.engine == "transformers"]
    out: list[Method] = []
    for n in names:
        if any(ch in n for ch in "*?["):
            hits = [m for m in REGISTRY.values() if fnmatch.fnmatchcase(m.name, n)]
            if not hits:
                raise InputDataError(f"method pattern {n!r} matches no method; engines: {sorted(ENGINE_SETTINGS)}")
            out += [m for m in hits if m not in out]
        elif (m := get(n)) not in out:
            out.append(m)
    return out


# ---------------------------------------------------------------------------- engine methods

#: engine -> setting -> allowed values (the engines' own names for them)
ENGINE_SETTINGS: dict[str, dict[str, tuple]] = {
    "ctranslate2": {"compute_type": ("float32", "int8", "int8_float32"), "max_batch": (1, 2, 4, 8, 16)},
    "ort_genai": {"precision": ("fp32", "int4"), "max_batch": (1, 2, 4, 8, 16)},
    "openvino": {"weight_format": ("fp32", "int8", "int4"), "max_batch": (1, 2, 4, 8, 16)},
    "llama_cpp": {"gguf_type": ("f32", "f16", "q8_0", "q4_K_M", "q4_0"), "n_batch": (64, 512), "flash_attn": (False, True)},
    "vllm": {"dtype": ("float32", "bfloat16"), "max_num_seqs": (1, 4, 16, 64), "prefix_caching": (False, True),
             "chunked_prefill": (False, True), "ngram_speculative": (False, True)},
}


def _check_engine_settings(m: Method) -> None:
    allowed = ENGINE_SETTINGS.get(m.engine)
    if allowed is None:
        raise InputDataError(f"method {m.name!r}: engine: expected one of {['transformers', *ENGINE_SETTINGS]}, got {m.engine!r}")
    for key, value in m.settings:
        if key not in allowed:
            raise InputDataError(f"method {m.name!r}: {m.engine} setting: expected one of {list(allowed)}, got {key!r}")
        if value not in allowed[key]:
            raise InputDataError(f"method {m.name!r}: {m.engine} {key}: expected one of {list(allowed[key])}, got {value!r}")


def _engine_techniques(m: Method) -> dict[str, float]:
    """An engine method's vector (:func:`metasel.domain.techniques.engine_techniques`)."""
    return T.engine_techniques(m.engine, dict(m.settings))


def engine_method(engine: str, **settings) -> Method:
    """``ctranslate2/int8+b8``-style names (:func:`metasel.domain.techniques.engine_method_name`)."""
    return Method(T.engine_method_name(engine, settings), engine=engine, settings=tuple(settings.items()))


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

for _m in (
    *(engine_method("ctranslate2", compute_type=c, max_batch=b) for c in ("float32", "int8", "int8_float32") for b in (1, 8)),
    *(engine_method("ort_genai", precision=p, max_batch=b) for p in ("fp32", "int4") for b in (1, 8)),
    *(engine_method("openvino", weight_format=w, max_batch=b) for w in ("fp32", "int8", "int4") for b in (1, 8)),
    *(engine_method("llama_cpp", gguf_type=g, n_batch=512, flash_attn=False) for g in ("f32", "f16", "q8_0", "q4_K_M", "q4_0")),
    engine_method("llama_cpp", gguf_type="q8_0", n_batch=64, flash_attn=False),
    engine_method("llama_cpp", gguf_type="q8_0", n_batch=512, flash_attn=True),
    *(engine_method("vllm", dtype="float32", max_num_seqs=n, prefix_caching=p, chunked_prefill=False,
                    ngram_speculative=False) for n in (1, 16) for p in (False, True)),
    engine_method("vllm", dtype="bfloat16", max_num_seqs=16, prefix_caching=False, chunked_prefill=False,
                  ngram_speculative=False),
    engine_method("vllm", dtype="float32", max_num_seqs=16, prefix_caching=False, chunked_prefill=True,
                  ngram_speculative=False),
    engine_method("vllm", dtype="float32", max_num_seqs=1, prefix_caching=False, chunked_prefill=False,
                  ngram_speculative=True),
):
    register(_m)
