"""Measure one (task, method) cell for real with torch + transformers.

The model is built from its config with random weights (no download), the workload's
prompts are token ids that follow the spec's length distribution and share its prefix,
and every request generates exactly ``output_len`` tokens (EOS disabled). Times:

- ``latency_ms``: wall time to serve all the workload's requests (they arrive together);
- ``ttft_ms``: mean over requests of the time from arrival to the first generated token;
- ``tpot_ms``: mean over requests of (finish − first token) / (output_len − 1);
- ``throughput_tok_s``: generated tokens / latency; ``total_tok_s``: (prompt + generated) / latency;
- ``peak_mem_mb``: peak resident memory of the process during the cell above what it held
  before the cell (CPU), or ``torch.cuda.max_memory_allocated`` (GPU);
- ``setup_s``: building, converting, quantising, compiling and the warm-up run.

A warm-up run, then ``repeats`` runs; medians are stored, the spread is the coefficient
of variation of the throughput over the repeats.
"""

from __future__ import annotations

import copy
import gc
import math
import statistics
import threading
import time
import warnings
from typing import Any

import numpy as np

from metasel.bench.methods import Method, get as get_method


class Unsupported(Exception):
    """The method cannot run this cell here (recorded as status ``unsupported``)."""


# ---------------------------------------------------------------------------- building


