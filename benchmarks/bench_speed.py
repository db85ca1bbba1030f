"""How long the learner's jobs take, each next to the same job at an earlier commit, in one run.

    python benchmarks/bench_speed.py [--base REV] [--base-folds N] [--base-aslib-folds N] [--no-base] [--only NAME ...]

Every figure is measured in a fresh process, first with this checkout, then with ``--base``
(default: the commit before the fast-learner work) checked out into a temporary git
worktree and run with the same virtual environment; the table shows both and their ratio.
The machine is shared and noisy: read the ratios. ``--busy N`` keeps N other processes
spinning on the CPU for the whole run (both trees alike): a user's machine is rarely idle.
Jobs that took many minutes at the base commit run only their first ``--base-folds`` folds
there (``--base-aslib-folds`` per ASlib scenario), and the table scales that time to all folds
(marked ``~``): fits dominate those jobs and each fold's fits take about as long.

Jobs (``--only`` picks some):
  planted    ``metasel evaluate --protocol loto`` on a planted generic matrix of 60 tasks x 4
             methods (two task clusters, each with its own best method), metasel only;
             beside it, a scikit-learn random forest per method doing the same leave-one-task-out
  llm_fit    fit (with its calibration) on the LLM-Inference-Bench main sweep
  shipped    ``metasel evaluate --protocol loto`` on the shipped measured data, all strategies
  aslib      the 15 scenarios of ../shared/data/aslib_dev on their official folds, all strategies
  aslib_fit  one fit (with its calibration) on each of the 15 ASlib scenarios' whole table, metasel
             alone: the learner's own cost on generic matrices, without the baselines and the loop
  fit100k    fit on 100k synthetic observations (time and peak memory of the process)
  demo       ``make demo``'s steps after the set-up (import, show, fit, suggest), then a cold
             ``suggest`` with the models on disk
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BASE = "d9e5447"  # main before the fast-learner issue (#14)
JOBS = ("planted", "llm_fit", "shipped", "aslib", "aslib_fit", "fit100k", "demo")

CHILD = r"""
import json, resource, sys, time
job, arg = sys.argv[1], json.loads(sys.argv[2])
out = {}
if job == "llm_fit":
    from metasel.data.importers import read_llm_inference_bench
    from metasel.surrogate import BayesianSurrogate
    table = read_llm_inference_bench(arg["path"])
    t = time.perf_counter()
    BayesianSurrogate("throughput_tok_s").fit(table, key=0)
    out = {"seconds": time.perf_counter() - t, "cells": len(table)}
elif job == "aslib_fit":
    from metasel.cli._data import read_source
    from metasel.surrogate import BayesianSurrogate
    table = read_source(arg["perf"], "auto", features=arg["features"], objective="min")
    t = time.perf_counter()
    BayesianSurrogate("value").fit(table, key=0)
    out = {"seconds": time.perf_counter() - t, "cells": len(table)}
elif job == "fit100k":
    from metasel.surrogate import BayesianSurrogate
    from metasel.testing.synthetic import low_rank_table
    n = 100_000
    tasks = n // 20
    table, _ = low_rank_table(num_tasks=tasks, num_methods=16, num_hardware=2, density=n / (tasks * 32), seed=0)
    t = time.perf_counter()
    BayesianSurrogate("value", embed="none").fit(table, key=0)
    out = {"seconds": time.perf_counter() - t, "cells": len(table)}
elif job == "rf":
    import numpy as np, pandas as pd
    from sklearn.ensemble import RandomForestRegressor
    perf, feats = pd.read_csv(arg["perf"]), pd.read_csv(arg["features"]).set_index("task")
    y = perf.pivot(index="task", columns="method", values="value").loc[feats.index]
    x, logy = feats.to_numpy(), np.log(y.to_numpy())
    t = time.perf_counter()
    regrets = []
    for i in range(len(x)):
        train = np.arange(len(x)) != i
        pred = [RandomForestRegressor(n_estimators=100, random_state=0).fit(x[train], logy[train, j]).predict(x[i:i + 1])[0]
                for j in range(logy.shape[1])]
        regrets.append(y.to_numpy()[i, int(np.argmin(pred))] / y.to_numpy()[i].min() - 1)
    out = {"seconds": time.perf_counter() - t, "regret": float(np.mean(regrets))}
out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(out))
"""


def _run(cmd: list[str], tree: Path, *, cwd: Path | None = None) -> float:
    """Wall seconds of a command run with ``tree``'s metasel first on the path; its failure is fatal."""
    env = {**os.environ, "PYTHONPATH": str(tree), "JAX_PLATFORMS": "cpu"}
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd or tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {tree}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t


