"""Task specs and grid specs, read from YAML and validated.

A *task* is what is served: a model (architecture and dimensions) times a workload
(prompt and output lengths, batch size, shared prefix, text domain). Its ``task_id`` is
a hash of the canonical model + workload, so the same task measured on two machines,
or written in two files, has one id. Hardware, objective and budget travel with a spec
but are not part of the task.

Example (``examples/llama_chat.yaml``)::

    name: llama-chat
    model: {preset: llama-34m}
    workload: {prompt_len: {dist: uniform, min: 48, max: 96}, output_len: 32,
               batch_size: 4, shared_prefix: 0.5, domain: customer-support chat}
    hardware: auto
    objective: {metric: throughput_tok_s, constraints: {max_memory_mb: 4000}}
    budget: {benchmarks: 4}
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from metasel._check import Checker
from metasel._schema import DIRECTIONS, METRICS
from metasel.domain.model import DTYPES, KNOWN_ARCHS, model_numbers
from metasel.errors import InputDataError
from metasel.spec.presets import MODEL_PRESETS

_MODEL_DIMS = ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab")
#: the largest plausible value of each size a spec gives (larger is a typo, and would make
#: suggest rank nonsense or collect run for hours): model dimensions, then workload sizes
MAX_SIZE = {"layers": 1_024, "hidden": 131_072, "heads": 1_024, "kv_heads": 1_024, "intermediate": 1_048_576,
            "vocab": 4_194_304, "experts": 4_096, "experts_per_token": 4_096,
            "length": 10_000_000, "output_len": 1_000_000, "batch_size": 100_000, "concurrency": 100_000,
            "num_requests": 1_000_000, "clients": 100_000, "benchmarks": 10_000}
#: the largest plausible model, in parameters
MAX_PARAMS = 100e12


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and dimensions of a served model."""

    arch: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    dtype: str = "float32"
    experts: int = 1
    experts_per_token: int = 1
    name: str | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def _numbers(self) -> dict[str, float]:
        return model_numbers(asdict(self))

    def num_params(self) -> int:
        """Approximate parameter count (embeddings, attention, MLP, norms): :func:`metasel.domain.model.model_numbers`."""
        return int(self._numbers()["params"])

    def active_params(self) -> int:
        """Parameters touched per token (fewer than ``num_params`` for mixtures of experts)."""
        return int(self._numbers()["active_params"])

    @property
    def bytes_per_weight(self) -> float:
        return DTYPES[self.dtype]

    def kv_bytes_per_token(self) -> float:
        return self._numbers()["kv_bytes_per_token"]


@dataclass(frozen=True)
class LengthDist:
    """A token-length distribution: fixed, uniform, normal, lognormal or a choice."""

    dist: str = "fixed"
    value: int | None = None
    min: int | None = None
    max: int | None = None
    mean: float | None = None
    std: float | None = None
    choices: tuple[int, ...] | None = None

    def expected(self) -> float:
        if self.dist == "fixed":
            return float(self.value)
        if self.dist == "uniform":
            return (self.min + self.max) / 2.0
        if self.dist == "choice":
            return float(sum(self.choices)) / len(self.choices)
        return float(min(max(self.mean, self.min or 1), self.max or math.inf))

    def upper(self) -> int:
        """The longest length this distribution produces."""
        if self.dist == "fixed":
            return int(self.value)
        if self.dist == "choice":
            return int(max(self.choices))
        return int(self.max)

    def sample(self, rng, n: int) -> list[int]:
        """Draw ``n`` lengths with a ``numpy.random.Generator``."""
        import numpy as np

        if self.dist == "fixed":
            out = np.full(n, self.value)
        elif self.dist == "uniform":
            out = rng.integers(self.min, self.max + 1, size=n)
        elif self.dist == "choice":
            out = rng.choice(np.asarray(self.choices), size=n)
        elif self.dist == "normal":
            out = np.rint(rng.normal(self.mean, self.std, size=n))
        else:  # lognormal, parameterised by the mean and std of the lengths themselves
            sigma2 = math.log1p((self.std / self.mean) ** 2)
            mu = math.log(self.mean) - sigma2 / 2.0
            out = np.rint(rng.lognormal(mu, math.sqrt(sigma2), size=n))
        return [int(x) for x in np.clip(out, self.min or 1, self.max or np.inf)]

    def to_json(self) -> Any:
        if self.dist == "fixed":
            return self.value
        d = {k: v for k, v in asdict(self).items() if v is not None and k != "value"}
        if self.choices is not None:
            d["choices"] = list(self.choices)
        return d