def _config(model: dict, max_positions: int):
    import transformers as tf

    arch = model["arch"]
    common = dict(vocab_size=model["vocab"], hidden_size=model["hidden"], num_hidden_layers=model["layers"],
                  num_attention_heads=model["heads"], num_key_value_heads=model["kv_heads"],
                  intermediate_size=model["intermediate"], max_position_embeddings=max_positions)
    if arch == "llama":
        cfg = tf.LlamaConfig(**common)
    elif arch == "qwen2":
        cfg = tf.Qwen2Config(**common, use_sliding_window=False)
    elif arch == "mistral":
        cfg = tf.MistralConfig(**common, sliding_window=None)
    elif arch == "gemma":
        cfg = tf.GemmaConfig(**common, head_dim=model["hidden"] // model["heads"])
    elif arch == "mixtral":
        cfg = tf.MixtralConfig(**common, num_local_experts=model.get("experts", 8),
                               num_experts_per_tok=model.get("experts_per_token", 2), sliding_window=None)
    elif arch == "gpt2":
        if model["kv_heads"] != model["heads"]:
            raise Unsupported("gpt2 has no grouped-query attention (kv_heads must equal heads)")
        cfg = tf.GPT2Config(vocab_size=model["vocab"], n_embd=model["hidden"], n_layer=model["layers"],
                            n_head=model["heads"], n_inner=model["intermediate"], n_positions=max_positions)
    else:
        raise Unsupported(f"the collector cannot build arch {arch!r} (it builds llama, qwen2, mistral, gemma, mixtral, gpt2)")
    cfg.eos_token_id = None
    cfg.bos_token_id = 0
    cfg.pad_token_id = 0
    cfg.tie_word_embeddings = arch == "gpt2"
    return cfg


def build_model(model: dict, *, attention: str, max_positions: int, seed: int, device: str):
    """A random-weight causal LM from a model dict (``ModelSpec`` fields)."""
    import torch
    from transformers import AutoModelForCausalLM

    cfg = _config(model, max_positions)
    torch.manual_seed(seed)
    lm = AutoModelForCausalLM.from_config(cfg, attn_implementation=attention, dtype=torch.float32)
    lm = lm.to(device).eval()
    gc_ = lm.generation_config
    gc_.eos_token_id = None
    gc_.pad_token_id = 0
    gc_.bos_token_id = 0
    return lm


def draft_model_dict(model: dict) -> dict:
    """The draft for assisted decoding: same family and vocabulary, a quarter of the layers, half the width."""
    heads = max(1, model["heads"] // 2)
    kv = max(1, min(model["kv_heads"], heads))
    while heads % kv:
        kv -= 1
    head_dim = model["hidden"] // model["heads"]
    return {**model, "layers": max(1, model["layers"] // 4), "hidden": heads * head_dim, "heads": heads,
            "kv_heads": kv if model["arch"] != "gpt2" else heads, "intermediate": max(32, model["intermediate"] // 2)}


def make_prompts(workload: dict, vocab: int, seed: int) -> list[list[int]]:
    """Token-id prompts: lengths from the workload's distribution, a shared prefix of
    ``shared_prefix × shortest length`` tokens, the rest random ids (no special tokens)."""
    from metasel.spec import parse_length
    from metasel._check import Checker

    rng = np.random.default_rng(seed)
    dist = parse_length(Checker("workload"), workload["prompt_len"], "prompt_len")
    n = int(workload.get("num_requests") or workload.get("batch_size", 1))
    lengths = dist.sample(rng, n)
    prefix_len = int(math.floor(workload.get("shared_prefix", 0.0) * min(lengths)))
    prefix = rng.integers(3, vocab, size=prefix_len).tolist()
    return [prefix + rng.integers(3, vocab, size=length - prefix_len).tolist() for length in lengths], prefix_len


# ---------------------------------------------------------------------------- measuring


class _TokenClock:
    """A generate() streamer that stamps every decoding step."""

    def __init__(self):
        self.times: list[float] = []

    def put(self, value):
        self.times.append(time.perf_counter())

    def end(self):
        pass


class _PeakRSS:
    """Samples this process's resident memory in a thread; ``peak`` is the largest seen."""

    def __init__(self, interval: float = 0.02):
        import psutil

        self._proc = psutil.Process()
        self.base = self._proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval):
        while not self._stop.wait(interval):
            rss = self._proc.memory_info().rss
            if rss > self.peak:
                self.peak = rss

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


class _Runner:
    """Holds a built, converted model and serves the workload once per call."""

    def __init__(self, task: dict, method: Method, *, seed: int, device: str):
        import torch

        self.torch = torch
        self.task, self.method, self.device, self.seed = task, method, device, seed
        model, workload = task["model"], task["workload"]
        self.output_len = int(workload["output_len"])
        self.prompts, self.prefix_len = make_prompts(workload, model["vocab"], seed)
        self.batch_size = max(1, min(int(workload.get("batch_size", 1)), len(self.prompts)))
        if method.decoding != "greedy" and method.batching != "sequential" and self.batch_size > 1:
            raise Unsupported(f"{method.decoding} decoding runs only at batch size 1 in transformers, "
                              f"and this workload batches {self.batch_size} requests")
        if method.weights == "int8_dynamic" and device != "cpu":
            raise Unsupported("dynamic int8 quantisation of Linear layers runs on the CPU only")
        if method.batching == "continuous" and method.decoding != "greedy":
            raise Unsupported("continuous batching does not support speculative decoding")
        max_pos = max(len(p) for p in self.prompts) + self.output_len + 16
        self.lm = build_model(model, attention=method.attention, max_positions=max_pos, seed=seed, device=device)
        if method.weights == "bfloat16":
            self.lm = self.lm.to(torch.bfloat16)
        elif method.weights == "int8_dynamic":
            self.lm = torch.ao.quantization.quantize_dynamic(self.lm, {torch.nn.Linear}, dtype=torch.qint8)
        self.draft = None
        if method.decoding == "assisted":
            self.draft = build_model(draft_model_dict(model), attention=method.attention, max_positions=max_pos,
                                     seed=seed + 1, device=device)
            if method.weights == "bfloat16":
                self.draft = self.draft.to(torch.bfloat16)
        if method.compile:
            self.lm.forward = torch.compile(self.lm.forward, dynamic=True)
        self.gen_kwargs: dict[str, Any] = dict(max_new_tokens=self.output_len, min_new_tokens=self.output_len,
                                               do_sample=False, pad_token_id=0)
        if method.cache == "static":
            self.gen_kwargs["cache_implementation"] = "static"
        if method.decoding == "assisted":
            self.gen_kwargs["assistant_model"] = self.draft
        elif method.decoding == "prompt_lookup":
            self.gen_kwargs["prompt_lookup_num_tokens"] = 8

    def _prefix_cache(self):
        from transformers import DynamicCache

        if not self.method.prefix_cache or self.prefix_len == 0:
            return None
        cache = DynamicCache(config=self.lm.config)
        ids = self.torch.tensor([self.prompts[0][: self.prefix_len]], device=self.device)
        self.lm(input_ids=ids, cache=cache, use_cache=True)
        return cache

    def serve(self) -> dict[str, float]:
        """Serve all requests once; returns the per-run metrics."""
        n = len(self.prompts)
        _sync(self.device)
        start = time.perf_counter()
        serve = {"continuous": self._serve_continuous, "static": self._serve_static}.get(self.method.batching,
                                                                                         self._serve_sequential)
        first, done = serve()
        _sync(self.device)
        latency = time.perf_counter() - start
        gen_tokens = n * self.output_len
        prompt_tokens = sum(len(p) for p in self.prompts)
        ttft = [f - start for f in first]
        tpot = [(d - f) / max(1, self.output_len - 1) for f, d in zip(first, done)]
        return {
            "latency_ms": latency * 1000.0,
            "throughput_tok_s": gen_tokens / latency,
            "total_tok_s": (gen_tokens + prompt_tokens) / latency,
            "ttft_ms": 1000.0 * float(np.nanmean(ttft)) if not all(map(math.isnan, ttft)) else math.nan,
            "tpot_ms": 1000.0 * float(np.nanmean(tpot)) if not all(map(math.isnan, tpot)) else math.nan,
        }

    def _serve_continuous(self) -> tuple[list[float], list[float]]:
        """transformers ``generate_batch``: at most ``batch_size`` requests per step; (first token, done) times."""
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        gcfg = GenerationConfig(max_new_tokens=self.output_len, min_new_tokens=self.output_len, do_sample=False,
                                eos_token_id=-1, pad_token_id=0)
        page = 64
        longest = max(len(p) for p in self.prompts) + self.output_len
        cb = ContinuousBatchingConfig(page_size=page, num_blocks=len(self.prompts) * (-(-longest // page)) + 8,
                                      max_requests_per_batch=self.batch_size)
        out = self.lm.generate_batch(self.prompts, generation_config=gcfg, continuous_batching_config=cb,
                                     record_timestamps=True, progress_bar=False, warmup=False)
        first, done = [], []
        for res in out.values():
            if res.error:
                raise RuntimeError(f"continuous batching request failed: {res.error}")
            if len(res.generated_tokens) != self.output_len:
                raise RuntimeError(f"continuous batching generated {len(res.generated_tokens)} tokens, expected {self.output_len}")
            stamps = res.timestamps or []
            first.append(stamps[0] if stamps else math.nan)
            done.append(res.lifespan[1] if res.lifespan[1] > 0 else (stamps[-1] if stamps else math.nan))
        return first, done

    def _serve_static(self) -> tuple[list[float], list[float]]:
        """Requests left-padded into batches of ``batch_size``, each batch one ``generate``."""
        torch = self.torch
        prefix = self._prefix_cache()
        size, first, done = self.batch_size, [], []
        for lo in range(0, len(self.prompts), size):
            chunk = self.prompts[lo: lo + size]
            width = max(len(p) for p in chunk)
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, p in enumerate(chunk):  # left padding
                ids[i, width - len(p):] = torch.tensor(p)
                mask[i, width - len(p):] = 1
            kwargs = dict(self.gen_kwargs)
            if prefix is not None:
                if any(len(p) != width for p in chunk):
                    raise Unsupported("a shared-prefix cache with static batching needs equal prompt lengths")
                cache = copy.deepcopy(prefix)
                if len(chunk) > 1:
                    cache.batch_repeat_interleave(len(chunk))
                kwargs["cache"] = cache
            clock = _TokenClock()
            out = self.lm.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                   streamer=clock, **kwargs)
            _sync(self.device)
            t = time.perf_counter()
            self._check_len(out.shape[1] - width)
            first += [clock.times[1] if len(clock.times) > 1 else t] * len(chunk)
            done += [t] * len(chunk)
        return first, done

    def _serve_sequential(self) -> tuple[list[float], list[float]]:
        """One request at a time (reusing the shared prefix's cache when the method has one)."""
        torch = self.torch
        prefix = self._prefix_cache()
        first, done = [], []
        for p in self.prompts:
            kwargs = dict(self.gen_kwargs)
            if prefix is not None:
                kwargs["cache"] = copy.deepcopy(prefix)
            clock = _TokenClock()
            ids = torch.tensor([p], device=self.device)
            out = self.lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=clock, **kwargs)
            _sync(self.device)
            t = time.perf_counter()
            self._check_len(out.shape[1] - len(p))
            first.append(clock.times[1] if len(clock.times) > 1 else t)
            done.append(t)
        return first, done

    def _check_len(self, generated: int) -> None:
        if generated != self.output_len:
            raise RuntimeError(f"generated {generated} tokens, expected {self.output_len}")


MIN_REPEAT_S = 0.25
MAX_INNER = 20


def _mean_runs(runs: list[dict[str, float]]) -> dict[str, float]:
    """Average several serves; rates by their harmonic mean, so tokens / mean latency stays exact."""
    rates = ("throughput_tok_s", "total_tok_s")
    return {k: float(len(runs) / np.sum([1.0 / r[k] for r in runs]) if k in rates else np.mean([r[k] for r in runs]))
            for k in runs[0]}


def measure(task: dict, method_name: str, *, repeats: int, seed: int, device: str = "cpu") -> dict[str, Any]:
    """Measure one cell; returns observation fields (metrics, repeats, spread, status, message).

    Never raises for a method that fails on this cell: the failure is the observation.
    """
    import torch

    method = get_method(method_name)
    if method.engine != "transformers":
        import os

        from metasel.bench.engines.client import measure_engine

        if device != "cpu":
            return {"status": "unsupported", "repeats": 0, "seed": seed,
                    "message": f"engine {method.engine!r} is measured on the CPU only by this collector"}
        threads = int(os.environ.get("OMP_NUM_THREADS") or torch.get_num_threads())
        return measure_engine(task, method, repeats=repeats, seed=seed, threads=threads)
    process = (task["workload"].get("arrival") or {}).get("process", "burst")
    if process != "burst":
        return {"status": "unsupported", "repeats": 0, "seed": seed,
                "message": f"the transformers backend serves requests that arrive together; a {process} arrival "
                           "process is measured by the engine methods (metasel engines list)"}
    cuda = device.startswith("cuda")
    result: dict[str, Any] = {"repeats": 0, "seed": seed}
    _release_memory(cuda)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        with warnings.catch_warnings(), torch.inference_mode(), _PeakRSS() as rss:
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            runner = _Runner(task, method, seed=seed, device=device)
            warm = runner.serve()  # warm-up (and compilation, for compiled methods)
            setup_s = time.perf_counter() - t0
            # A short workload is served several times per repeat, so that each repeat
            # lasts at least MIN_REPEAT_S and timer noise stays small.
            inner = max(1, min(MAX_INNER, math.ceil(MIN_REPEAT_S * 1000.0 / max(warm["latency_ms"], 1e-3))))
            runs = [_mean_runs([runner.serve() for _ in range(inner)]) for _ in range(repeats)]
        peak = (torch.cuda.max_memory_allocated() if cuda else rss.peak - rss.base) / 2**20
        result.update({k: statistics.median(r[k] for r in runs) for k in runs[0]})
        thr = [r["throughput_tok_s"] for r in runs]
        result.update(setup_s=setup_s, peak_mem_mb=float(peak), repeats=repeats, status="ok",
                      message=f"{inner} serves per repeat" if inner > 1 else "",
                      spread=(statistics.pstdev(thr) / statistics.median(thr)) if len(thr) > 1 else 0.0)
    except Unsupported as exc:
        result.update(status="unsupported", message=str(exc))
    except Exception as exc:  # every other failure is recorded, never raised
        result.update(_classify(exc))
    finally:
        runner = None  # noqa: F841
        _release_memory(cuda)
    return result


def _release_memory(cuda: bool) -> None:
    """Give freed memory back (so the next cell's resident-memory peak starts from a clean base)."""
    gc.collect()
    if cuda:
        import torch

        torch.cuda.empty_cache()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _classify(exc: BaseException) -> dict[str, str]:
    return classify_text(f"{type(exc).__name__}: {exc}".strip(), type(exc).__name__)


def classify_text(text: str, exc_name: str = "") -> dict[str, str]:
    """A failure's status from its message: ``oom``, ``unsupported`` or ``error`` (engines report text)."""
    first_line = (text.splitlines() or [""])[0][:500]
    lowered = text.lower()
    if "out of memory" in lowered or exc_name == "MemoryError":
        return {"status": "oom", "message": first_line}
    if exc_name == "NotImplementedError" or "not supported" in lowered or "only supported" in lowered \
            or "is not supported" in lowered or "unsupported" in lowered:
        return {"status": "unsupported", "message": first_line}
    return {"status": "error", "message": first_line}


def warm_up(device: str = "cpu") -> None:
    """Run a tiny generation once so that first-call costs (lazy imports, kernel
    selection) are not billed to the first measured cell."""
    tiny = {"model": {"arch": "llama", "layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1, "intermediate": 64,
                      "vocab": 128, "dtype": "float32"},
            "workload": {"prompt_len": 8, "output_len": 4, "batch_size": 2, "num_requests": 2, "shared_prefix": 0.0}}
    for name in ("baseline", "sdpa", "static_batching"):
        measure(tiny, name, repeats=1, seed=0, device=device)
