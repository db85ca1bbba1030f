"""Every cell of a serving-engine dataset, one markdown table per (task, hardware), ranked by throughput.

What datasets/cpu-v2/README.md lists under "Every cell":

    python benchmarks/engine_tables.py datasets/cpu-v2 [--hardware hw-...]
"""

from __future__ import annotations

import argparse
import json
import math

from metasel.data.store import read_export
from metasel.domain.techniques import engine_of


def _fmt(v, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--hardware", default=None, help="Only this hardware id.")
    args = ap.parse_args()
    t = read_export(args.path)
    obs = t.observations
    if args.hardware:
        obs = obs[obs["hardware_id"] == args.hardware]
    names = dict(zip(t.tasks["task_id"], t.tasks["name"]))
    engines = {m: engine_of(json.loads(tech)) for m, tech in zip(t.methods["method"], t.methods["techniques"])}
    order = list(dict.fromkeys(zip(obs["task_id"], obs["hardware_id"])))  # as measured
    for tid, hid in order:
        cell = obs[(obs["task_id"] == tid) & (obs["hardware_id"] == hid)]
        cell = cell.sort_values("timestamp").groupby("method", sort=False).tail(1)  # the latest of each method
        ok = cell[cell["status"] == "ok"].sort_values("throughput_tok_s", ascending=False)
        bad = cell[cell["status"] != "ok"]
        hw = f" on {hid}" if len(set(obs["hardware_id"])) > 1 else ""
        print(f"### {names.get(tid, tid)}{hw} ({len(ok)} of {len(cell)} ok)\n")
        print("| method | tok/s | TTFT p50 | TTFT p99 | TPOT p50 | e2e p99 | goodput req/s | peak MiB | setup s | flags |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in ok.itertuples():
            print(f"| {r.method} | {_fmt(r.throughput_tok_s)} | {_fmt(r.ttft_p50_ms)} | {_fmt(r.ttft_p99_ms)} | "
                  f"{_fmt(r.tpot_p50_ms, 2)} | {_fmt(r.e2e_p99_ms)} | {_fmt(r.goodput_req_s, 2)} | "
                  f"{_fmt(r.peak_mem_mb, 0)} | {_fmt(r.setup_s)} | {r.flags} |")
        for r in bad.itertuples():
            print(f"| {r.method} | {r.status}: {r.message[:60]} |  |  |  |  |  |  |  |  |")
        if len(ok):
            best = {m: ok.loc[ok[m].idxmin() if m != "throughput_tok_s" else ok[m].idxmax(), "method"]
                    for m in ("throughput_tok_s", "ttft_p99_ms", "tpot_p50_ms") if ok[m].notna().any()}
            print(f"\nbest: throughput {best.get('throughput_tok_s', '-')}; TTFT p99 {best.get('ttft_p99_ms', '-')}; "
                  f"TPOT p50 {best.get('tpot_p50_ms', '-')}")
            per = ok.assign(engine=ok["method"].map(lambda m: engines.get(m, "transformers")))
            top = per.groupby("engine")["throughput_tok_s"].max().sort_values(ascending=False)
            print("best per engine (tok/s): " + ", ".join(f"{e} {_fmt(v)}" for e, v in top.items()))
        print()


if __name__ == "__main__":
    main()
