"""The load generator and the serving metrics, shared by every engine backend.

Stdlib only: this module runs inside each engine's own environment (started by path, see
``worker.py``) and is imported by metasel's tests as ``metasel.bench.engines.runtime.loadgen``.

A serve is a list of requests (prompt token ids, the same ``output_len`` for all) that
arrive by the workload's arrival process, measured from the serve's start:

- ``burst``: all at t = 0 (the offline case);
- ``poisson``: exponential gaps at ``rate`` requests/s (times drawn by the collector, so every
  method of a task gets the same ones);
- ``constant``: evenly spaced at ``rate`` requests/s (GuideLLM's constant rate);
- ``concurrency``: a closed loop of ``clients`` clients, each sending its next request when
  its previous one finished.

Offline engines are driven by :func:`serve_batched`, a scheduler that behaves like a batching
server: whenever the engine is idle it takes up to ``max_batch`` requests that have arrived
and runs them as one batch, stamping each request's first token and finish. Servers (vLLM)
are driven over HTTP by ``be_vllm``; both end in :func:`summarise`, the way ``vllm bench
serve`` reports: TTFT, TPOT and end-to-end latency percentiles, throughput and goodput.
"""

from __future__ import annotations

import math
import time

PERCENTILES = (50, 90, 99)


class Request:
    """One request: its prompt, when it arrived, its first token and finish (seconds from the serve's start)."""

    __slots__ = ("index", "prompt", "arrival", "first", "done", "tokens")

    def __init__(self, index: int, prompt: list[int], arrival: float):
        self.index, self.prompt, self.arrival = index, prompt, arrival
        self.first = math.nan
        self.done = math.nan
        self.tokens = 0

    def got(self, t: float, n: int = 1) -> None:
        """``n`` tokens arrived at ``t`` (seconds from the serve's start)."""
        if self.tokens == 0:
            self.first = t
        self.tokens += n
        self.done = t


