"""Every cell of a serving-engine dataset, one markdown table per (task, hardware), ranked by throughput.

What datasets/cpu-v2/README.md lists under "Every cell":

    python benchmarks/engine_tables.py datasets/cpu-v2 [--hardware hw-...]

With ``--winners``: which engine wins how many tasks on each hardware profile — by throughput,
except under paced (Poisson or constant-rate) arrivals, where every engine that keeps up
delivers the offered load and the winner is the lowest end-to-end p99.
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


def _latest(obs, tid: str, hid: str):
    """The cells of one (task, hardware), the latest observation of each method."""
    cell = obs[(obs["task_id"] == tid) & (obs["hardware_id"] == hid)]
    return cell.sort_values("timestamp").groupby("method", sort=False).tail(1)


def _paced(spec) -> bool:
    spec = json.loads(spec) if isinstance(spec, str) else (spec or {})
    arrival = (spec.get("workload") or {}).get("arrival") or {}
    return arrival.get("process") in ("poisson", "constant")


def winners(obs, order, specs, engines, hw_names) -> None:
    """Markdown: per hardware profile, how many tasks (with >= 2 methods that ran) each engine wins
    and with which methods."""
    wins: dict[str, dict[str, list[str]]] = {}
    for tid, hid in order:
        ok = _latest(obs, tid, hid)
        ok = ok[ok["status"] == "ok"]
        metric = "e2e_p99_ms" if _paced(specs.get(tid)) else "throughput_tok_s"
        ok = ok[ok[metric].notna()]
        if len(ok) < 2:
            continue
        best = ok.loc[ok[metric].idxmin() if metric == "e2e_p99_ms" else ok[metric].idxmax(), "method"]
        wins.setdefault(hid, {}).setdefault(engines.get(best, "transformers"), []).append(best)
    cols = sorted({e for w in wins.values() for e in w})
    print("| profile | " + " | ".join(cols) + " | tasks |")
    print("|---|" + "---:|" * (len(cols) + 1))
    for hid, w in wins.items():
        cells = []
        for e in cols:
            got = w.get(e, [])
            kinds = ", ".join(f"{m.split('/', 1)[-1]} ×{got.count(m)}" for m in dict.fromkeys(got))
            cells.append(f"{len(got)} ({kinds})" if got else "0")
        print(f"| {hw_names.get(hid, hid)} (`{hid}`) | " + " | ".join(cells) + f" | {sum(map(len, w.values()))} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--hardware", default=None, help="Only this hardware id.")
    ap.add_argument("--winners", action="store_true", help="Only the winners per engine and profile.")
    args = ap.parse_args()
    t = read_export(args.path)
    obs = t.observations
    if args.hardware:
        obs = obs[obs["hardware_id"] == args.hardware]
    names = dict(zip(t.tasks["task_id"], t.tasks["name"]))
    engines = {m: engine_of(json.loads(tech)) for m, tech in zip(t.methods["method"], t.methods["techniques"])}
    order = list(dict.fromkeys(zip(obs["task_id"], obs["hardware_id"])))  # as measured
    if args.winners:
        specs = dict(zip(t.tasks["task_id"], t.tasks["spec"]))
        hw_names = dict(zip(t.hardware["hardware_id"], t.hardware["name"]))
        winners(obs, order, specs, engines, hw_names)
        return
    for tid, hid in order:
        cell = _latest(obs, tid, hid)
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
            message = " ".join(str(r.message).split()).replace("|", "\\|")
            print(f"| {r.method} | {r.status}: {message} |  |  |  |  |  |  |  |  |")
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
