"""A tour of the Python API on the shipped data: fit, predict, condition, run the active loop, evaluate.

    python examples/api_tour.py              # about a minute on 2 cores
    python examples/api_tour.py --steps 30   # seconds (what the tests run)
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import metasel
from metasel.evaluation import ReplayBackend, SurrogateStrategy, evaluate, leave_one_task_out
from metasel.evaluation.baselines import SingleBest
from metasel.evaluation.report import summarise
from metasel.select import Selector, StopRule, run
from metasel.surrogate import BayesianSurrogate, GBMSurrogate, TrainConfig

DATA = Path(__file__).resolve().parents[1] / "datasets" / "cpu-v1"


def main(steps: int) -> None:
    table = metasel.read_export(DATA)  # a validated PerfTable
    held = sorted(table.tasks["task_id"])[0]  # one task the model will not see
    train = table.filter(tasks=[t for t in table.tasks["task_id"] if t != held])
    hw = sorted(table.hardware["hardware_id"])[0]

    model = BayesianSurrogate("throughput_tok_s", config=replace(TrainConfig(), steps=steps)).fit(train, key=0)
    cells = [(held, m, hw) for m in model.methods]
    post = model.predict(cells, table=table, joint=True)  # Posterior: mean/std of log(tok/s), joint per context
    print(f"zero-shot: best predicted {model.methods[int(post.mean.argmax())]}, "
          f"std {post.std.min():.2f}-{post.std.max():.2f} (log units)")

    # the active loop against recorded measurements of the held-out task (the replay backend)
    sel = Selector(model, held, hw, table=table.filter(tasks=[held]).with_observations(table.observations.iloc[0:0]),
                   rule=StopRule(max_benchmarks=3))
    result = run(sel, ReplayBackend(table, "throughput_tok_s"))
    print(f"loop: benchmarked {result.order}, recommends {result.best.method} ({result.best.value:,.0f} tok/s); "
          f"stop: {result.stop_reason}")

    # two surrogates, one harness: same folds and seed for every strategy
    folds = leave_one_task_out(table, "throughput_tok_s")[:2]
    strategies = [SingleBest(), SurrogateStrategy(GBMSurrogate("throughput_tok_s"), name="gbm"),
                  SurrogateStrategy(BayesianSurrogate("throughput_tok_s", config=replace(TrainConfig(), steps=steps)),
                                    name="metasel")]
    summary = summarise(evaluate(table, "throughput_tok_s", folds, strategies=strategies))
    for name in ("single_best", "gbm", "metasel"):
        print(f"{name:12s} zero-shot regret {summary[name]['regret']:.1%}, after 2 benchmarks "
              f"{summary[name]['regret@2']:.1%} (2 folds)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=TrainConfig().steps, help="training steps of the Bayesian surrogate")
    main(ap.parse_args().steps)
