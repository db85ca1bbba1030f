"""Importers for the result files of the serving benchmarks people already run.

Each reads one tool's documented output into a validated
:class:`~metasel.data.table.PerfTable` without touching any store (a bad file is refused
before anything is written). Formats, with where each is defined:

- ``vllm-bench``: ``vllm bench serve --save-result`` JSON (``vllm/benchmarks/serve.py``: the
  run's settings, totals, ``mean|median|std|pNN_{ttft,tpot,itl,e2el}_ms`` and per-request
  ``ttfts``/``itls``/``latencies``/``output_lens``, times in seconds).
- ``vllm-sweep``: a ``vllm bench sweep serve`` experiment folder (``vllm/benchmarks/sweep/serve.py``):
  ``SERVE-…-BENCH-…/run=N.json``, each a ``bench serve`` result with the server's and the
  benchmark's overrides merged in (``max_num_seqs``, ``enable_prefix_caching``, …).
- ``guidellm``: GuideLLM's JSON report (``benchmarks.json``; ``GenerativeBenchmarksReport`` in
  ``guidellm/benchmark/schemas``): ``benchmarks[].config.strategy`` and
  ``benchmarks[].metrics.<metric>.successful.{mean, percentiles.pNN}``, latency in seconds.
- ``aiperf``: AIPerf's ``profile_export_aiperf.json`` (AIPerf docs, "Working with Profile Export
  Files"): top-level metrics ``{unit, avg, p50, p90, p99, …}``, ``input_config``, GPU telemetry.
- ``llmperf``: LLMPerf's ``*_summary.json`` (``token_benchmark_ray.py``):
  ``results_<metric>_s_quantiles_pNN`` and ``results_<metric>_s_mean``, seconds.

One record (a run, a benchmark of a report) becomes one observation. Task = the model (by
name; the known Hugging Face models get their dimensions) × the workload the tool measured
(mean prompt and output tokens, request count, arrival: burst, Poisson or constant rate, or a
closed loop of clients); method = engine × its settings, with the same technique vector as
the engines metasel measures itself (:func:`metasel.domain.techniques.engine_techniques`);
hardware = what the caller names. What a file does not state (its engine, the hardware,
often the engine's settings) comes from ``overrides`` (``--set key=value``) and
``hardware``; a record that still lacks one is refused with that field named.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from metasel.errors import InputDataError

if TYPE_CHECKING:  # pragma: no cover
    from metasel.data.table import PerfTable

SERVING_FORMATS: tuple[str, ...] = ("vllm-bench", "vllm-sweep", "guidellm", "aiperf", "llmperf")
#: result files that sit beside the ones read, in the tools' output folders
COMPANIONS = re.compile(r"(_individual_responses\.json|^inputs\.json|^warmup\.json|^summary\.json|\.failure\.json)$")
#: ``--set`` keys that are not engine settings
RECORD_KEYS = ("model", "engine", "method")
#: vLLM server arguments that are engine settings, by their names in a sweep's run files
VLLM_SERVER_SETTINGS: dict[str, str] = {
    "dtype": "dtype", "quantization": "quantization", "max_num_seqs": "max_num_seqs",
    "enable_prefix_caching": "prefix_caching", "enable_chunked_prefill": "chunked_prefill",
    "max_num_batched_tokens": "max_num_batched_tokens", "tensor_parallel_size": "tensor_parallel_size",
    "pipeline_parallel_size": "pipeline_parallel_size", "kv_cache_dtype": "kv_cache_dtype",
    "block_size": "block_size", "gpu_memory_utilization": "gpu_memory_utilization",
}
#: public config dimensions of models often served, beside LLM-Inference-Bench's (importers.HF_MODELS)
SERVED_MODELS: dict[str, dict[str, Any]] = {
    "meta-llama/Llama-3.1-8B-Instruct": dict(arch="llama", layers=32, hidden=4096, heads=32, kv_heads=8,
                                             intermediate=14336, vocab=128256),
    "meta-llama/Llama-3.1-70B-Instruct": dict(arch="llama", layers=80, hidden=8192, heads=64, kv_heads=8,
                                              intermediate=28672, vocab=128256),
    "Qwen/Qwen2.5-7B-Instruct": dict(arch="qwen2", layers=28, hidden=3584, heads=28, kv_heads=4, intermediate=18944,
                                     vocab=152064),
    "mistralai/Mistral-7B-Instruct-v0.3": dict(arch="mistral", layers=32, hidden=4096, heads=32, kv_heads=8,
                                               intermediate=14336, vocab=32768),
}
_TIME_TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1000.0, "sec": 1000.0, "seconds": 1000.0}


# ----------------------------------------------------------------------------- reading files

def _load_json(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputDataError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputDataError(f"{path}: expected UTF-8 JSON, got an undecodable byte at offset {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise InputDataError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def detect(path: Path, data: Any = None) -> str | None:
    """The serving format of a result file or folder, None if it is none of them."""
    if path.is_dir():
        return "vllm-sweep" if next(path.rglob("run=*.json"), None) is not None else None
    if data is None:
        try:
            data = _load_json(path)
        except InputDataError:
            return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("benchmarks"), list) and ("config" in data or "metadata" in data or "args" in data):
        return "guidellm"
    if "input_config" in data or ("time_to_first_token" in data and isinstance(data.get("request_latency"), dict)):
        return "aiperf"
    if "results_ttft_s_mean" in data or "results_num_completed_requests" in data:
        return "llmperf"
    if "completed" in data and ("request_throughput" in data or "output_throughput" in data):
        return "vllm-bench"
    return None


def result_files(path: Path, fmt: str | None) -> list[tuple[Path, str]]:
    """``(file, format)`` for a file, or for every result file in a folder (companion files
    such as LLMPerf's per-request responses and vLLM's summaries are left out; any other
    JSON that is not a known result file is refused, naming it)."""
    if path.is_file():
        found = fmt or detect(path)
        if found is None:
            raise InputDataError(f"{path}: not a result file of {', '.join(SERVING_FORMATS)}; pass --format")
        return [(path, found)]
    if fmt == "vllm-sweep" or (fmt is None and detect(path) == "vllm-sweep"):
        combos = sorted({p.parent for p in path.rglob("run=*.json")})
        if not combos:
            raise InputDataError(f"{path}: expected a vllm bench sweep folder with run=N.json files, found none")
        # a combination's summary.json holds its runs with the overrides merged in; a run file
        # written before the sweep finished the combination has them only in its folder's name
        return [(c / "summary.json", "vllm-sweep") if (c / "summary.json").is_file() else (r, "vllm-sweep")
                for c in combos for r in ([c] if (c / "summary.json").is_file() else sorted(c.glob("run=*.json")))]
    out = []
    for p in sorted(path.rglob("*.json")):
        if COMPANIONS.search(p.name):
            continue
        found = fmt or detect(p)
        if found is None:
            raise InputDataError(f"{p}: not a result file of {', '.join(SERVING_FORMATS)} (in folder {path}); "
                                 f"move it out or import the files one by one")
        out.append((p, found))
    if not out:
        raise InputDataError(f"{path}: neither a metasel export (no manifest.json) nor a folder of serving results "
                             f"(*.json of {', '.join(SERVING_FORMATS)})")
    return out


# ----------------------------------------------------------------------------- small helpers

def _num(value: Any) -> float:
    """A finite number, or NaN (``None``, strings that are not numbers, inf)."""
    if isinstance(value, bool):
        return math.nan
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _map(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _clients(value: Any, where: str, field: str) -> int:
    """A positive whole number of clients or streams, or a clear error naming the field."""
    v = _num(value)
    if not (v == v and v >= 1 and v == int(v)):
        raise InputDataError(f"{where}: {field}: expected a positive whole number of concurrent requests, got {value!r}")
    return int(v)


def _get(obj: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(obj, Mapping):
            obj = obj.get(k)
        elif isinstance(obj, list) and isinstance(k, int) and -len(obj) <= k < len(obj):
            obj = obj[k]
        else:
            return None
    return obj


def _find(obj: Any, key: str, depth: int = 6) -> Any:
    """The first value under ``key`` anywhere in nested mappings (breadth first), or None."""
    level = [obj]
    for _ in range(depth):
        nxt = []
        for o in level:
            if isinstance(o, Mapping):
                if o.get(key) not in (None, "", []):
                    return o[key]
                nxt.extend(v for v in o.values() if isinstance(v, (Mapping, list)))
            elif isinstance(o, list):
                nxt.extend(v for v in o if isinstance(v, (Mapping, list)))
        level = nxt
    return None


def _percentile(values: list[float], q: float) -> float:
    vals = sorted(v for v in values if v == v)
    if not vals:
        return math.nan
    pos = (len(vals) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


def _iso(stamp: Any) -> str:
    """An ISO timestamp from a file's own time (epoch seconds or a date string), '' if none:
    never the import's time, so importing a file twice gives the same observation ids."""
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) and math.isfinite(stamp) and stamp > 0:
        try:
            return datetime.fromtimestamp(float(stamp), tz=timezone.utc).isoformat()
        except (OverflowError, OSError, ValueError):
            return ""
    if isinstance(stamp, str) and stamp.strip():
        for fmt in ("%Y%m%d-%H%M%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
            try:
                return datetime.strptime(stamp.strip(), fmt).isoformat()
            except ValueError:
                continue
        return stamp.strip()
    return ""


def _pcts(prefix: str, p50: Any, p90: Any, p99: Any, scale: float = 1.0) -> dict[str, float]:
    return {f"{prefix}_p50_ms": _num(p50) * scale, f"{prefix}_p90_ms": _num(p90) * scale,
            f"{prefix}_p99_ms": _num(p99) * scale}


def parse_value(text: str) -> Any:
    """A ``--set`` value: true/false, an integer, a number, else the text."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["engine=vllm", "max_num_seqs=64"]`` -> ``{"engine": "vllm", "max_num_seqs": 64}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not value.strip():
            raise InputDataError(f"--set {item!r}: expected KEY=VALUE (e.g. engine=vllm, max_num_seqs=64)")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            raise InputDataError(f"--set {item!r}: expected a lower-case key of letters, digits and _, got {key!r}")
        out[key] = parse_value(value)
    return out


# ----------------------------------------------------------------------------- one record per run

def _record(where: str, **kw: Any) -> dict[str, Any]:
    rec = {"where": where, "model": None, "engine": None, "settings": {}, "prompt_len": math.nan,
           "output_len": math.nan, "num_requests": math.nan, "arrival": None, "metrics": {}, "status": "ok",
           "message": "", "timestamp": "", "tool": "", "gpu": None}
    rec.update(kw)
    return rec


def _vllm_records(path: Path, data: Any, fmt: str) -> Iterator[dict]:
    if not isinstance(data, dict):
        raise InputDataError(f"{path}: expected a JSON object (a vllm bench serve result), got {type(data).__name__}")
    completed = _num(data.get("completed"))
    failed = _num(data.get("failed"))
    failed = 0.0 if failed != failed else failed
    if completed != completed:
        raise InputDataError(f"{path}: completed: expected the number of completed requests, got {data.get('completed')!r}")
    # per-request arrays (seconds; --save-detailed) give every percentile, the summary keys only
    # those asked for (--metric-percentiles); failed requests are left out of both
    errs = _list(data.get("errors"))
    okay = [not e for e in errs]  # per request, where the file lists errors
    per_request = {}
    lats = [_num(v) for v in _list(data.get("latencies"))]
    ttfts = [_num(v) for v in _list(data.get("ttfts"))]
    outs = [_num(v) for v in _list(data.get("output_lens"))]
    if lats:
        per_request["e2e"] = [v for i, v in enumerate(lats) if i >= len(okay) or okay[i]]
    if ttfts:
        per_request["ttft"] = [v for i, v in enumerate(ttfts) if i >= len(okay) or okay[i]]
    if ttfts and lats and len(outs) == len(lats) == len(ttfts):
        per_request["tpot"] = [(lats[i] - ttfts[i]) / (outs[i] - 1) for i in range(len(lats))
                               if outs[i] > 1 and (i >= len(okay) or okay[i])]
    errors = [e for e in errs if e]
    metrics = {
        "latency_ms": _num(data.get("duration")) * 1000.0,
        "throughput_tok_s": _num(data.get("output_throughput")),
        "total_tok_s": _num(data.get("total_token_throughput")),
        "ttft_ms": _num(data.get("mean_ttft_ms")),
        "tpot_ms": _num(data.get("mean_tpot_ms")),
        "goodput_req_s": _num(data.get("request_goodput")),
    }
    for name, key in (("ttft", "ttft"), ("tpot", "tpot"), ("e2e", "e2el")):
        vals = [v for v in per_request.get(name, []) if v == v and v > 0]
        if vals:
            metrics.update({f"{name}_p{q}_ms": _percentile(vals, q) * 1000.0 for q in (50, 90, 99)})
        else:
            metrics.update(_pcts(name, data.get(f"median_{key}_ms", data.get(f"p50_{key}_ms")),
                                 data.get(f"p90_{key}_ms"), data.get(f"p99_{key}_ms")))
    rate = data.get("request_rate")
    rate = math.inf if rate in ("inf", None) else _num(rate)
    conc = data.get("max_concurrency")
    burstiness = _num(data.get("burstiness"))
    if math.isinf(rate):
        arrival = {"process": "concurrency", "clients": _clients(conc, str(path), "max_concurrency")} \
            if conc is not None else {"process": "burst"}
    elif rate == rate and rate > 0:
        if burstiness == burstiness and burstiness != 1.0:
            raise InputDataError(f"{path}: burstiness: {burstiness:g} (gamma-distributed arrivals) has no metasel "
                                 f"arrival process; expected 1 (Poisson)")
        arrival = {"process": "poisson", "rate": rate}
    else:
        raise InputDataError(f"{path}: request_rate: expected a positive number or 'inf', got {data.get('request_rate')!r}")
    settings = {}
    for key, value in data.items():
        name = VLLM_SERVER_SETTINGS.get(key.replace("-", "_").removeprefix("no_"))
        if name is not None and value is not None:
            settings[name] = (not value) if key.replace("-", "_").startswith("no_") and isinstance(value, bool) else value
    total_in, total_out = _num(data.get("total_input_tokens")), _num(data.get("total_output_tokens"))
    message = ""
    if completed == 0:
        message = f"no request completed ({int(failed)} failed)" + (f": {str(errors[0])[:200]}" if errors else "")
    elif failed:
        message = f"{int(failed)} of {int(completed + failed)} requests failed"
    yield _record(
        str(path), model=data.get("model_id") or data.get("tokenizer_id"),
        engine="vllm" if data.get("backend") in ("vllm", None) and fmt in ("vllm-bench", "vllm-sweep") else None,
        engine_hint=f"backend {data.get('backend')!r} is the client protocol, not the server",
        settings=settings, prompt_len=total_in / completed if completed else math.nan,
        output_len=total_out / completed if completed else math.nan,
        num_requests=_num(data.get("num_prompts")) if data.get("num_prompts") else completed + failed,
        arrival=arrival, metrics=metrics, status="ok" if completed > 0 else "error", message=message,
        timestamp=_iso(data.get("date")), tool="vllm bench " + ("sweep serve" if fmt == "vllm-sweep" else "serve"),
        run=data.get("run_number"))


def _guidellm_records(path: Path, data: Any) -> Iterator[dict]:
    benches = data.get("benchmarks")
    if not benches:
        raise InputDataError(f"{path}: benchmarks: expected a non-empty list of GuideLLM benchmarks, got {benches!r}")
    version = _find(data.get("metadata"), "guidellm_version") or ""
    for i, b in enumerate(benches):
        where = f"{path}: benchmarks[{i}]"
        if not isinstance(b, Mapping) or not isinstance(b.get("metrics"), Mapping):
            raise InputDataError(f"{where}.metrics: expected GuideLLM's metrics mapping, got none")
        m = b["metrics"]

        def ok(name: str, stat: str = "mean", _m=m) -> float:
            s = _get(_m, name, "successful")
            return _num(_get(s, "percentiles", stat) if stat.startswith("p") else _get(s, stat))

        strategy = _map(_get(b, "config", "strategy") or _get(b, "args", "strategy"))
        kind = strategy.get("type_") or strategy.get("type")
        if kind == "synchronous":
            arrival = {"process": "concurrency", "clients": 1}
        elif kind == "concurrent":
            arrival = {"process": "concurrency", "clients": _clients(strategy.get("streams"), where,
                                                                       "config.strategy.streams")}
        elif kind == "throughput":
            mc = strategy.get("max_concurrency")
            arrival = {"process": "concurrency", "clients": _clients(mc, where, "config.strategy.max_concurrency")} \
                if mc is not None else {"process": "burst"}
        elif kind in ("constant", "poisson"):
            arrival = {"process": kind, "rate": _num(strategy.get("rate"))}
        else:
            raise InputDataError(f"{where}.config.strategy.type_: expected synchronous, concurrent, throughput, "
                                 f"constant or poisson, got {kind!r}")
        totals = _map(_get(m, "request_totals"))
        done, errored = _num(totals.get("successful")), _num(totals.get("errored"))
        done = 0.0 if done != done else done
        errored = 0.0 if errored != errored else errored
        duration = _num(b.get("duration"))
        if duration != duration:
            duration = _num(b.get("end_time")) - _num(b.get("start_time"))
        metrics = {
            "latency_ms": duration * 1000.0, "throughput_tok_s": ok("output_tokens_per_second"),
            "total_tok_s": ok("tokens_per_second"), "ttft_ms": ok("time_to_first_token_ms"),
            "tpot_ms": ok("time_per_output_token_ms"),
            **_pcts("ttft", ok("time_to_first_token_ms", "p50"), ok("time_to_first_token_ms", "p90"),
                    ok("time_to_first_token_ms", "p99")),
            **_pcts("tpot", ok("time_per_output_token_ms", "p50"), ok("time_per_output_token_ms", "p90"),
                    ok("time_per_output_token_ms", "p99")),
            **_pcts("e2e", ok("request_latency", "p50"), ok("request_latency", "p90"), ok("request_latency", "p99"),
                    scale=1000.0),
        }
        backend = _get(b, "config", "backend") or {}
        model = _find(backend, "model") or _find(data.get("config"), "model") or _find(b.get("args"), "model")
        yield _record(
            where, model=model if isinstance(model, str) else None, settings={}, prompt_len=ok("prompt_token_count"),
            output_len=ok("output_token_count"), num_requests=done + errored, arrival=arrival, metrics=metrics,
            status="ok" if done > 0 else "error",
            message=(f"no request completed ({int(errored)} errored)" if done == 0 else
                     f"{int(errored)} of {int(done + errored)} requests errored" if errored else ""),
            timestamp=_iso(b.get("start_time")), tool=f"guidellm {version}".strip())


def _aiperf_ms(data: Mapping, tag: str, stat: str) -> float:
    m = data.get(tag)
    if not isinstance(m, Mapping):
        return math.nan
    unit = str(m.get("unit", "ms")).lower()
    scale = _TIME_TO_MS.get(unit)
    return _num(m.get(stat)) * scale if scale is not None else math.nan


def _aiperf_records(path: Path, data: Any) -> Iterator[dict]:
    def avg(tag: str) -> float:
        return _num(_get(data, tag, "avg"))

    cfg = _map(data.get("input_config"))
    models = _find(cfg, "model_names")
    model = models[0] if isinstance(models, list) and models else _get(_find(cfg, "models"), "items", 0, "name")
    conc, rate = _num(_find(cfg, "concurrency")), _num(_find(cfg, "request_rate"))
    mode = str(_find(cfg, "request_rate_mode") or _find(cfg, "arrival_pattern") or "").lower()
    if rate == rate and rate > 0:
        arrival = {"process": "constant" if "constant" in mode else "poisson", "rate": rate}
    elif conc == conc:
        arrival = {"process": "concurrency", "clients": _clients(conc, str(path), "input_config.loadgen.concurrency")}
    else:
        arrival = None
    duration_s = avg("benchmark_duration")
    unit = str(_get(data, "benchmark_duration", "unit") or "sec").lower()
    duration_ms = duration_s * _TIME_TO_MS.get(unit, 1000.0)
    count, errors = avg("request_count"), avg("error_request_count")
    count = 0.0 if count != count else count
    errors = 0.0 if errors != errors else errors
    metrics = {
        "latency_ms": duration_ms, "throughput_tok_s": avg("output_token_throughput"),
        "ttft_ms": _aiperf_ms(data, "time_to_first_token", "avg"),
        # AIPerf's inter-token latency is per request (latency - TTFT) / (output tokens - 1): TPOT
        "tpot_ms": _aiperf_ms(data, "inter_token_latency", "avg"), "goodput_req_s": avg("goodput"),
    }
    total_out, total_in = avg("total_osl"), avg("total_isl")
    if total_out == total_out and total_in == total_in and duration_ms > 0:
        metrics["total_tok_s"] = (total_in + total_out) / (duration_ms / 1000.0)
    for name, tag in (("ttft", "time_to_first_token"), ("tpot", "inter_token_latency"), ("e2e", "request_latency")):
        metrics.update({f"{name}_p{q}_ms": _aiperf_ms(data, tag, f"p{q}") for q in (50, 90, 99)})
    gpus = []
    for ep in _map(_get(data, "telemetry_data", "endpoints")).values():
        gpus.extend(g.get("gpu_name") for g in _map(_get(ep, "gpus")).values() if isinstance(g, Mapping))
    gpus = [g for g in gpus if isinstance(g, str) and g]
    yield _record(
        str(path), model=model if isinstance(model, str) else None, prompt_len=avg("input_sequence_length"),
        output_len=avg("output_sequence_length"), num_requests=count + errors, arrival=arrival, metrics=metrics,
        status="ok" if count > 0 else "error",
        message=(f"no request completed ({int(errors)} errors)" if count == 0 else
                 f"{int(errors)} of {int(count + errors)} requests failed" if errors else ""),
        timestamp=_iso(data.get("start_time")), tool=f"aiperf {data.get('aiperf_version') or ''}".strip(),
        gpu=(gpus[0], len(gpus)) if gpus and len(set(gpus)) == 1 else None,
        arrival_hint="input_config states neither concurrency nor request_rate")


def _llmperf_records(path: Path, data: Any) -> Iterator[dict]:
    def s(metric: str, stat: str) -> float:
        key = f"results_{metric}_s_{stat}" if stat in ("mean",) else f"results_{metric}_s_quantiles_{stat}"
        return _num(data.get(key)) * 1000.0

    done, errors = _num(data.get("results_num_completed_requests")), _num(data.get("results_number_errors"))
    done = 0.0 if done != done else done
    errors = 0.0 if errors != errors else errors
    per_min = _num(data.get("results_num_completed_requests_per_min"))
    duration_ms = done / per_min * 60_000.0 if per_min > 0 else math.nan
    conc = _num(data.get("num_concurrent_requests"))
    metrics = {
        "latency_ms": duration_ms, "throughput_tok_s": _num(data.get("results_mean_output_throughput_token_per_s")),
        "ttft_ms": s("ttft", "mean"),
        # LLMPerf's inter-token latency is per request: its generation time over its output tokens
        "tpot_ms": s("inter_token_latency", "mean"),
        **{f"{n}_p{q}_ms": s(k, f"p{q}") for n, k in (("ttft", "ttft"), ("tpot", "inter_token_latency"),
                                                       ("e2e", "end_to_end_latency")) for q in (50, 90, 99)},
    }
    p_in = _num(data.get("results_number_input_tokens_mean"))
    p_out = _num(data.get("results_number_output_tokens_mean"))
    yield _record(
        str(path), model=data.get("model"),
        prompt_len=p_in if p_in == p_in else _num(data.get("mean_input_tokens")),
        output_len=p_out if p_out == p_out else _num(data.get("mean_output_tokens")),
        num_requests=_num(data.get("results_num_requests_started")) or done + errors,
        arrival={"process": "concurrency", "clients": _clients(conc, str(path), "num_concurrent_requests")}
        if data.get("num_concurrent_requests") is not None else None,
        metrics=metrics, status="ok" if done > 0 else "error",
        message=(f"no request completed ({int(errors)} errors)" if done == 0 else
                 f"{int(errors)} of {int(done + errors)} requests failed" if errors else ""),
        timestamp=_iso(data.get("timestamp")), tool=f"llmperf {data.get('version') or ''}".strip(),
        arrival_hint="num_concurrent_requests is missing")


def folder_overrides(name: str) -> dict[str, Any]:
    """The server's overrides a sweep spells in a combination's folder name
    (``SERVE--max_num_seqs=4-enable_prefix_caching=True-BENCH--request_rate=4`` -> ``max_num_seqs``
    4, ``enable_prefix_caching`` True)."""
    serve = name.split("BENCH-")[0].removeprefix("SERVE-")
    pairs = re.findall(r"([A-Za-z_][\w.]*)=(.*?)(?=-[A-Za-z_][\w.]*=|-$|$)", serve.strip("-"))
    return {k.replace("-", "_"): parse_value(v) for k, v in pairs if v}


def _sweep_records(path: Path, data: Any) -> Iterator[dict]:
    if isinstance(data, list):  # a combination's summary.json: its runs, overrides merged in
        for i, run in enumerate(data):
            for rec in _vllm_records(path, run, "vllm-sweep"):
                rec["where"] = f"{path}: run {run.get('run_number', i) if isinstance(run, dict) else i}"
                yield rec
        return
    extra = folder_overrides(path.parent.name)
    yield from _vllm_records(path, {**{k: v for k, v in extra.items() if k not in data}, **data}, "vllm-sweep")


READERS = {"vllm-bench": lambda p, d: _vllm_records(p, d, "vllm-bench"),
           "vllm-sweep": _sweep_records,
           "guidellm": _guidellm_records, "aiperf": _aiperf_records, "llmperf": _llmperf_records}


# ----------------------------------------------------------------------------- records -> table

def method_of(engine: str, settings: Mapping[str, Any]) -> dict:
    """The method descriptor of an engine configuration (the collector's naming and vector)."""
    from metasel.domain import techniques as T

    settings = dict(settings)
    if not any(k in settings for k in T.PRECISION_SETTINGS):
        # a file that does not state the dtype served the model's own (vLLM's --dtype auto): 16-bit
        # for the checkpoints people serve; the method's name says no dtype was given
        techniques_settings = {**settings, "dtype": "auto"}
    else:
        techniques_settings = settings
    for key in ("max_num_seqs", "max_batch", "n_batch"):
        v = settings.get(key)
        if v is not None and not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise InputDataError(f"settings: {key}: expected a positive whole number, got {v!r}")
    for key in (*T.PRECISION_SETTINGS, "quantization"):
        if key in settings and not isinstance(settings[key], str):
            raise InputDataError(f"settings: {key}: expected a precision word such as bfloat16, got {settings[key]!r}")
    try:
        techniques = T.engine_techniques(engine, techniques_settings)
    except ValueError as exc:
        raise InputDataError(f"settings: {exc}; pass --set dtype=... with one of those") from None
    name = T.engine_method_name(engine, settings)
    desc = f"{engine}: " + (", ".join(f"{k}={v}" for k, v in settings.items()) or "its default settings")
    return {"method": name, "techniques": techniques, "description": desc}


def _task_of(rec: dict, models: Mapping[str, dict]) -> dict:
    from metasel.spec import task_id_of

    where = rec["where"]
    arrival = rec["arrival"]
    n = int(round(rec["num_requests"])) if rec["num_requests"] == rec["num_requests"] else 0
    from metasel.spec.task import MAX_SIZE

    if not 1 <= n <= MAX_SIZE["num_requests"]:
        raise InputDataError(f"{where}: num_requests: expected the number of requests sent "
                             f"(1 to {MAX_SIZE['num_requests']:,}), got {rec['num_requests']!r}")
    if arrival["process"] == "concurrency" and not 1 <= arrival["clients"] <= MAX_SIZE["clients"]:
        raise InputDataError(f"{where}: concurrency: expected 1 to {MAX_SIZE['clients']:,} clients, "
                             f"got {arrival['clients']!r}")
    batch = min(int(arrival["clients"]) if arrival["process"] == "concurrency" else n, MAX_SIZE["batch_size"])
    if arrival["process"] in ("poisson", "constant") and not (arrival["rate"] > 0):
        raise InputDataError(f"{where}: request rate: expected a positive number, got {arrival['rate']!r}")
    lengths = {}
    for key in ("prompt_len", "output_len"):
        v = rec[key]
        top = MAX_SIZE["length" if key == "prompt_len" else "output_len"]
        if not (v == v and 0.5 <= v <= top):
            raise InputDataError(f"{where}: {key}: expected the mean {'prompt' if key == 'prompt_len' else 'output'} "
                                 f"tokens per request (1 to {top:,}), got {v!r}" if v == v else
                                 f"{where}: {key}: expected the mean {'prompt' if key == 'prompt_len' else 'output'} "
                                 f"tokens per request, the file states none")
        lengths[key] = int(round(v))
    workload = {**lengths, "batch_size": batch, "num_requests": n, "shared_prefix": 0.0, "domain": None}
    if arrival["process"] != "burst":
        workload["arrival"] = dict(arrival)
    model = {**models.get(rec["model"], {"arch": "unknown"}), "hf_id": rec["model"]}
    spec = {"model": model, "workload": workload}
    short = str(rec["model"]).rstrip("/").split("/")[-1]
    proc = arrival["process"]
    load = {"burst": f"burst of {n}", "concurrency": f"{arrival.get('clients')} clients",
            "poisson": f"poisson {arrival.get('rate', 0):g}/s", "constant": f"{arrival.get('rate', 0):g}/s"}[proc]
    return {"task_id": task_id_of(spec), "name": f"{short} in{lengths['prompt_len']} out{lengths['output_len']} {load}",
            "spec": spec, "features": {}}


def _hardware_of(rec: dict, hardware: dict | None) -> dict:
    if hardware is not None:
        return hardware
    if rec["gpu"] is not None:
        from metasel.data.importers import ACCELERATORS

        name, count = rec["gpu"]
        hits = sorted((k for k in ACCELERATORS if re.search(rf"\b{re.escape(k.lower())}\b", name.lower())), key=len)
        known = dict(ACCELERATORS[hits[-1]]) if hits else {}
        hid = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + f"-x{count}"
        return {"hardware_id": hid, "name": f"{name} x{count}", "specs": {
            "device": "gpu", "accelerator": name, "count": count, **known,
            **({"total_tflops": known["peak_tflops"] * count, "total_mem_bw_gbs": known["mem_bw_gbs"] * count,
                "total_memory_gb": known["memory_gb"] * count} if known else {})}}
    raise InputDataError(f"{rec['where']}: hardware: the file does not say which machine served the requests; "
                         f"pass --hardware FILE (a hardware YAML, as for suggest) or --hardware auto (this machine)")


def read_serving(path: str | Path, fmt: str | None = None, *, overrides: Mapping[str, Any] | None = None,
                 hardware: dict | None = None) -> "PerfTable":
    """Read a serving benchmark's result file (or a folder of them) into a performance table.

    Args:
        fmt: one of :data:`SERVING_FORMATS`, or None to detect it from the content.
        overrides: ``--set`` values: ``model``, ``engine``, ``method`` (a name for the method)
            and engine settings (``max_num_seqs``, ``dtype``, ``quantization``, …), which take
            precedence over what a file states.
        hardware: the hardware descriptor of the machine that served the requests (from
            ``--hardware``); without it, only a file that names its GPUs (AIPerf's telemetry)
            can be read.
    """
    from metasel.data.importers import HF_MODELS
    from metasel.data.table import PerfTable

    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{path}: no such file or folder")
    if fmt is not None and fmt not in SERVING_FORMATS:
        raise InputDataError(f"format: expected one of {list(SERVING_FORMATS)}, got {fmt!r}")
    overrides = dict(overrides or {})
    settings_over = {k: v for k, v in overrides.items() if k not in RECORD_KEYS}
    tasks, methods, hws, rows = {}, {}, {}, []
    for file, kind in result_files(path, fmt):
        data = _load_json(file)
        if not isinstance(data, dict) and not (kind == "vllm-sweep" and isinstance(data, list)):
            raise InputDataError(f"{file}: expected a JSON object ({kind} result), got {type(data).__name__}")
        for rec in READERS[kind](file, data):
            for key in ("model", "engine"):
                if overrides.get(key) is not None:
                    rec[key] = str(overrides[key])
            if rec["model"] is not None and (not isinstance(rec["model"], str) or not rec["model"].strip()):
                raise InputDataError(f"{rec['where']}: model: expected the served model's name, got {rec['model']!r}")
            if not rec["model"]:
                raise InputDataError(f"{rec['where']}: model: the file does not name the model served; "
                                     f"pass --set model=NAME")
            if not rec["engine"]:
                why = f" ({rec['engine_hint']})" if rec.get("engine_hint") else ""
                raise InputDataError(f"{rec['where']}: engine: the file does not say which engine served the "
                                     f"requests{why}; pass --set engine=NAME (vllm, llama_cpp, sglang, …)")
            if rec["arrival"] is None:
                raise InputDataError(f"{rec['where']}: arrival: {rec.get('arrival_hint', 'not stated')}; "
                                     f"the load it measured is unknown")
            settings = {**rec["settings"], **settings_over}
            try:
                method = method_of(rec["engine"], settings)
            except InputDataError as exc:
                raise InputDataError(f"{rec['where']}: {exc}") from None
            if overrides.get("method"):
                method = {**method, "method": str(overrides["method"])}
            task = _task_of(rec, {**HF_MODELS, **SERVED_MODELS})
            hw = _hardware_of(rec, hardware)
            for store, key, desc in ((tasks, task["task_id"], task), (methods, method["method"], method),
                                     (hws, hw["hardware_id"], hw)):
                if key in store and json.dumps(store[key], sort_keys=True) != json.dumps(desc, sort_keys=True):
                    raise InputDataError(f"{rec['where']}: {key!r} is described two ways in this import")
                store[key] = desc
            metrics = {k: v for k, v in rec["metrics"].items() if v == v and v is not None}
            if rec["status"] == "ok" and not any(k in metrics for k in ("throughput_tok_s", "ttft_ms", "latency_ms")):
                raise InputDataError(f"{rec['where']}: metrics: expected throughput, TTFT or duration, found none")
            rows.append({
                "task_id": task["task_id"], "method": method["method"], "hardware_id": hw["hardware_id"],
                **(metrics if rec["status"] == "ok" else {}), "repeats": 1, "status": rec["status"],
                "message": rec["message"], "timestamp": rec["timestamp"],
                "versions": json.dumps({"tool": rec["tool"]}), "source": f"{kind}:{file.name}",
                "flags": "",
            })
    return PerfTable(rows, list(tasks.values()), list(methods.values()), list(hws.values()), source=str(path))
