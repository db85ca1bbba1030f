"""The load generator and the serving metrics, shared by every engine backend.

Stdlib only: this module runs inside each engine's own environment (started by path, see
``worker.py``) and is imported by metasel's tests as ``metasel.bench.engines.runtime.loadgen``.

A serve is a list of requests (prompt token ids, the same ``output_len`` for all) that
arrive by the workload's arrival process, measured from the serve's start:

- ``burst``: all at t = 0 (the offline case);
- ``poisson``: exponential gaps at ``rate`` requests/s (times drawn by the collector, so every
  method of a task gets the same ones);
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
    """Requests with their arrival times: ``arrivals`` (drawn by the collector) for ``poisson``,
    0 for ``burst``; for ``concurrency`` the first ``clients`` arrive at 0 and the rest
    get their time when a client frees up (NaN until then)."""
    kind = arrival.get("process", "burst")
    reqs = []
    for i, p in enumerate(prompts):
        if kind == "poisson":
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
