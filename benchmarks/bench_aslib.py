"""metasel against every baseline on the 15 ASlib development scenarios, their official folds.

    python benchmarks/bench_aslib.py --out out/aslib [--jobs 2] [--baselines all] [--scenario NAME ...]
    python benchmarks/bench_aslib.py --out out/aslib-now --baselines none --merge out/aslib   # new metasel, same baselines
    add --ensemble to evaluate metasel_ensemble as well; --evaluate-args '...' passes more options to each evaluate

Each scenario runs as one ``metasel evaluate --protocol folds`` (a fresh process; results in
``OUT/<scenario>/``); a scenario whose ``results.json`` is already there is read, not rerun,
so an interrupted run resumes. ``--merge DIR`` takes the strategies this run did not
evaluate from an earlier run's folders (same folds, seeds and data: the baselines do not
depend on metasel). Prints, for all fifteen scenarios, the gap closed on PAR10 means
((single best - strategy) / (single best - oracle), the single best chosen on each fold's
training part), the PAR10 means, and the issue's targets; writes them to ``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "aslib_dev"


def run_scenario(scen: Path, out: Path, *, baselines: str, jobs: int, extra: list[str]) -> dict:
    done = out / "results.json"
    if done.exists():
        return json.loads(done.read_text())
    cmd = [sys.executable, "-c", "import sys; sys.argv[0] = 'metasel'; from metasel.cli import run; run()", "evaluate",
           "--data", str(scen / "perf.csv"), "--features", str(scen / "features.csv"), "--folds", str(scen / "folds.csv"),
           "--objective", "min", "--protocol", "folds", "--baselines", baselines, "--jobs", str(jobs), *extra,
           "--title", scen.name, "--out", str(out)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{scen.name}: metasel evaluate failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    print(f"  {scen.name}: {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
    return json.loads(done.read_text())


def table(results: dict[str, dict], key: str, fmt) -> list[str]:
    names = []
    for res in results.values():
        names += [n for n, s in res.items() if key in s and n not in names]
    first = [n for n in ("metasel", "metasel_ensemble") if n in names]
    names = first + [n for n in names if n not in first]
    lines = ["| scenario | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for scen, res in results.items():
        lines.append(f"| {scen} | " + " | ".join(fmt(res.get(n, {}).get(key)) for n in names) + " |")
    if key == "gap_closed_mean":
        means = [sum(res[n][key] for res in results.values()) / len(results)
                 if all(n in res and key in res[n] for res in results.values()) else math.nan for n in names]
        lines.append("| **mean** | " + " | ".join(fmt(v) for v in means) + " |")
    return lines


def targets(results: dict[str, dict], who: str = "metasel") -> list[str]:
    """The issue's three ASlib targets for ``who``'s zero-shot pick (against the baselines only)."""
    skip = {"metasel", "metasel_ensemble", "random", "single_best"}
    ahead = zero_ok = zero_needed = 0
    gaps = {}
    for res in results.values():
        base = {n: s["gap_closed_mean"] for n, s in res.items() if n not in skip and "gap_closed_mean" in s}
        me = res[who]["gap_closed_mean"]
        ahead += me >= max(base.values()) - 1e-12
        if max(base.values()) > 0:
            zero_needed += 1
            zero_ok += me >= 0
        for n, g in base.items():
            gaps.setdefault(n, []).append(g)
        gaps.setdefault(who, []).append(me)
    n = len(results)
    means = {k: sum(v) / len(v) for k, v in gaps.items() if len(v) == n}
    best_other = max((v, k) for k, v in means.items() if k != who)
    return [f"- {who}'s gap closed >= the best baseline's: {ahead} of {n} scenarios (target >= 12 of 15)",
            f"- {who}'s gap closed >= 0 where some baseline's is > 0: {zero_ok} of {zero_needed} (target: all)",
            f"- mean gap closed: {who} {means[who]:.3f}, best baseline {best_other[1]} {best_other[0]:.3f} "
            "(target: above every baseline's mean)"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--baselines", default="all", help="--baselines of each evaluate [all]")
    ap.add_argument("--jobs", type=int, default=2, help="--jobs of each evaluate [2]")
    ap.add_argument("--scenario", action="append", help="only these scenarios (quick looks; the report wants all 15)")
    ap.add_argument("--ensemble", action="store_true", help="also evaluate metasel_ensemble")
    ap.add_argument("--evaluate-args", default="", help="more options for each evaluate, e.g. '--no-tree-mean'")
    ap.add_argument("--merge", type=Path, help="an earlier run's --out: strategies missing here are taken from it")
    ap.add_argument("--no-run", action="store_true",
                    help="only report: a scenario with no results here is taken from --merge, else listed as not run")
    args = ap.parse_args()
    scens = sorted(p for p in DATA.iterdir() if p.is_dir() and (not args.scenario or p.name in args.scenario))
    results, seconds, missing = {}, {}, []
    t0 = time.monotonic()
    for scen in scens:
        here, there = args.out / scen.name / "results.json", args.merge / scen.name / "results.json" if args.merge else None
        if args.no_run and not here.exists():
            if there is None or not there.exists():
                missing.append(scen.name)
                continue
            here = there
        res = json.loads(here.read_text()) if args.no_run else \
            run_scenario(scen, args.out / scen.name, baselines=args.baselines, jobs=args.jobs,
                         extra=(["--ensemble"] if args.ensemble else []) + shlex.split(args.evaluate_args))
        summary = res["summary"]
        if args.merge and (args.merge / scen.name / "results.json").exists():
            for name, s in json.loads((args.merge / scen.name / "results.json").read_text())["summary"].items():
                summary.setdefault(name, s)
        results[scen.name], seconds[scen.name] = summary, res["seconds"]
    f3 = lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"  # noqa: E731
    g4 = lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"  # noqa: E731
    lines = ["### Gap closed on PAR10 means (1 = oracle, 0 = single best of the training folds)", "",
             *table(results, "gap_closed_mean", f3), "", "### PAR10 mean per context", "",
             *table(results, "mean_value", g4), "",
             "Single best (chosen on each fold's training part) and oracle PAR10 means: "
             + "; ".join(f"{k} {g4(v['metasel'].get('sbs_mean_value'))} / {g4(v['metasel'].get('vbs_mean_value'))}"
                         for k, v in results.items()), ""]
    if len(results) == len(list(p for p in DATA.iterdir() if p.is_dir())):
        lines += ["### Targets", "", *targets(results)]
        if all("metasel_ensemble" in r for r in results.values()):
            lines += targets(results, "metasel_ensemble")
        lines.append("")
    if missing:
        lines.append(f"Not run: {', '.join(missing)} ({len(results)} of {len(scens)} scenarios above).")
    lines.append("Evaluation seconds per scenario (this run): "
                 + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) + f"; wall {time.monotonic() - t0:.0f}s.")
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
