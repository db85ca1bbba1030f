"""Zero-shot picks on the ASlib development scenarios from one set of fits per official fold:
metasel, the baselines, and two fixed combinations of metasel with the field's selectors.

    python benchmarks/bench_zero_shot.py --out out/zero-shot [--baselines survival_forest] [--scenario NAME ...]

Per scenario and official fold (training folds only, as ``metasel evaluate --protocol folds``
fits them; same problems, encoders and seed), every strategy is fitted once and picks a method
per test instance without benchmarking. Gap closed on PAR10 means is computed as the harness
does it ((single best − strategy) / (single best − oracle), the single best chosen on each
fold's training part). The active loop is not run, so this is the zero-shot table of
``bench_aslib.py`` at a fraction of its cost (metasel's ``fitted`` pick of ``bench_pick.py``).

Two combinations, both fixed before any run (nothing in them is tuned):

  metasel+survival_forest  the mean of the two models' expected PAR10 per (instance, method):
                           metasel's ``(1 − p)·E[runtime | finished] + p·penalty`` and the
                           random survival forests' ``Σ t·P(finish at t) + P(unfinished)·penalty``
                           (a 50/50 mixture of the two predictive models; the pick minimises it)
  metasel_ensemble         ``evaluate --ensemble``'s equal-weight mean of per-instance ranks of
                           metasel, the survival forest, pairwise classification, per-method
                           forests and SUNNY (only when all five are fitted: ``--baselines`` must
                           name survival_forest, pairwise, regression_rf and sunny)

``--baselines`` (default ``survival_forest``; ``all`` for every baseline) chooses which baselines
run besides metasel. Each scenario's result is written to ``OUT/<scenario>.json`` as it finishes,
and a scenario already there is read, not rerun. Prints one row per scenario, then the mean.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "aslib_dev"
ENSEMBLE = ("survival_forest", "pairwise", "regression_rf", "sunny")
MIXTURE = "metasel+survival_forest"


def scenario(scen: Path, baselines: list, seed: int = 0) -> dict:
    from metasel.cli._data import read_source
    from metasel.evaluation import folds as ev
    from metasel.evaluation.baselines import SingleBest
    from metasel.evaluation.harness import fold_problems, metasel_strategy
    from metasel.evaluation.metrics import value_of
    from metasel.evaluation.strategies import EnsembleStrategy

    table = read_source(str(scen / "perf.csv"), "auto", features=str(scen / "features.csv"), objective="min")
    problems = [fold_problems(table, "value", f, embed="hash", embed_dims=4)
                for f in ev.folds_from_csv(table, "value", str(scen / "folds.csv"))]
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    metasel = metasel_strategy("value", active=False).fit_folds([train for train, _ in problems], seed=seed)
    seconds["metasel"] = time.monotonic() - t0
    fitted = {"metasel": metasel}
    for b in baselines:
        t0 = time.monotonic()
        fitted[b.name] = [copy.copy(b).fit(train, seed=seed) for train, _ in problems]
        seconds[b.name] = time.monotonic() - t0
    values: dict[str, list[float]] = {}
    for k, (train, test) in enumerate(problems):
        scores = {name: np.asarray(f[k].scores(test), float) for name, f in fitted.items()}
        if "survival_forest" in scores:  # both are -log(expected PAR10) on the same seconds scale
            cost = 0.5 * (np.exp(-scores["metasel"]) + np.exp(-scores["survival_forest"]))
            scores[MIXTURE] = -np.log(np.maximum(cost, 1e-300))
        if all(n in fitted for n in ENSEMBLE):
            scores["metasel_ensemble"] = EnsembleStrategy([fitted[n][k] for n in ("metasel", *ENSEMBLE)]).scores(test)
        scores["single_best"] = SingleBest().fit(train, seed=seed).scores(test)
        for i in range(len(test.contexts)):
            true, cand = test.score[i], test.candidates(i)
            if not np.isfinite(true).any() or len(cand) == 0:
                continue
            for name, sc in scores.items():
                s = np.where(np.isfinite(sc[i, cand]), sc[i, cand], -np.inf)
                values.setdefault(name, []).append(value_of(true, int(cand[np.argmax(s)]), test, i, "min"))
            values.setdefault("oracle", []).append(value_of(true, int(np.nanargmax(true)), test, i, "min"))
    mean = {k: float(np.mean(v)) for k, v in values.items()}
    gap = {k: (mean["single_best"] - v) / (mean["single_best"] - mean["oracle"]) for k, v in mean.items() if k != "oracle"}
    return {"gap_closed": gap, "par10": mean, "contexts": len(values["oracle"]), "fit_seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="Folder for one JSON per scenario (an existing one is read, not rerun).")
    ap.add_argument("--baselines", default="survival_forest", help="Comma-separated baselines, 'all' or 'none'.")
    ap.add_argument("--scenario", action="append", default=None, help="Only this scenario (repeatable).")
    args = ap.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA}: not found (the ASlib development scenarios live in ../shared/data/aslib_dev)")
    scens = sorted(p for p in DATA.iterdir() if (p / "perf.csv").exists())
    if args.scenario:
        missing = set(args.scenario) - {p.name for p in scens}
        if missing:
            raise SystemExit(f"--scenario: unknown {sorted(missing)}")
        scens = [p for p in scens if p.name in args.scenario]
    from metasel.errors import InputDataError
    from metasel.evaluation.baselines import named_baselines

    try:
        baselines = named_baselines(args.baselines)
    except InputDataError as e:
        raise SystemExit(str(e)) from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for scen in scens:
        path = out / f"{scen.name}.json"
        if path.exists():
            results[scen.name] = json.loads(path.read_text())
        else:
            t0 = time.monotonic()
            print(f"{scen.name}: fitting ...", file=sys.stderr, flush=True)
            results[scen.name] = scenario(scen, baselines)
            results[scen.name]["seconds"] = time.monotonic() - t0
            path.write_text(json.dumps(results[scen.name], indent=1))
        r = results[scen.name]
        print(f"{scen.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in r["gap_closed"].items()), file=sys.stderr, flush=True)
    names = []
    for r in results.values():
        names += [n for n in r["gap_closed"] if n not in names]
    print("| scenario | " + " | ".join(names) + " | contexts |")
    print("|---|" + "---|" * (len(names) + 1))
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r['gap_closed'][n]:.3f}" if n in r["gap_closed"] else "–" for n in names)
              + f" | {r['contexts']} |")
    means = [np.mean([r["gap_closed"][n] for r in results.values()]) if all(n in r["gap_closed"] for r in results.values())
             else math.nan for n in names]
    print(f"| **mean ({len(results)})** | " + " | ".join("–" if math.isnan(m) else f"{m:.3f}" for m in means) + " | |")


if __name__ == "__main__":
    main()
