"""How long ``suggest`` takes after ``tune`` added observations: conditioned, against a refit.

The real sequence a user runs, each step a fresh ``metasel`` process on a store of the
shipped data: ``suggest`` on a fresh store (fits and caches the model), a real ``tune
--budget 2`` on a tiny task (two benchmarks measured here and stored), then ``suggest``
on an unrelated task (reuses the cached fit, conditioned on the two new observations),
and for reference the same ``suggest --refit``. The ratio refit / conditioned is what to
compare between commits; the process's own start (imports) is part of every figure.

    python benchmarks/bench_condition.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY_TASK = """
model: {preset: llama-5m}
workload: {prompt_len: 16, output_len: 8, batch_size: 2}
hardware: {threads: 2}
"""


def run(args: list[str], store: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "metasel", "--store", str(store), *args], capture_output=True, text=True,
                       env={**os.environ, "TQDM_DISABLE": "1"})
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"metasel {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return seconds, r.stdout + r.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", default=None, help="Folder to work in (kept); default a temporary one.")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="metasel-bench-condition-"))
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store.sqlite"
    (work / "tiny.yaml").write_text(TINY_TASK)
    other = ROOT / "examples" / "llama_chat.yaml"
    for data in ("cpu-v1", "gpu-v1"):
        run(["import", str(ROOT / "datasets" / data)], store)
    rows = []
    s, out = run(["suggest", "--task", str(other), "--no-landmarks"], store)
    rows.append(("suggest, fresh store (fits)", s, "fitting" in out))
    s, out = run(["tune", "--task", str(work / "tiny.yaml"), "--budget", "2", "--repeats", "1", "--no-landmarks"], store)
    rows.append(("tune --budget 2 (measures 2 cells)", s, "fitting" in out))
    s, out = run(["suggest", "--task", str(other), "--no-landmarks"], store)
    conditioned = s
    rows.append(("suggest after tune (conditioned)", s, "fitting" in out))
    reused = "reusing" in out
    s, out = run(["suggest", "--task", str(other), "--no-landmarks", "--refit"], store)
    rows.append(("suggest --refit (reference)", s, "fitting" in out))
    s, _ = run(["show", "--top", "0"], store)
    rows.append(("show (process start + load, floor)", s, False))
    print(f"{'step':40s} {'seconds':>8s}  fitted")
    for name, sec, fitted in rows:
        print(f"{name:40s} {sec:8.2f}  {'yes' if fitted else 'no'}")
    print(f"\nsuggest after tune reused the cached fit: {'yes' if reused else 'NO'}; "
          f"refit / conditioned = {rows[3][1] / conditioned:.1f}x")


if __name__ == "__main__":
    main()
