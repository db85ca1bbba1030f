"""CLI start-up: `metasel --help` and a cold `metasel suggest` with a fitted model on disk:
without landmarks, the first run that measures a new task's landmarks (torch is imported),
and later runs that read them from the store (a copy of ``--store``; the original is untouched).

    python benchmarks/bench_cli.py --store out/demo.sqlite --model out/demo-throughput.metasel
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
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
        with tempfile.TemporaryDirectory() as tmp:
            store = str(Path(tmp) / "store.sqlite")  # a copy: suggest stores the task's landmarks once measured
            shutil.copy(args.store, store)
            models = Path(args.store).parent / "models"  # the constraint models cached beside the store
            if models.is_dir():
                shutil.copytree(models, Path(tmp) / "models")
            base = exe + ["--store", store, "suggest", "--task", args.task, "--model", args.model]
            s = timed(base + ["--no-landmarks"], max(3, args.n // 2))
            print(f"metasel suggest (cold process, fitted model on disk), --no-landmarks: median "
                  f"{statistics.median(s):.3f}s, min {min(s):.3f}s over {len(s)} runs")
            first = timed(base, 1)[0]
            print(f"metasel suggest, first run for a task the store lacks (measures and stores its landmarks): {first:.3f}s")
            s = timed(base, max(3, args.n // 2))
            print(f"metasel suggest (cold process), landmarks read from the store: median {statistics.median(s):.3f}s, "
                  f"min {min(s):.3f}s over {len(s)} runs")

if __name__ == "__main__":
    main()