@dataclass(frozen=True)
class WorkloadSpec:
    """What the server is asked to do."""

    prompt_len: LengthDist
    output_len: int
    batch_size: int = 1
    num_requests: int | None = None
    shared_prefix: float = 0.0
    domain: str | None = None
    #: how requests arrive: ``{"process": "burst"}`` (all at once), ``{"process": "poisson", "rate": r}``
    #: (requests/s), ``{"process": "constant", "rate": r}`` (evenly spaced) or
    #: ``{"process": "concurrency", "clients": c}`` (a closed loop)
    arrival: dict = field(default_factory=lambda: {"process": "burst"})
    #: service-level objective of a request (``ttft_ms``, ``tpot_ms``, ``e2e_ms`` bounds) for goodput
    slo: dict = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return self.num_requests if self.num_requests is not None else self.batch_size


@dataclass(frozen=True)
class HardwareSpec:
    """Where it runs; ``auto`` means: probe this machine."""

    auto: bool = True
    name: str | None = None
    device: str | None = None
    count: int = 1
    memory_gb: float | None = None
    peak_tflops: float | None = None
    mem_bw_gbs: float | None = None
    cores: int | None = None
    threads: int | None = None
    price_per_hour: float | None = None


@dataclass(frozen=True)
class Objective:
    metric: str = "throughput_tok_s"
    direction: str = "max"
    max_memory_mb: float | None = None
    latency_slo_ms: float | None = None


@dataclass(frozen=True)
class Budget:
    benchmarks: int | None = None
    seconds: float | None = None
    dollars: float | None = None


@dataclass(frozen=True)
class TaskSpec:
    """A validated task spec. Build with :func:`load_task_spec` or :func:`parse_task_spec`."""

    name: str
    model: ModelSpec
    workload: WorkloadSpec
    hardware: HardwareSpec = field(default_factory=HardwareSpec)
    objective: Objective = field(default_factory=Objective)
    budget: Budget = field(default_factory=Budget)

    def task_dict(self) -> dict[str, Any]:
        """The canonical model + workload: what identifies the task."""
        model = {k: v for k, v in asdict(self.model).items() if k != "name"}
        w = self.workload
        workload = {
            "prompt_len": w.prompt_len.to_json(),
            "output_len": w.output_len,
            "batch_size": w.batch_size,
            "num_requests": w.requests,
            "shared_prefix": w.shared_prefix,
            "domain": w.domain,
        }
        # only when not the default, so the ids of tasks written before them stay the same
        if w.arrival.get("process", "burst") != "burst":
            workload["arrival"] = dict(w.arrival)
        if w.slo:
            workload["slo"] = dict(w.slo)
        return {"model": model, "workload": workload}

    @property
    def task_id(self) -> str:
        return task_id_of(self.task_dict())

    def describe(self) -> str:
        """A one-line English description (used for text embeddings)."""
        m, w = self.model, self.workload
        text = (
            f"{m.arch} model with {m.num_params() / 1e6:.0f}M parameters "
            f"({m.layers} layers, hidden {m.hidden}, {m.heads} heads, {m.kv_heads} kv heads, {m.dtype}); "
            f"prompts of about {w.prompt_len.expected():.0f} tokens, {w.output_len} generated tokens, "
            f"batches of {w.batch_size}, {w.shared_prefix:.0%} shared prefix"
        )
        return text + (f"; text domain: {w.domain}" if w.domain else "")


def task_id_of(task: Mapping[str, Any]) -> str:
    """Stable id of a canonical task dict."""
    blob = json.dumps(task, sort_keys=True, separators=(",", ":"), default=str)
    return "t-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- parsing

TOP_KEYS = ("name", "model", "workload", "hardware", "objective", "budget")


