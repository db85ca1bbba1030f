"""Summarise a shipped dataset: counts, statuses, best-method distribution per hardware.

    python benchmarks/dataset_summary.py datasets/cpu-v1 [--metric throughput_tok_s]
"""

from __future__ import annotations

import argparse
import json

from metasel.data.store import read_export


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--metric", default="throughput_tok_s")
    args = ap.parse_args()
    t = read_export(args.path)
    cov = t.coverage()
    print(f"{cov['observations']} observations: {cov['tasks']} tasks x {cov['methods']} methods x {cov['hardware']} hardware; "
          f"{cov['cells_observed']} cells ({cov['fraction_observed']:.1%}), ok {cov['cells_ok']}")
    print("status:", t.status_counts())
    names = dict(zip(t.hardware["hardware_id"], t.hardware["name"]))
    for metric in (args.metric, "ttft_ms", "peak_mem_mb"):
        best = t.best_methods(metric)
        print(f"\nbest method by {metric} ({t.direction(metric)}), per hardware:")
        for hid, sub in best.groupby("hardware_id"):
            counts = sub["method"].value_counts()
            print(f"  {names[hid]}: " + ", ".join(f"{m} {n}" for m, n in counts.items()))
    obs = t.observations[t.observations.status == "ok"]
    print(f"\nmedian spread (CV over repeats) of ok cells: {obs['spread'].median():.2%}; "
          f"90th percentile {obs['spread'].quantile(0.9):.2%}")
    print("library versions:", sorted({v for v in obs["versions"]})[:2])
    print("collected:", obs["timestamp"].min(), "to", obs["timestamp"].max())
    specs = [json.loads(s) for s in t.hardware["specs"]]
    for h, s in zip(t.hardware["name"], specs):
        print(f"hardware {h}: threads {s.get('threads')}, memory {s.get('memory_gb')} GB, isa {s.get('isa')}, gpu {s.get('gpu')}")


if __name__ == "__main__":
    main()