def left_pad(prompts: list[list[int]], pad: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    """A batch of prompts left-padded to the longest, and its attention mask."""
    width = max(map(len, prompts))
    return ([[pad] * (width - len(p)) + list(p) for p in prompts],
            [[0] * (width - len(p)) + [1] * len(p) for p in prompts])


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), NaN for no values."""
    xs = sorted(v for v in values if not math.isnan(v))
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarise(serves: list[list[Request]], output_len: int, *, slo: dict | None = None) -> dict:
    """Serving metrics over one or more serves of the workload (times in ms, rates per second).

    Percentiles pool the requests of every serve; ``latency_ms`` is the mean makespan (first
    arrival to last finish) and the rates divide by the summed makespans. ``ttft_ms`` and
    ``tpot_ms`` are means over requests (as the transformers collector reports them) beside
    their percentiles; ``goodput_req_s`` counts the requests that met every SLO bound given
    (``ttft_ms``, ``tpot_ms``, ``e2e_ms``) per second, NaN without an SLO.
    """
    ttft, tpot, e2e, makespans, gen, prompt = [], [], [], [], 0, 0
    for requests in serves:
        for r in requests:
            if r.tokens != output_len:
                raise RuntimeError(f"request {r.index} generated {r.tokens} tokens, expected {output_len}")
            ttft.append(1000.0 * (r.first - r.arrival))
            tpot.append(1000.0 * (r.done - r.first) / max(1, output_len - 1))
            e2e.append(1000.0 * (r.done - r.arrival))
            gen += output_len
            prompt += len(r.prompt)
        makespans.append(max(r.done for r in requests) - min(r.arrival for r in requests))
    total = sum(makespans)
    out = {"latency_ms": 1000.0 * total / len(makespans), "throughput_tok_s": gen / total,
           "total_tok_s": (gen + prompt) / total, "ttft_ms": sum(ttft) / len(ttft), "tpot_ms": sum(tpot) / len(tpot)}
    for name, values in (("ttft", ttft), ("tpot", tpot), ("e2e", e2e)):
        for q in PERCENTILES:
            out[f"{name}_p{q}_ms"] = percentile(values, q)
    bounds = {k: float(v) for k, v in (slo or {}).items() if v is not None}
    if bounds:
        good = sum(all(vals[i] <= bounds[k] for k, vals in (("ttft_ms", ttft), ("tpot_ms", tpot), ("e2e_ms", e2e))
                       if k in bounds) for i in range(len(ttft)))
        out["goodput_req_s"] = good / total
    else:
        out["goodput_req_s"] = math.nan
    return out


def make_requests(prompts: list[list[int]], arrival: dict, arrivals: list[float] | None) -> list[Request]:
    """Requests with their arrival times: ``arrivals`` (drawn by the collector) for ``poisson`` and
    ``constant``, 0 for ``burst``; for ``concurrency`` the first ``clients`` arrive at 0 and the
    rest get their time when a client frees up (NaN until then)."""
    kind = arrival.get("process", "burst")
    reqs = []
    for i, p in enumerate(prompts):
        if kind in ("poisson", "constant"):
            t = float(arrivals[i])
        elif kind == "concurrency":
            t = 0.0 if i < int(arrival["clients"]) else math.nan
        else:
            t = 0.0
        reqs.append(Request(i, p, t))
    return reqs


def serve_batched(prompts: list[list[int]], output_len: int, arrival: dict, arrivals: list[float] | None,
                  max_batch: int, run_batch, *, clock=time.perf_counter, sleep=time.sleep) -> list[Request]:
    """Serve requests with an offline engine behaving as a batching server.

    ``run_batch(prompts, output_len, on_token, stamp)`` generates ``output_len`` tokens for
    each prompt (one batch) and calls ``on_token(i)`` whenever prompt ``i`` of the batch gets
    a token — or, for an engine that cannot stream a batch, ``stamp(first, done)``
    once with the batch's first-token and finish times (``clock`` readings). Returns the
    requests with their times (seconds from the serve's start).
    """
    reqs = make_requests(prompts, arrival, arrivals)
    closed = arrival.get("process") == "concurrency"
    queue = list(reqs)  # in arrival order (poisson times ascend; concurrency releases in index order)
    t0 = clock()
    while queue:
        now = clock() - t0
        ready = [r for r in queue if not math.isnan(r.arrival) and r.arrival <= now]
        if not ready:
            nxt = min(r.arrival for r in queue if not math.isnan(r.arrival))
            sleep(max(0.0, nxt - now))
            continue
        batch = ready[:max(1, int(max_batch))]
        for r in batch:
            queue.remove(r)

        def on_token(i, batch=batch):
            batch[i].got(clock() - t0)

        def stamp(first, done, batch=batch):  # an engine that cannot stream a batch: one time for all
            for r in batch:
                r.first, r.done, r.tokens = first - t0, done - t0, output_len

        run_batch([r.prompt for r in batch], output_len, on_token, stamp)
        if closed:  # each finished request frees its client, which sends the next waiting request now
            finished_at = clock() - t0
            waiting = [r for r in queue if math.isnan(r.arrival)]
            for r in waiting[:len(batch)]:
                r.arrival = finished_at
    return reqs


def median_runs(runs: list[dict]) -> dict:
    """The median of each metric over repeats (NaN where any repeat has none)."""
    import statistics

    return {k: statistics.median(r[k] for r in runs) if not any(math.isnan(r[k]) for r in runs) else math.nan
            for k in runs[0]}


def serve_streams(stream, prompts: list[list[int]], output_len: int, arrival: dict, arrivals: list[float] | None,
                  *, clock=time.perf_counter, sleep=time.sleep) -> list[Request]:
    """Serve requests against a server, one client thread per request started at its arrival
    time (burst, poisson, constant), or one thread per client of a closed loop (concurrency).

    ``stream(prompt, output_len, on_tokens)`` sends one request and calls ``on_tokens(k)``
    whenever ``k`` tokens arrive. Returns the requests with their times (seconds from the
    serve's start); the first request that failed raises once every thread is done.
    """
    import threading
    from collections import deque

    reqs = make_requests(prompts, arrival, arrivals)
    errors: list[BaseException] = []
    t0 = clock()

    def run(r):
        try:
            stream(r.prompt, output_len, lambda k: r.got(clock() - t0, k))
        except Exception as exc:  # noqa: BLE001 - raised below, after every thread is done
            errors.append(exc)

    threads = []
    if arrival.get("process") == "concurrency":
        queue = deque(reqs)
        lock = threading.Lock()

        def client():
            while True:
                with lock:
                    if not queue:
                        return
                    r = queue.popleft()
                    r.arrival = clock() - t0
                run(r)

        threads = [threading.Thread(target=client) for _ in range(int(arrival["clients"]))]
        for th in threads:
            th.start()
    else:
        for r in sorted(reqs, key=lambda r: r.arrival):
            wait = r.arrival - (clock() - t0)
            if wait > 0:
                sleep(wait)
            th = threading.Thread(target=run, args=(r,))
            th.start()
            threads.append(th)
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return reqs


class ServerError(RuntimeError):
    """An OpenAI-compatible server refused or broke off a request."""


def stream_completion(host: str, port: int, model: str, prompt: list[int], n: int, on_tokens, *,
                      path: str = "/v1/completions", timeout: float = 600.0, token_ids: bool = False,
                      scheme: str = "http", headers: dict | None = None) -> list[int]:
    """One streaming OpenAI-compatible completion of exactly ``n`` tokens from a prompt of token ids.

    Asks for ``max_tokens = min_tokens = n`` with ``ignore_eos`` (vLLM's, llama.cpp's and
    SGLang's way to generate a fixed length) at temperature 0, and calls ``on_tokens(k)`` as
    chunks arrive: ``k`` is the chunk's token count (its logprobs' tokens, else 1 per chunk with
    text). A final ``usage`` chunk (``stream_options.include_usage``) corrects the count to the
    server's own. With ``token_ids`` (vLLM's ``return_tokens_as_token_ids``) the generated ids are
    returned. Raises :class:`ServerError` with the server's answer on a refusal.
    """
    import http.client
    import json

    body = {"model": model, "prompt": list(prompt), "max_tokens": n, "min_tokens": n, "ignore_eos": True,
            "temperature": 0.0, "stream": True, "stream_options": {"include_usage": True}}
    if token_ids:
        body.update(logprobs=0, return_tokens_as_token_ids=True)
    conn_cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(host, port, timeout=timeout)
    ids: list[int] = []
    counted = 0
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        if resp.status != 200:
            raise ServerError(f"the server answered {resp.status} {resp.reason}: "
                              f"{resp.read()[:300].decode('utf-8', 'replace').strip()}")
        usage = None
        for raw in resp:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise ServerError(f"the server streamed a line that is not JSON: {data[:120]!r}") from None
            if chunk.get("error"):
                raise ServerError(f"the server reported an error: {str(chunk['error'])[:300]}")
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                toks = (choice.get("logprobs") or {}).get("tokens") or []
                k = len(toks) if toks else (1 if choice.get("text") else 0)
                if token_ids and toks:
                    ids.extend(int(t.split(":", 1)[1]) for t in toks)
                if k:
                    counted += k
                    on_tokens(k)
        done = int(usage.get("completion_tokens") or 0) if usage else 0
        if done > counted:  # chunks that carried several tokens: the rest arrived with the last one
            on_tokens(done - counted)
    finally:
        conn.close()
    return ids
