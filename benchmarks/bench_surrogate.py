"""Surrogate benchmarks: scaling, prediction and conditioning speed, held-out accuracy.

    python benchmarks/bench_surrogate.py [--quick] [--skip-scaling] [--only speed|heldout] [--tree-mean]
                                         [--heldout loho,lomo,cpu-v1]

Prints a table of: fit time and peak memory at 1k / 10k / 100k synthetic observations;
time to predict 100k cells; time to condition on a new task; held-out log-RMSE and
50% / 90% interval coverage on LLM-Inference-Bench (leave-one-hardware-out, leave-one-
model-out) and on the shipped measured dataset (leave-one-task-out).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

ROOT = Path(__file__).resolve().parents[1]
LLM_BENCH = ROOT.parent / "shared" / "data" / "llm_inference_bench" / "llm_inference_bench.csv"
DATASET = ROOT / "datasets" / "cpu-v1"

SCALE_CHILD = """
import resource, sys, time
from metasel.surrogate import BayesianSurrogate, TrainConfig
from metasel.testing.synthetic import low_rank_table
n = int(sys.argv[1]); steps = int(sys.argv[2])
tasks = max(10, n // 20)
table, _ = low_rank_table(num_tasks=tasks, num_methods=16, num_hardware=2, density=n / (tasks * 32), seed=0)
t = time.perf_counter()
BayesianSurrogate("value", config=TrainConfig(steps=steps), embed="none").fit(table, key=0)
print(len(table), time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def scaling(steps: int) -> None:
    print(f"fit scaling (synthetic, 16 methods x 2 hardware, {steps} steps; fresh process each)")
    print(f"{'observations':>12s} {'fit s':>8s} {'peak RSS MiB':>13s}")
    for n in (1_000, 10_000, 100_000):
        out = subprocess.run([sys.executable, "-c", SCALE_CHILD, str(n), str(steps)], capture_output=True, text=True,
                             check=True).stdout.split()
        print(f"{int(out[0]):12,d} {float(out[1]):8.1f} {float(out[2]):13.0f}")


def speed() -> None:
    from metasel.surrogate import BayesianSurrogate, TrainConfig
    from metasel.testing.synthetic import low_rank_table
    from metasel.data.table import PerfTable

    table, truth = low_rank_table(num_tasks=3200, num_methods=16, num_hardware=2, density=0.3, seed=1)
    # task0000 is kept out of the fit: the conditioning below is of a new task
    model = BayesianSurrogate("value", config=TrainConfig(steps=200), embed="hash").fit(
        table.filter(tasks=[t for t in table.tasks["task_id"] if t != "task0000"]), key=0)
    cells = truth[["task_id", "method", "hardware_id"]].head(100_000)
    model.predict(cells.head(100), table=table)
    t = time.perf_counter()
    model.predict(cells, table=table)
    t_pred = time.perf_counter() - t
    fresh = model
    obs = table.observations[(table.observations.task_id == "task0000") & (table.observations.hardware_id == "hw0")].head(3)
    new = PerfTable(obs, table.tasks[table.tasks.task_id == "task0000"], table.methods, table.hardware,
                    directions={"value": "max"})
    times = []
    for _ in range(20):
        t = time.perf_counter()
        c = fresh.condition(new)
        c.predict([("task0000", m, "hw0") for m in model.methods])
        times.append(time.perf_counter() - t)
    print(f"predict {len(cells):,} cells: {t_pred:.3f}s; condition on 3 observations of a new task + predict its "
          f"{len(model.methods)} methods: median {np.median(times) * 1000:.1f} ms")


HELDOUT_RUNS = ("loho", "lomo", "cpu-v1")


def heldout(quick: bool, steps: int | None = None, lr: float | None = None, tree_mean: bool | None = None,
            which: tuple[str, ...] = HELDOUT_RUNS) -> None:
    from metasel.data.importers import read_llm_inference_bench
    from dataclasses import replace

    from metasel.data.store import read_export
    from metasel.evaluation import folds as ev
    from metasel.surrogate import BayesianSurrogate, TrainConfig

    steps = steps or (600 if quick else TrainConfig().steps)
    lr = lr or TrainConfig().lr
    runs = []
    llm = read_llm_inference_bench(LLM_BENCH).filter(exclude_flags=["batch_semantics=prompt_batch"])
    loho = ev.leave_one_hardware_out(llm, "throughput_tok_s")
    lomo = ev.grouped_k_fold(llm, "throughput_tok_s", "model.hf_id", 22)
    # each run calibrates for the novelty it is judged on (training data only)
    if "loho" in which:
        runs.append(("LLM-Inference-Bench, leave-one-hardware-out", llm, "throughput_tok_s", loho[::2] if quick else loho,
                     "hardware"))
    if "lomo" in which:
        runs.append(("LLM-Inference-Bench, leave-one-model-out", llm, "throughput_tok_s", lomo[::2] if quick else lomo,
                     "model.hf_id"))
    if "cpu-v1" in which and (DATASET / "manifest.json").exists():
        data = read_export(DATASET)
        folds = ev.leave_one_task_out(data, "throughput_tok_s")
        runs.append(("cpu-v1 measured dataset, leave-one-task-out", data, "throughput_tok_s", folds[::3] if quick else folds,
                     "task"))
    print(f"{'held-out evaluation':48s} {'folds':>5s} {'cells':>6s} {'log-RMSE':>8s} {'cov50':>6s} {'cov90':>6s} "
          f"{'g50':>6s} {'g90':>6s} {'s':>6s}")
    print("(cov50/cov90: the posterior's own intervals, calibrated level by level; g50/g90: mean ± z·std, "
          "one std factor and a Gaussian shape)")
    config = replace(TrainConfig(), steps=steps, lr=lr, tree_mean=tree_mean)
    for name, table, metric, folds, calibrate_by in runs:
        t = time.perf_counter()
        errs, zs, in50, in90 = [], [], [], []
        folds = [f for f in folds if len(ev.split(table, f))]
        models = BayesianSurrogate(metric, config=config).fit_many([ev.split(table, f) for f in folds],
                                                                   keys=[0] * len(folds), calibrate_by=calibrate_by)
        for fold, model in zip(folds, models):
            test = table.long(metric)
            keys = set(fold.test_contexts)
            test = test[[(a, b) in keys for a, b in zip(test.task_id, test.hardware_id)]]
            if test.empty:
                continue
            pred = model.predict(test[["task_id", "method", "hardware_id"]], table=table)
            y = np.log(test["value"].to_numpy())
            errs += list(pred.mean - y)
            zs += list(np.abs(pred.mean - y) / pred.std)
            for level, inside in ((0.5, in50), (0.9, in90)):
                lo, hi = pred.interval(level)
                inside += list((lo <= y) & (y <= hi))
        errs, zs = np.array(errs), np.array(zs)
        z50, z90 = norm.ppf(0.75), norm.ppf(0.95)
        print(f"{name:48s} {len(folds):5d} {len(errs):6d} {np.sqrt(np.mean(errs ** 2)):8.3f} "
              f"{np.mean(in50):6.1%} {np.mean(in90):6.1%} {np.mean(zs < z50):6.1%} {np.mean(zs < z90):6.1%} "
              f"{time.perf_counter() - t:6.0f}", flush=True)


def fit_llm_bench() -> None:
    from metasel.data.importers import read_llm_inference_bench
    from metasel.surrogate import BayesianSurrogate

    llm = read_llm_inference_bench(LLM_BENCH)
    t = time.perf_counter()
    BayesianSurrogate("throughput_tok_s").fit(llm, key=0)
    print(f"fit on the LLM-Inference-Bench main sweep ({len(llm):,} observations, default config): "
          f"{time.perf_counter() - t:.1f}s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--only", choices=["speed", "heldout"], default=None, help="Run one part only.")
    ap.add_argument("--steps", type=int, default=None, help="Training steps of the held-out fits [TrainConfig's].")
    ap.add_argument("--lr", type=float, default=None, help="Peak learning rate of the held-out fits [TrainConfig's].")
    ap.add_argument("--tree-mean", action=argparse.BooleanOptionalAction, default=None,
                    help="TrainConfig.tree_mean of the held-out fits [TrainConfig's].")
    ap.add_argument("--heldout", default=",".join(HELDOUT_RUNS),
                    help=f"Which held-out evaluations, comma-separated, of {', '.join(HELDOUT_RUNS)} [all].")
    args = ap.parse_args()
    which = tuple(w.strip() for w in args.heldout.split(",") if w.strip())
    if not which or set(which) - set(HELDOUT_RUNS):
        ap.error(f"--heldout: expected a comma-separated subset of {', '.join(HELDOUT_RUNS)}, got {args.heldout!r}")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if args.only != "heldout":
        fit_llm_bench()
        if not args.skip_scaling:
            scaling(600 if args.quick else 1500)
        speed()
    if args.only != "speed":
        heldout(args.quick, args.steps, args.lr, args.tree_mean, which)


if __name__ == "__main__":
    main()