def parse_task_spec(raw: Any, *, source: str | None = None) -> TaskSpec:
    """Validate a parsed YAML mapping into a :class:`TaskSpec`.

    Raises:
        InputDataError: naming ``source``, the field path, what was expected and what came.
    """
    c = Checker(source)
    raw = c.mapping(raw, "(top level)")
    c.known_keys(raw, "", TOP_KEYS)
    model = _parse_model(c, c.required(raw, "model", ""), "model")
    workload = _parse_workload(c, c.required(raw, "workload", ""), "workload")
    hardware = parse_hardware(c, raw.get("hardware", "auto"), "hardware")
    objective = _parse_objective(c, raw.get("objective", {}) or {}, "objective")
    budget = _parse_budget(c, raw.get("budget", {}) or {}, "budget")
    name = raw.get("name")
    if name is None:
        name = f"{model.name or model.arch}-p{workload.prompt_len.upper()}-o{workload.output_len}-b{workload.batch_size}"
    else:
        name = c.string(name, "name")
    if workload.prompt_len.upper() * workload.shared_prefix < 0:  # pragma: no cover - guarded above
        c.fail("workload.shared_prefix", "a fraction in [0, 1]")
    return TaskSpec(name=name, model=model, workload=workload, hardware=hardware,
                    objective=objective, budget=budget)


def _parse_model(c: Checker, raw: Any, path: str) -> ModelSpec:
    raw = c.mapping(raw, path)
    c.known_keys(raw, path, ("preset", "arch", "name", "dtype", "experts", "experts_per_token") + _MODEL_DIMS)
    values: dict[str, Any] = {}
    if "preset" in raw:
        preset = c.string(raw["preset"], f"{path}.preset", choices=MODEL_PRESETS)
        values.update(MODEL_PRESETS[preset])
        values["name"] = preset
    for key in _MODEL_DIMS:
        if key in raw:
            values[key] = c.integer(raw[key], f"{path}.{key}", minimum=1, maximum=MAX_SIZE[key])
        elif key not in values:
            c.required(raw, key, path)
    if "arch" in raw:
        values["arch"] = c.string(raw["arch"], f"{path}.arch", choices=KNOWN_ARCHS)
    elif "arch" not in values:
        c.required(raw, "arch", path)
    if "name" in raw:
        values["name"] = c.string(raw["name"], f"{path}.name")
    values["dtype"] = c.string(raw.get("dtype", "float32"), f"{path}.dtype", choices=DTYPES)
    values["experts"] = c.integer(raw.get("experts", 1), f"{path}.experts", minimum=1, maximum=MAX_SIZE["experts"])
    values["experts_per_token"] = c.integer(
        raw.get("experts_per_token", min(2, values["experts"])), f"{path}.experts_per_token", minimum=1,
        maximum=MAX_SIZE["experts_per_token"])
    if values["experts_per_token"] > values["experts"]:
        c.fail(f"{path}.experts_per_token", f"at most experts ({values['experts']})", values["experts_per_token"])
    if values["hidden"] % values["heads"]:
        c.fail(f"{path}.heads", f"a divisor of hidden ({values['hidden']})", values["heads"])
    if values["heads"] % values["kv_heads"]:
        c.fail(f"{path}.kv_heads", f"a divisor of heads ({values['heads']})", values["kv_heads"])
    model = ModelSpec(**values)
    if model.num_params() > MAX_PARAMS:
        c.fail(path, f"a model of at most {MAX_PARAMS:.0e} parameters (a plausible size)",
               f"{model.num_params():.2e} parameters", show_got=True)
    return model


