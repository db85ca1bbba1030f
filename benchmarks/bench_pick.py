"""What decides metasel's zero-shot picks on ASlib: its pick with each of several P(fail)s, from one set of fits.

    python benchmarks/bench_pick.py [--scenario NAME ...]      # default: all 15 of ../shared/data/aslib_dev

For penalised runtimes metasel picks by expected PAR10, ``(1 - p) E[runtime | finished] + p x penalty``
(``metasel.select.choice``), so its pick rests on two models: the surrogate's runtime and the
failure model's ``p``. Per scenario this fits metasel once per official fold (as ``metasel
evaluate --protocol folds`` does; training folds only) and scores the same predictions with

  fitted        the failure model as fitted (per method a logistic regression, or a forest where
                its out-of-bag log loss is lower): metasel's own pick
  logistic      per-method logistic regressions only (``Failures.fit(forests=False)``)
  method_rate   each method's failure rate on the training folds, the same for every instance
  none          no failure model (p = 0): the runtime model alone

and prints the gap closed on PAR10 means of each (single best chosen on each fold's training part,
as the harness does), one row per scenario, as each scenario finishes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "aslib_dev"
VARIANTS = ("fitted", "logistic", "method_rate", "none")


def scenario_row(scen: Path) -> str:
    import pandas as pd

    from metasel.cli._data import read_source
    from metasel.evaluation import folds as ev
    from metasel.evaluation.baselines import SingleBest
    from metasel.evaluation.harness import fold_problems, metasel_strategy
    from metasel.evaluation.metrics import value_of
    from metasel.select.choice import choice_scores
    from metasel.surrogate._common import Catalog, Failures, p_fail_cells

    table = read_source(str(scen / "perf.csv"), "auto", features=str(scen / "features.csv"), objective="min")
    problems = [fold_problems(table, "value", f, embed="hash", embed_dims=4)
                for f in ev.folds_from_csv(table, "value", str(scen / "folds.csv"))]
    t0 = time.monotonic()
    fitted = metasel_strategy("value", active=False).fit_folds([train for train, _ in problems])
    fit_s = time.monotonic() - t0
    values: dict[str, list[float]] = {k: [] for k in (*VARIANTS, "single_best", "oracle")}
    for (train, test), strategy in zip(problems, fitted):
        state = strategy.model._state
        shape = (len(test.contexts), len(test.methods))
        post, p_fitted = strategy._predict(test)
        cells = pd.DataFrame([(t, m, h) for t, h in test.contexts for m in test.methods],
                             columns=["task_id", "method", "hardware_id"])
        logistic = Failures.fit(train.table, state.encoder.contexts, Catalog.of(train.table),
                                dim=state.encoder.context_dim, forests=False)
        attempted = ~np.isnan(train.score) | train.failed
        rate = (train.failed.sum(axis=0) + 0.5) / (attempted.sum(axis=0) + 1.0)
        p = {"fitted": p_fitted.reshape(shape),
             "logistic": p_fail_cells(logistic, cells, state.catalog.merged(test.table), state.encoder.contexts).reshape(shape),
             "method_rate": np.broadcast_to(rate, shape), "none": np.zeros(shape)}
        fail = np.array([strategy.failure_value.get(m, strategy._failure_default) for m in test.methods])
        scores = {k: choice_scores(post.mean.reshape(shape), post.std.reshape(shape), p[k], direction="min",
                                   failure_value=fail) for k in VARIANTS}
        sbs = SingleBest().fit(train).scores(test)
        for i in range(len(test.contexts)):
            true, cand = test.score[i], test.candidates(i)
            if not np.isfinite(true).any() or len(cand) == 0:
                continue
            for k, sc in (*scores.items(), ("single_best", sbs)):
                values[k].append(value_of(true, int(cand[np.argmax(sc[i, cand])]), test, i, "min"))
            values["oracle"].append(value_of(true, int(np.nanargmax(true)), test, i, "min"))
    mean = {k: float(np.mean(v)) for k, v in values.items()}
    gap = {k: (mean["single_best"] - mean[k]) / (mean["single_best"] - mean["oracle"]) for k in VARIANTS}
    return f"| {scen.name} | " + " | ".join(f"{gap[k]:.3f}" for k in VARIANTS) + \
        f" | {len(values['oracle'])} | {fit_s:.0f} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", action="append", help="a scenario of ../shared/data/aslib_dev (repeatable) [all]")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    scens = sorted(p for p in DATA.iterdir() if p.is_dir() and (not args.scenario or p.name in args.scenario))
    print("| scenario | " + " | ".join(VARIANTS) + " | contexts | fit seconds (10 folds) |")
    print("|---|" + "---|" * (len(VARIANTS) + 2), flush=True)
    for scen in scens:
        print(scenario_row(scen), flush=True)


if __name__ == "__main__":
    main()
