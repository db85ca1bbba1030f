"""Back-to-back repeats against interleaved rounds (`collect --interleave`), on real engines.

Runs `--runs` collections of a grid in each mode, alternating (b2b 1, il 1, b2b 2, il 2, ...),
each into its own store under --out (a store already there is reused, so an interrupted run
goes on), then prints per task and mode: the wall time of a collection, the top-1 method of
each run, how often two runs agree on the top-1, the mean Kendall tau between two runs'
rankings, the mean spread (CV of the throughput over a cell's repeats or rounds) beside the
mean coefficient of variation of a cell's value between runs (what a spread should foresee),
and how far the modes' medians are apart.

    python benchmarks/bench_interleave.py --grid GRID.yaml --out out/il --runs 3 --threads 1
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODES = {"b2b": [], "il": ["--interleave"]}


def collect(grid: str, store: Path, mode: str, threads: str, seed: int, cpus: str | None) -> float:
    cmd = [sys.executable, "-m", "metasel", "--store", str(store), "collect", "--grid", grid, "--threads", threads,
           "--seed", str(seed), "--no-landmarks", "--quiet", *MODES[mode]]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True)
    return time.monotonic() - t0


def kendall(a: dict[str, float], b: dict[str, float]) -> float:
    """Kendall's tau between two runs' values of the methods both measured."""
    from metasel.evaluation.metrics import kendall_tau

    keys = sorted(set(a) & set(b))
    return kendall_tau(np.array([a[k] for k in keys]), np.array([b[k] for k in keys])) if len(keys) > 1 else math.nan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpus", default=None, help="taskset CPU list for the collections (e.g. 1)")
    ap.add_argument("--metric", default="throughput_tok_s")
    args = ap.parse_args()
    from metasel import Store

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, list[float]] = {m: [] for m in MODES}
    for i in range(1, args.runs + 1):
        for mode in MODES:
            store = out / f"{mode}{i}.sqlite"
            if store.exists():
                continue
            print(f"collecting {mode} run {i} of {args.runs} ...", flush=True)
            seconds[mode].append(collect(args.grid, store, mode, args.threads, args.seed, args.cpus))
    # values[mode][run][task][method] = metric, spreads[mode] = [spread, ...]
    values: dict[str, list[dict]] = {m: [] for m in MODES}
    spreads: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
    names: dict[str, str] = {}
    for mode in MODES:
        for i in range(1, args.runs + 1):
            with Store(out / f"{mode}{i}.sqlite", readonly=True) as s:
                t = s.load()
            names.update(dict(zip(t.tasks["task_id"], t.tasks["name"])))
            obs = t.observations[t.observations["status"] == "ok"]
            run: dict[str, dict[str, float]] = {}
            for r in obs.itertuples():
                run.setdefault(r.task_id, {})[r.method] = float(getattr(r, args.metric))
                spreads[mode].setdefault(r.task_id, []).append(float(r.spread))
            values[mode].append(run)
    if any(seconds.values()):
        print("\nwall time of one collection (this invocation's runs):",
              ", ".join(f"{m} {statistics.mean(v):.1f} s" for m, v in seconds.items() if v))
    print(f"\n{args.metric}; {args.runs} runs per mode, alternating\n")
    print("| task | mode | top-1 of each run | top-1 agreement | mean Kendall τ between runs | mean spread | "
          "CV between runs | medians b2b vs il, mean abs log ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for task in sorted(names, key=names.get):
        med = {}
        for mode in MODES:
            runs = [r[task] for r in values[mode] if task in r]
            tops = [max(r, key=lambda m: r[m]) for r in runs]
            pairs = list(itertools.combinations(range(len(runs)), 2))
            agree = sum(tops[a] == tops[b] for a, b in pairs) / len(pairs) if pairs else math.nan
            tau = statistics.mean(kendall(runs[a], runs[b]) for a, b in pairs) if pairs else math.nan
            med[mode] = {m: statistics.median(r[m] for r in runs if m in r) for m in set().union(*runs)}
            sp = statistics.mean(spreads[mode].get(task) or [math.nan])
            cvs = [statistics.pstdev(v) / statistics.mean(v) for m in med[mode]
                   if len(v := [r[m] for r in runs if m in r]) > 1]
            cv = statistics.mean(cvs) if cvs else math.nan
            gap = ""
            if mode == "il":
                common = set(med["b2b"]) & set(med["il"])
                gap = f"{statistics.mean(abs(math.log(med['il'][m] / med['b2b'][m])) for m in common):.3f}"
            print(f"| {names[task]} | {mode} | {', '.join(tops)} | {agree:.2f} | {tau:.3f} | {sp:.3f} | {cv:.3f} | {gap} |")


if __name__ == "__main__":
    main()