def parse_length(c: Checker, raw: Any, path: str) -> LengthDist:
    if not isinstance(raw, Mapping):
        return LengthDist(value=c.integer(raw, path, minimum=1, maximum=MAX_SIZE["length"]))
    c.mapping(raw, path)
    dist = c.string(raw.get("dist", "fixed"), f"{path}.dist",
                    choices=("fixed", "uniform", "normal", "lognormal", "choice"))
    allowed = {
        "fixed": ("dist", "value"),
        "uniform": ("dist", "min", "max"),
        "normal": ("dist", "mean", "std", "min", "max"),
        "lognormal": ("dist", "mean", "std", "min", "max"),
        "choice": ("dist", "choices"),
    }[dist]
    c.known_keys(raw, path, allowed)
    if dist == "fixed":
        return LengthDist(value=c.integer(c.required(raw, "value", path), f"{path}.value", minimum=1, maximum=MAX_SIZE["length"]))
    if dist == "choice":
        choices = c.required(raw, "choices", path)
        if not isinstance(choices, list) or not choices:
            c.fail(f"{path}.choices", "a non-empty list of positive integers", choices)
        vals = tuple(c.integer(v, f"{path}.choices[{i}]", minimum=1, maximum=MAX_SIZE["length"]) for i, v in enumerate(choices))
        return LengthDist(dist="choice", choices=vals)
    lo = c.integer(c.required(raw, "min", path), f"{path}.min", minimum=1, maximum=MAX_SIZE["length"])
    hi = c.integer(c.required(raw, "max", path), f"{path}.max", minimum=1, maximum=MAX_SIZE["length"])
    if hi < lo:
        c.fail(f"{path}.max", f"at least min ({lo})", hi)
    if dist == "uniform":
        return LengthDist(dist="uniform", min=lo, max=hi)
    mean = c.number(c.required(raw, "mean", path), f"{path}.mean", minimum=0, strict_min=True)
    std = c.number(c.required(raw, "std", path), f"{path}.std", minimum=0, strict_min=True)
    return LengthDist(dist=dist, min=lo, max=hi, mean=mean, std=std)


def _parse_workload(c: Checker, raw: Any, path: str) -> WorkloadSpec:
    raw = c.mapping(raw, path)
    c.known_keys(raw, path, ("prompt_len", "output_len", "batch_size", "concurrency",
                             "num_requests", "shared_prefix", "domain", "arrival", "slo"))
    if "batch_size" in raw and "concurrency" in raw:
        c.fail(f"{path}.concurrency", "either batch_size or concurrency, not both", raw["concurrency"])
    prompt = parse_length(c, c.required(raw, "prompt_len", path), f"{path}.prompt_len")
    output = c.integer(c.required(raw, "output_len", path), f"{path}.output_len", minimum=1,
                       maximum=MAX_SIZE["output_len"])
    bkey = "concurrency" if "concurrency" in raw else "batch_size"
    batch = c.integer(raw.get(bkey, 1), f"{path}.{bkey}", minimum=1, maximum=MAX_SIZE[bkey])
    num_requests = None
    if raw.get("num_requests") is not None:
        num_requests = c.integer(raw["num_requests"], f"{path}.num_requests", minimum=1,
                                 maximum=MAX_SIZE["num_requests"])
    shared = c.number(raw.get("shared_prefix", 0.0), f"{path}.shared_prefix", minimum=0.0, maximum=1.0)
    if shared >= 1.0:
        c.fail(f"{path}.shared_prefix", "a fraction in [0, 1)", shared)
    domain = None if raw.get("domain") is None else c.string(raw["domain"], f"{path}.domain")
    arrival = _parse_arrival(c, raw.get("arrival", "burst"), f"{path}.arrival")
    slo = {}
    if raw.get("slo") is not None:
        raw_slo = c.mapping(raw["slo"], f"{path}.slo")
        c.known_keys(raw_slo, f"{path}.slo", SLO_KEYS)
        slo = {k: c.number(v, f"{path}.slo.{k}", minimum=0, strict_min=True) for k, v in raw_slo.items()}
    return WorkloadSpec(prompt_len=prompt, output_len=output, batch_size=batch,
                        num_requests=num_requests, shared_prefix=shared, domain=domain, arrival=arrival, slo=slo)


ARRIVALS = ("burst", "poisson", "constant", "concurrency")
SLO_KEYS = ("ttft_ms", "tpot_ms", "e2e_ms")


def _parse_arrival(c: Checker, raw: Any, path: str) -> dict:
    """``burst`` | ``{process: poisson, rate: R}`` | ``{process: constant, rate: R}`` (evenly spaced, as
    GuideLLM's and vLLM's ``--burstiness`` -> infinity) | ``{process: concurrency, clients: C}``."""
    if isinstance(raw, str):
        raw = {"process": raw}
    raw = c.mapping(raw, path)
    process = c.string(c.required(raw, "process", path), f"{path}.process", choices=ARRIVALS)
    if process == "burst":
        c.known_keys(raw, path, ("process",))
        return {"process": "burst"}
    if process in ("poisson", "constant"):
        c.known_keys(raw, path, ("process", "rate"))
        return {"process": process,
                "rate": c.number(c.required(raw, "rate", path), f"{path}.rate", minimum=0, strict_min=True)}
    c.known_keys(raw, path, ("process", "clients"))
    return {"process": "concurrency", "clients": c.integer(c.required(raw, "clients", path), f"{path}.clients", minimum=1,
                                                     maximum=MAX_SIZE["clients"])}


