"""CLI start-up: `metasel --help` and a cold `metasel suggest` with a fitted model on disk,
with the task's landmarks measured (torch is imported) and without.

    python benchmarks/bench_cli.py --store out/demo.sqlite --model out/demo-throughput.metasel
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store")
    ap.add_argument("--model")
    ap.add_argument("--task", default=str(ROOT / "examples" / "llama_chat.yaml"))
    ap.add_argument("-n", type=int, default=10)
    args = ap.parse_args()
    exe = [sys.executable, "-m", "metasel"]
    h = timed(exe + ["--help"], args.n)
    print(f"metasel --help: median {statistics.median(h):.3f}s, min {min(h):.3f}s over {args.n} runs")
    if args.store and args.model:
        base = exe + ["--store", args.store, "suggest", "--task", args.task, "--model", args.model]
        for label, extra in (("landmarks measured (a task the store lacks)", []),
                             ("--no-landmarks", ["--no-landmarks"])):
            s = timed(base + extra, max(3, args.n // 2))
            print(f"metasel suggest (cold process, fitted model on disk), {label}: median {statistics.median(s):.3f}s, "
                  f"min {min(s):.3f}s over {len(s)} runs")


if __name__ == "__main__":
    main()
