"""Collector benchmarks: repeatability and overhead over a bare generate() call.

    python benchmarks/bench_collector.py [--threads 2] [--runs 5]

Repeatability: each cell is measured ``--runs`` times from scratch (model rebuilt, warm-up,
3 repeats); the coefficient of variation of those medians is the figure (target <= 3%).
Overhead: the collector's median latency of a cell against a bare, hand-timed
``model.generate`` on the same model, prompts and settings (target <= 2%).
Do not run while anything else (jax training, another benchmark) uses the cores.
"""

from __future__ import annotations

import argparse
import statistics
import time

CELLS = [
    ("llama-5m", {"prompt_len": 32, "output_len": 16, "batch_size": 1, "num_requests": 1}, "sdpa"),
    ("llama-34m", {"prompt_len": 64, "output_len": 16, "batch_size": 4, "num_requests": 4}, "static_batching"),
    ("qwen2-14m", {"prompt_len": 160, "output_len": 8, "batch_size": 1, "num_requests": 3, "shared_prefix": 0.8}, "prefix_cache"),
    ("gpt2-27m", {"prompt_len": 48, "output_len": 16, "batch_size": 8, "num_requests": 8}, "int8_dynamic+static_batching"),
    ("mistral-76m", {"prompt_len": 32, "output_len": 16, "batch_size": 1, "num_requests": 1}, "bf16"),
    ("llama-12m", {"prompt_len": 96, "output_len": 8, "batch_size": 2, "num_requests": 4}, "baseline"),
]


def bare_latency_ms(task: dict, seed: int, repeats: int) -> float:
    """Hand-timed generate() of the same workload with plain sequential/batched calls (sdpa, fp32)."""
    import torch

    from metasel.bench.serve import build_model, make_prompts

    prompts, _ = make_prompts(task["workload"], task["model"]["vocab"], seed)
    out_len = task["workload"]["output_len"]
    lm = build_model(task["model"], attention="sdpa", max_positions=max(map(len, prompts)) + out_len + 16, seed=seed,
                     device="cpu")
    kw = dict(max_new_tokens=out_len, min_new_tokens=out_len, do_sample=False, pad_token_id=0)

    def once():
        for p in prompts:
            ids = torch.tensor([p])
            lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kw)

    with torch.inference_mode():
        once()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            once()
            times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--overhead-only", action="store_true")
    args = ap.parse_args()
    import torch
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    from metasel.bench.serve import measure, warm_up
    from metasel.spec import parse_task_spec

    warm_up()
    print(f"threads={args.threads} runs={args.runs}")
    print(f"{'cell':58s} {'median tok/s':>12s} {'CV of medians':>14s} {'max repeat spread':>18s}")
    cvs = []
    for preset, workload, method in ([] if args.overhead_only else CELLS):
        task = parse_task_spec({"model": {"preset": preset}, "workload": workload}).task_dict()
        runs = [measure(task, method, repeats=3, seed=1) for _ in range(args.runs)]
        thr = [r["throughput_tok_s"] for r in runs]
        cv = statistics.pstdev(thr) / statistics.mean(thr)
        cvs.append(cv)
        print(f"{preset + ' ' + method:58s} {statistics.median(thr):12.1f} {cv:14.2%} {max(r['spread'] for r in runs):18.2%}")
    if cvs:
        print(f"mean CV {statistics.mean(cvs):.2%}, max CV {max(cvs):.2%}")
    print()
    print(f"{'overhead cell (sequential sdpa)':58s} {'collector ms':>12s} {'bare ms':>10s} {'overhead':>9s}")
    overheads = []
    for preset, workload in [(c[0], c[1]) for c in CELLS[:4]]:
        task = parse_task_spec({"model": {"preset": preset}, "workload": workload}).task_dict()
        col = statistics.median(measure(task, "sdpa", repeats=3, seed=1)["latency_ms"] for _ in range(3))
        bare = statistics.median(bare_latency_ms(task, 1, 3) for _ in range(3))
        overheads.append(col / bare - 1)
        print(f"{preset:58s} {col:12.1f} {bare:10.1f} {col / bare - 1:9.2%}")
    print(f"mean overhead {statistics.mean(overheads):.2%}")


if __name__ == "__main__":
    main()
