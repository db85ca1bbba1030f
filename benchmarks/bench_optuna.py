"""MetaselSampler against Optuna's TPESampler and RandomSampler, on the shipped measured data.

    python benchmarks/bench_optuna.py [--data datasets/cpu-v1] [--metric throughput_tok_s] [--seeds 10]

Leave-one-task-out, as ``metasel evaluate --protocol loto``: for each task, metasel's surrogate
is fitted on every other task (training folds only, all folds fitted as one batched program),
and for each (held-out task, hardware) context a real ``optuna.create_study`` optimises the
metric over the context's measured methods (``trial.suggest_categorical("method", methods)``),
the objective answering from the recorded measurements (``ReplayBackend``; a recorded failure
raises, so the trial is FAIL). Each sampler runs until it has tried the oracle (the best
measured method, or a method running the same computation on that task: identical
computations count as one, as in the LOTO tables) or spent as many trials as there are methods.
TPE (Optuna's default: its first 10 trials are random, drawn as RandomSampler's with the same
seed, so on 16 methods it is mostly Random) and TPE with 2 start-up trials, and Random, run with
``--seeds`` seeds each (mean over seeds); MetaselSampler's
acquisition (expected improvement) is deterministic, so it runs once. TPE and Random may
propose a method they already tried: each proposal costs a trial, as it would in a real study.

Prints, per sampler: mean and median over contexts of the trials to reach the oracle (TPE and
Random: each context's mean over seeds), the share of studies (contexts x seeds) that reached it
within 1, 2 and 4 trials, and the mean regret (1 - best so far / oracle) after 1, 2 and 4 trials.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 9  # folds fitted together


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "datasets" / "cpu-v1"))
    ap.add_argument("--metric", default="throughput_tok_s")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--folds", type=int, default=0, help="only the first N folds (0: all)")
    ap.add_argument("--out", default=None, help="also write the table (markdown) here")
    args = ap.parse_args(argv)

    import optuna

    from metasel.app.descriptors import descriptor_table
    from metasel.data.store import read_export
    from metasel.domain.techniques import same_computation
    from metasel.evaluation.folds import leave_one_task_out, split
    from metasel.evaluation.replay import ReplayBackend
    from metasel.integrations.optuna import MetaselSampler
    from metasel.surrogate.bayes import BayesianSurrogate
    import json

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = read_export(args.data)
    replay = ReplayBackend(table, args.metric)
    folds = leave_one_task_out(table, args.metric)
    if args.folds:
        folds = folds[:args.folds]
    tasks = table.tasks.set_index("task_id")
    hws = table.hardware.set_index("hardware_id")
    methods_desc = {m: {"techniques": json.loads(t)} for m, t in zip(table.methods["method"], table.methods["techniques"])}
    samplers = ("metasel", "tpe", "tpe_startup2", "random")
    reached: dict[str, list[float]] = {s: [] for s in samplers}  # per context: mean over seeds
    runs_n: dict[str, list[int]] = {s: [] for s in samplers}  # per (context, seed)
    regret: dict[str, dict[int, list[float]]] = {s: {k: [] for k in (1, 2, 4)} for s in samplers}
    t_start = time.time()
    for c0 in range(0, len(folds), CHUNK):
        chunk = folds[c0:c0 + CHUNK]
        t0 = time.time()
        models = BayesianSurrogate(args.metric).fit_many([split(table, f) for f in chunk], keys=[0] * len(chunk))
        print(f"folds {c0 + 1}-{c0 + len(chunk)} of {len(folds)} fitted in {time.time() - t0:.0f}s", file=sys.stderr,
              flush=True)
        for fold, model in zip(chunk, models):
            for task, hw in fold.test_contexts:
                cands = replay.candidates(task, hw)
                values = {m: replay.measure(task, m, hw) for m in cands}
                ok = {m: r.metrics[args.metric] for m, r in values.items() if r.status == "ok"}
                if len(ok) < 2:
                    continue
                oracle_m, oracle_v = replay.oracle(task, hw, "max")
                spec = json.loads(tasks.loc[task, "spec"])
                same = same_computation({"spec": spec}, {m: methods_desc[m] for m in cands})
                hits = {m for m in cands if same.get(m, m) == same.get(oracle_m, oracle_m)}
                desc = descriptor_table({"task_id": task, "name": tasks.loc[task, "name"], "spec": spec,
                                         "features": json.loads(tasks.loc[task, "features"])},
                                        {"hardware_id": hw, "name": hws.loc[hw, "name"],
                                         "specs": json.loads(hws.loc[hw, "specs"])})
                runs = {"metasel": [lambda: MetaselSampler(model, task, hw, table=desc)],
                        "tpe": [lambda s=s: optuna.samplers.TPESampler(seed=s) for s in range(args.seeds)],
                        "tpe_startup2": [lambda s=s: optuna.samplers.TPESampler(seed=s, n_startup_trials=2)
                                         for s in range(args.seeds)],
                        "random": [lambda s=s: optuna.samplers.RandomSampler(seed=s) for s in range(args.seeds)]}
                for name, makers in runs.items():
                    got_n, got_r = [], {k: [] for k in (1, 2, 4)}
                    for make in makers:
                        order = _study(optuna, make(), cands, ok, hits, budget=len(cands))
                        n = next((i + 1 for i, m in enumerate(order) if m in hits), len(cands) + 1)
                        got_n.append(n)
                        for k in (1, 2, 4):
                            best = max((ok[m] for m in order[:k] if m in ok), default=0.0)
                            got_r[k].append(1.0 - best / oracle_v)
                    reached[name].append(float(np.mean(got_n)))
                    runs_n[name].extend(got_n)
                    for k in (1, 2, 4):
                        regret[name][k].append(float(np.mean(got_r[k])))
        print(f"  {len(reached['metasel'])} contexts so far, {time.time() - t_start:.0f}s", file=sys.stderr, flush=True)
    lines = [f"{len(reached['metasel'])} contexts ({args.data}, {args.metric}, leave one task out; TPE and Random: "
             f"mean over {args.seeds} seeds each)", "",
             "| sampler | trials to the oracle, mean | median | ≤ 1 | ≤ 2 | ≤ 4 | regret after 1 | after 2 | after 4 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in samplers:
        r, n = np.array(reached[name]), np.array(runs_n[name])
        lines.append(f"| {name} | {r.mean():.2f} | {np.median(r):.1f} | {np.mean(n <= 1):.0%} | {np.mean(n <= 2):.0%} | "
                     f"{np.mean(n <= 4):.0%} | " + " | ".join(f"{np.mean(regret[name][k]):.1%}" for k in (1, 2, 4)) + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


def _study(optuna, sampler, cands: list[str], ok: dict[str, float], hits: set[str], *, budget: int) -> list[str]:
    """The methods a study proposes, in order, until it tries the oracle or spends ``budget`` trials."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    order: list[str] = []

    def objective(trial):
        m = trial.suggest_categorical("method", cands)
        order.append(m)
        if m in hits:
            trial.study.stop()
        if m not in ok:
            raise RuntimeError(f"{m}: recorded failure")
        return ok[m]

    study.optimize(objective, n_trials=budget, catch=(RuntimeError,))
    return order


if __name__ == "__main__":
    sys.exit(main())
