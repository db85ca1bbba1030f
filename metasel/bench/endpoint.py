"""Benchmark a running OpenAI-compatible server: ``metasel collect --endpoint URL``.

The server is whatever the user already runs (vLLM, llama.cpp's server, SGLang, … on this
machine or another node); metasel sends it the task's workload with the same load generator
and the same prompts (token ids drawn from the task's seed) as the engines it runs itself
(:func:`metasel.bench.engines.runtime.loadgen.serve_streams`), one warm-up serve, then
``repeats`` measured serves, and stores the median of each metric as one observation of a
method the user names, on the hardware the user names (or this machine's, probed).

Each request is a streaming ``/v1/completions`` call with the prompt as token ids,
``max_tokens = min_tokens = output_len`` and ``ignore_eos`` (:func:`loadgen.stream_completion`):
a server that cannot take token ids or a fixed length answers with an error, which is
recorded as the observation's failure with the server's words.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import urllib.parse

from metasel.errors import InputDataError


def parse_endpoint(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path prefix)`` of an endpoint URL; ``/v1`` is added when missing."""
    u = urllib.parse.urlsplit(url.strip())
    if u.scheme not in ("http", "https") or not u.hostname:
        raise InputDataError(f"--endpoint {url!r}: expected an http(s) URL such as http://127.0.0.1:8000, got {url!r}")
    try:
        port = u.port or (443 if u.scheme == "https" else 80)
    except ValueError:
        raise InputDataError(f"--endpoint {url!r}: expected a port number after the host") from None
    prefix = u.path.rstrip("/")
    if not prefix.endswith("/v1"):
        prefix += "/v1"
    return u.scheme, u.hostname, port, prefix


def served_models(url: str, *, timeout: float = 10.0) -> list[str]:
    """The model ids the server lists at ``GET /v1/models``; a clear error when it does not answer."""
    import http.client

    scheme, host, port, prefix = parse_endpoint(url)
    conn = (http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection)(host, port, timeout=timeout)
    try:
        conn.request("GET", f"{prefix}/models")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise InputDataError(f"--endpoint {url}: GET {prefix}/models answered {resp.status} {resp.reason}; "
                                 f"is this an OpenAI-compatible server?")
        data = json.loads(body)
    except (OSError, http.client.HTTPException) as exc:
        raise InputDataError(f"--endpoint {url}: cannot reach the server ({exc}); is it running?") from None
    except ValueError:
        raise InputDataError(f"--endpoint {url}: GET {prefix}/models did not answer JSON; "
                             f"is this an OpenAI-compatible server?") from None
    finally:
        conn.close()
    return [m.get("id") for m in data.get("data", []) if isinstance(m, dict) and m.get("id")]


def endpoint_method(name: str, url: str, *, engine: str | None = None, settings: dict | None = None) -> dict:
    """The method descriptor of a measured endpoint: the engine's technique vector when the user
    names its engine (and settings), else no techniques (the method is known by its name only)."""
    from metasel.domain import techniques as T

    settings = dict(settings or {})
    techniques: dict[str, float] = {}
    if engine:
        try:
            techniques = T.engine_techniques(engine, settings)
        except ValueError as exc:
            raise InputDataError(f"--set: {exc}") from None
    what = f"{engine} " if engine else ""
    desc = f"{what}server at {url}" + (": " + ", ".join(f"{k}={v}" for k, v in settings.items()) if settings else "")
    return {"method": name, "techniques": techniques, "description": desc}


def measure_endpoint(url: str, task: dict, *, model: str, repeats: int, seed: int,
                     headers: dict | None = None, timeout_s: float = 600.0) -> dict:
    """Measure one task on a running server; the failure, if any, is the result (as the collector's)."""
    from metasel.bench.engines.runtime import loadgen
    from metasel.bench.engines.client import arrival_times
    from metasel.bench.serve import make_prompts

    scheme, host, port, prefix = parse_endpoint(url)
    spec_model, workload = task["model"], task["workload"]
    prompts, _ = make_prompts(workload, int(spec_model["vocab"]), seed)
    out_len = int(workload["output_len"])
    arrival = workload.get("arrival") or {"process": "burst"}
    arrivals = arrival_times(workload, len(prompts), seed)

    def stream(prompt, n, on_tokens):
        loadgen.stream_completion(host, port, model, prompt, n, on_tokens, path=f"{prefix}/completions",
                                  timeout=timeout_s, scheme=scheme, headers=headers)

    def one_serve():
        return loadgen.serve_streams(stream, prompts, out_len, arrival, arrivals)

    slo = workload.get("slo") or {}
    try:
        w0 = time.perf_counter()
        loadgen.summarise([one_serve()], out_len, slo=slo)  # warm-up: not measured
        warm_s = time.perf_counter() - w0
        runs = [loadgen.summarise([one_serve()], out_len, slo=slo) for _ in range(int(repeats))]
    except (loadgen.ServerError, OSError, RuntimeError) as exc:
        from metasel.bench.serve import classify_text

        return {"status": classify_text(str(exc))["status"], "message": f"{url}: {exc}"[:500], "repeats": 0,
                "seed": seed}
    result = loadgen.median_runs(runs)
    thr = [r["throughput_tok_s"] for r in runs]
    result.update(status="ok", repeats=len(runs), seed=seed, setup_s=warm_s,
                  spread=statistics.pstdev(thr) / statistics.median(thr) if len(thr) > 1 else 0.0,
                  message=f"endpoint {url}, model {model}", peak_mem_mb=math.nan)
    return result


def collect_endpoint(url: str, spec, store, *, method: dict, hardware: dict, model: str | None = None,
                     repeats: int = 3, seed: int = 0, say=print) -> dict:
    """Measure a task spec on the endpoint and store the observation (one transaction); returns the result."""
    from metasel.bench.cells import Cell, cell_seed, observation_table

    listed = served_models(url)
    if model is None:
        if not listed:
            raise InputDataError(f"--endpoint {url}: the server lists no model; pass --served-model NAME")
        model = listed[0]
    elif listed and model not in listed:
        raise InputDataError(f"--served-model {model!r}: the server at {url} serves {listed}")
    task = spec.task_dict()
    cell = Cell(spec.task_id, spec.name, task, method["method"], repeats, cell_seed(seed, spec.task_id))
    say(f"measuring {spec.name} on {url} (model {model}) as method {method['method']!r}: "
        f"1 warm-up + {repeats} serves of {task['workload']['num_requests']} requests")
    result = measure_endpoint(url, task, model=model, repeats=repeats, seed=cell.seed)
    result = {**result, "versions": {"endpoint": url, "served_model": model}}
    store.append(observation_table(cell, result, hardware, {}, method=method, source="collect:endpoint"))
    return result