def _child(job: str, arg: dict, tree: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", CHILD, job, json.dumps(arg)], cwd=tree, env=env, capture_output=True,
                          text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{job} failed in {tree}:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def _metasel(tree: Path) -> list[str]:
    return [sys.executable, "-c", "import sys; sys.argv[0] = 'metasel'; from metasel.cli import run; run()"]


def _planted_files(tmp: Path) -> tuple[Path, Path]:
    import pandas as pd

    from metasel.testing.synthetic import planted_clusters

    table = planted_clusters()
    perf, feats = tmp / "planted.csv", tmp / "planted-features.csv"
    table.observations[["task_id", "method", "value"]].rename(columns={"task_id": "task"}).to_csv(perf, index=False)
    pd.DataFrame([{"task": t, **json.loads(f)} for t, f in zip(table.tasks["task_id"], table.tasks["features"])]) \
        .to_csv(feats, index=False)
    return perf, feats


def _evaluate(tree: Path, data: list[str], folds: int | None, total: int, tmp: Path) -> tuple[float, bool]:
    """Seconds of one ``metasel evaluate``; with ``folds`` only the first folds, scaled to ``total``."""
    out = Path(tempfile.mkdtemp(dir=tmp))
    extra = ["--max-folds", str(folds)] if folds and folds < total else []
    seconds = _run([*_metasel(tree), "evaluate", *data, *extra, "--out", str(out)], tree)
    return (seconds * total / folds, True) if extra else (seconds, False)


ASLIB_BASELINES = "all"


def measure(job: str, tree: Path, tmp: Path, *, folds: int | None) -> list[tuple[str, float, bool, str]]:
    """(figure, value, estimated, unit) rows of one job at one tree."""
    if job == "planted":
        perf, feats = _planted_files(tmp)
        s, est = _evaluate(tree, ["--data", str(perf), "--features", str(feats), "--protocol", "loto",
                                  "--baselines", "none"], folds, 60, tmp)
        return [("planted 60x4 LOTO evaluate, metasel only", s, est, "s")]
    if job == "llm_fit":
        r = _child("llm_fit", {"path": str(SHARED / "llm_inference_bench" / "llm_inference_bench.csv")}, tree)
        return [(f"fit on LLM-Inference-Bench ({r['cells']:,} cells)", r["seconds"], False, "s")]
    if job == "shipped":
        store = tmp / f"shipped-{tree.name}.sqlite"
        if not store.exists():
            for ds in ("cpu-v1", "gpu-v1"):
                _run([*_metasel(tree), "--store", str(store), "import", str(ROOT / "datasets" / ds)], tree)
        s, est = _evaluate(tree, ["--data", str(store), "--protocol", "loto"], folds, 46, tmp)
        return [("shipped measured LOTO evaluate, all strategies", s, est, "s")]
    if job == "aslib":
        total, any_est, rows = 0.0, False, []
        for scen in sorted(p for p in (SHARED / "aslib_dev").iterdir() if p.is_dir()):
            s, est = _evaluate(tree, ["--data", str(scen / "perf.csv"), "--features", str(scen / "features.csv"),
                                      "--folds", str(scen / "folds.csv"), "--objective", "min", "--protocol", "folds",
                                      "--baselines", ASLIB_BASELINES],
                               folds, 10, tmp)
            rows.append((f"  aslib {scen.name}", s, est, "s"))
            total, any_est = total + s, any_est or est
        what = "all strategies" if ASLIB_BASELINES == "all" else f"metasel + baselines {ASLIB_BASELINES}"
        return [(f"ASlib dev, 15 scenarios, official folds, {what}", total, any_est, "s"), *rows]
    if job == "fit100k":
        r = _child("fit100k", {}, tree)
        return [(f"fit on {r['cells']:,} synthetic observations", r["seconds"], False, "s"),
                ("  peak memory of that process", r["peak_mib"], False, "MiB")]
    if job == "demo":
        home = tmp / f"demo-{tree.name}"  # its own folder: suggest caches models beside the store, by content
        home.mkdir(exist_ok=True)
        store, model = home / "demo.sqlite", home / "demo-throughput.metasel"
        m = _metasel(tree)
        steps = [[*m, "--store", str(store), "import", str(ROOT / "datasets" / "cpu-v1")],
                 [*m, "--store", str(store), "import", str(ROOT / "datasets" / "gpu-v1")],
                 [*m, "--store", str(store), "show", "--top", "5"],
                 [*m, "--store", str(store), "fit", "--metric", "throughput_tok_s", "--out", str(model)]]
        suggest = [*m, "--store", str(store), "suggest", "--task", str(ROOT / "examples" / "llama_chat.yaml"),
                   "--model", str(model)]
        seconds = [_run(cmd, tree, cwd=ROOT) for cmd in steps]
        first = _run(suggest, tree, cwd=ROOT)
        cold = min(_run(suggest, tree, cwd=ROOT) for _ in range(3))
        return [("make demo's steps (import, show, fit, suggest)", sum(seconds) + first, False, "s"),
                ("  of which fit", seconds[3], False, "s"), ("  of which first suggest", first, False, "s"),
                ("cold suggest, models on disk (best of 3 processes)", cold, False, "s")]
    raise ValueError(job)


ASLIB_FIT_TOTAL = "ASlib dev, one fit on each of the 15 scenarios, summed"


def _aslib_fit(rows: dict, trees: list) -> None:
    """The aslib_fit job, interleaved: each scenario at every tree in turn, so that a change in
    the machine's load falls on both sides of a ratio alike."""
    rows[ASLIB_FIT_TOTAL] = {"unit": "s"}
    for scen in sorted(p for p in (SHARED / "aslib_dev").iterdir() if p.is_dir()):
        for label, tree, _ in trees:
            r = _child("aslib_fit", {"perf": str(scen / "perf.csv"), "features": str(scen / "features.csv")}, tree)
            rows.setdefault(f"  fit {scen.name} ({r['cells']:,} cells)", {"unit": "s"})[label] = (r["seconds"], False)
            total = rows[ASLIB_FIT_TOTAL].get(label, (0.0, False))[0] + r["seconds"]
            rows[ASLIB_FIT_TOTAL][label] = (total, False)
            print(f"    {label}: fit {scen.name}: {r['seconds']:.1f} s", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=BASE, help=f"commit to compare with [default: {BASE}]")
    ap.add_argument("--no-base", action="store_true", help="measure this checkout only")
    ap.add_argument("--base-folds", type=int, default=3, help="folds the long evaluations run at the base [3]")
    ap.add_argument("--base-aslib-folds", type=int, default=1, help="folds of each ASlib scenario run at the base [1]")
    ap.add_argument("--aslib-baselines", default="all", help="--baselines of the ASlib evaluations [all]")
    ap.add_argument("--only", nargs="*", choices=JOBS, default=list(JOBS))
    ap.add_argument("--busy", type=int, default=0, help="other processes kept spinning on the CPU during the run [0]")
    args = ap.parse_args()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        _main(args)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def _main(args) -> None:
    global ASLIB_BASELINES
    ASLIB_BASELINES = args.aslib_baselines
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        trees = [("now", ROOT, None)]
        if not args.no_base:
            base = tmp / "base"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base], check=True,
                           capture_output=True)
            trees.append((args.base, base, args.base_folds))
        aslib_folds = {"now": None, args.base: args.base_aslib_folds}
        try:
            rows: dict[str, dict] = {}
            for job in args.only:
                if job == "aslib_fit":
                    _aslib_fit(rows, trees)
                    continue
                for label, tree, folds in trees:
                    print(f"... {job} at {label}", file=sys.stderr, flush=True)
                    extra = []
                    if job == "planted" and label == "now":
                        perf, feats = _planted_files(tmp)
                        r = _child("rf", {"perf": str(perf), "features": str(feats)}, tree)
                        extra = [("  scikit-learn random forest per method, same LOTO", r["seconds"], False, "s")]
                    folds_here = aslib_folds[label] if job == "aslib" else folds
                    for name, value, est, unit in [*measure(job, tree, tmp, folds=folds_here), *extra]:
                        rows.setdefault(name, {"unit": unit})[label] = (value, est)
                        print(f"    {label}: {name}: {'~' if est else ''}{value:.1f} {unit}", file=sys.stderr, flush=True)
        finally:
            if not args.no_base:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "base")],
                               capture_output=True)
    labels = [t[0] for t in trees]
    print(f"\n{'figure':58s} " + " ".join(f"{lab:>10s}" for lab in labels) + (f" {'ratio':>7s}" if len(labels) > 1 else ""))
    for name, row in rows.items():
        cells = []
        for lab in labels:
            v = row.get(lab)
            cells.append(f"{'~' if v and v[1] else ''}{v[0]:.1f}".rjust(10) if v else f"{'-':>10s}")
        ratio = ""
        if len(labels) > 1 and row.get(labels[0]) and row.get(labels[1]):
            ratio = f"{row[labels[1]][0] / row[labels[0]][0]:6.2f}x"
        print(f"{name + ' (' + row['unit'] + ')':58s} " + " ".join(cells) + (f" {ratio:>7s}" if ratio else ""))


if __name__ == "__main__":
    main()