def parse_hardware(c: Checker, raw: Any, path: str) -> HardwareSpec:
    if raw == "auto":
        return HardwareSpec(auto=True)
    if isinstance(raw, str):
        c.fail(path, "'auto' or a mapping of hardware specs", raw)
    raw = c.mapping(raw, path)
    c.known_keys(raw, path, ("name", "device", "count", "memory_gb", "peak_tflops", "mem_bw_gbs",
                             "cores", "threads", "price_per_hour"))
    kw: dict[str, Any] = {"auto": False}
    if "name" in raw:
        kw["name"] = c.string(raw["name"], f"{path}.name")
    if "device" in raw:
        kw["device"] = c.string(raw["device"], f"{path}.device", choices=("cpu", "cuda", "other"))
    for key in ("count", "cores", "threads"):
        if key in raw:
            kw[key] = c.integer(raw[key], f"{path}.{key}", minimum=1, maximum=100_000)
    for key in ("memory_gb", "peak_tflops", "mem_bw_gbs"):
        if key in raw:
            kw[key] = c.number(raw[key], f"{path}.{key}", minimum=0, strict_min=True)
    if "price_per_hour" in raw:
        kw["price_per_hour"] = c.number(raw["price_per_hour"], f"{path}.price_per_hour", minimum=0)
    return HardwareSpec(**kw)


def _parse_objective(c: Checker, raw: Any, path: str) -> Objective:
    raw = c.mapping(raw, path)
    c.known_keys(raw, path, ("metric", "direction", "constraints"))
    metric = c.string(raw.get("metric", "throughput_tok_s"), f"{path}.metric", choices=METRICS)
    default_dir = METRICS[metric][0] or "max"
    direction = c.string(raw.get("direction", default_dir), f"{path}.direction", choices=DIRECTIONS)
    cons = c.mapping(raw.get("constraints", {}) or {}, f"{path}.constraints")
    c.known_keys(cons, f"{path}.constraints", ("max_memory_mb", "latency_slo_ms"))
    kw = {}
    for key in ("max_memory_mb", "latency_slo_ms"):
        if cons.get(key) is not None:
            kw[key] = c.number(cons[key], f"{path}.constraints.{key}", minimum=0, strict_min=True)
    return Objective(metric=metric, direction=direction, **kw)


def _parse_budget(c: Checker, raw: Any, path: str) -> Budget:
    raw = c.mapping(raw, path)
    c.known_keys(raw, path, ("benchmarks", "seconds", "dollars"))
    kw: dict[str, Any] = {}
    if raw.get("benchmarks") is not None:
        kw["benchmarks"] = c.integer(raw["benchmarks"], f"{path}.benchmarks", minimum=1, maximum=MAX_SIZE["benchmarks"])
    for key in ("seconds", "dollars"):
        if raw.get(key) is not None:
            kw[key] = c.number(raw[key], f"{path}.{key}", minimum=0, strict_min=True)
    return Budget(**kw)


# --------------------------------------------------------------------------- files


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file; every failure is an :class:`InputDataError` naming the file."""
    import yaml

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputDataError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    if b"\x00" in data:
        raise InputDataError(f"{path}: expected a UTF-8 YAML text file, got binary data")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputDataError(
            f"{path}: expected UTF-8 text, got an undecodable byte at offset {exc.start}"
        ) from exc
    if not text.strip():
        raise InputDataError(f"{path}: expected a YAML mapping, got an empty file")
    from metasel._yaml import SpecYAMLError, load_spec_yaml

    try:
        return load_spec_yaml(text)
    except SpecYAMLError as exc:
        loc = f" at line {exc.line}" if exc.line else ""
        raise InputDataError(f"{path}: refused{loc}: {exc}") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise InputDataError(f"{path}: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputDataError(f"{path}: invalid YAML{loc}: {problem}") from exc


def load_task_spec(path: str | Path) -> TaskSpec:
    """Read and validate one task spec YAML file."""
    return parse_task_spec(read_yaml(path), source=str(path))
