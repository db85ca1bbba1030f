"""The evaluation harness, the replay backend and the evaluate CLI."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from metasel.cli import main
from metasel.data.table import PerfTable
from metasel.errors import InputDataError
from metasel.evaluation import folds as ev
from metasel.evaluation import metrics
from metasel.evaluation.baselines import Baseline, ElectStyle, RandomChoice, SingleBest
from metasel.evaluation.harness import evaluate, metasel_strategy
from metasel.evaluation.problem import Problem
from metasel.evaluation.replay import ReplayBackend
from metasel.evaluation.report import markdown, summarise
from metasel.testing.synthetic import low_rank_table


def _strategies(metric, **kw):
    return [RandomChoice(), SingleBest(), metasel_strategy(metric, steps=kw.pop("steps", 60), members=1, **kw), ElectStyle()]


def test_metrics_by_hand():
    true = np.log(np.array([10.0, 8.0, np.nan, 5.0]))
    assert metrics.ndcg_at(true, np.array([3, 2, 0, 1.0]), 3) == pytest.approx(1.0)
    worst_first = metrics.ndcg_at(true, np.array([0, 1, 0, 3.0]), 1)
    assert worst_first == pytest.approx(0.5)  # gain exp(log5 - log10) = 0.5 over ideal 1
    assert metrics.kendall_tau(true, np.array([3, 2, 0, 1.0])) == pytest.approx(1.0)
    assert metrics.kendall_tau(true, np.array([1, 2, 0, 3.0])) == pytest.approx(-1.0)


def test_relative_regret_and_anytime_max_and_min():
    score = np.log(np.array([[10.0, 8.0, np.nan]]))
    p = Problem([("t", "h")], ["a", "b", "c"], score, np.array([[False, False, True]]), np.full((1, 3), np.nan),
                np.zeros((1, 1)), np.eye(3))
    assert metrics.relative_regret(score[0], 1, p, 0, "max") == pytest.approx(0.2)
    assert metrics.relative_regret(score[0], 2, p, 0, "max") == 1.0  # a failed pick
    assert metrics.anytime_regret(score[0], [2, 1, 0], p, 0, "max", 3) == pytest.approx([1.0, 0.2, 0.0])
    # minimised: oriented scores are -log(runtime): runtimes 2 and 4 → picking 4 costs (4-2)/2 = 1
    mscore = -np.log(np.array([[2.0, 4.0]]))
    pm = Problem([("t", "h")], ["a", "b"], mscore, np.zeros((1, 2), bool), np.full((1, 2), np.nan), np.zeros((1, 1)), np.eye(2))
    assert metrics.relative_regret(mscore[0], 1, pm, 0, "min") == pytest.approx(1.0)


def test_replay_backend():
    t = PerfTable([
        {"task_id": "t", "method": "a", "hardware_id": "h", "throughput_tok_s": 10.0, "latency_ms": 100.0, "setup_s": 1.0,
         "repeats": 3},
        {"task_id": "t", "method": "a", "hardware_id": "h", "throughput_tok_s": 12.0, "timestamp": "2"},
        {"task_id": "t", "method": "b", "hardware_id": "h", "status": "oom"},
    ])
    r = ReplayBackend(t, "throughput_tok_s")
    assert r.candidates("t", "h") == ["a", "b"]
    m = r.measure("t", "a", "h")
    assert m.status == "ok" and m.value("throughput_tok_s") == 11.0 and m.seconds > 0
    assert r.measure("t", "b", "h").status == "oom"
    assert r.oracle("t", "h", "max") == ("a", 11.0)
    with pytest.raises(InputDataError, match="no recorded observation"):
        r.measure("t", "c", "h")


def test_folds_keep_test_out_of_training():
    table, _ = low_rank_table(num_tasks=12, num_methods=4, num_hardware=2, seed=0)
    for fold in ev.leave_one_task_out(table, "value")[:3] + ev.leave_one_hardware_out(table, "value"):
        train = ev.split(table, fold)
        keys = set(zip(train.observations.task_id, train.observations.hardware_id))
        assert not keys & set(fold.test_contexts)
        assert not set(train.observations.task_id) & set(fold.exclude_tasks)
    folds = ev.grouped_k_fold(table, "value", "x0", 3, seed=0)
    assert sum(len(f.test_contexts) for f in folds) == len(ev.contexts_of(table, "value"))


def test_batched_folds_are_isolated():
    """metasel's folds are fitted together (fit_folds): each fold's model is the one it gets
    fitted alone, and changing another fold's test values changes nothing of it."""
    from metasel.evaluation.harness import fold_problems

    table, _ = low_rank_table(num_tasks=12, num_methods=4, num_hardware=1, density=0.9, seed=3)
    folds = ev.leave_one_task_out(table, "value")[:3]
    problems = [fold_problems(table, "value", f, embed="none", embed_dims=0) for f in folds]
    strategy = metasel_strategy("value", steps=40, members=2, embed="none")
    batched = strategy.fit_folds([p[0] for p in problems], seed=0)
    alone = strategy.fit(problems[0][0], seed=0)
    np.testing.assert_allclose(batched[0].scores(problems[0][1]), alone.scores(problems[0][1]), atol=1e-4)
    # move the values of fold 1's held-out task: fold 0 trains on them, fold 1 must not
    obs = table.observations.copy()
    held = obs["task_id"] == folds[1].test_contexts[0][0]
    obs.loc[held, "value"] = obs.loc[held, "value"] * 50.0
    moved = table.with_observations(obs)
    problems2 = [fold_problems(moved, "value", f, embed="none", embed_dims=0) for f in folds]
    again = strategy.fit_folds([p[0] for p in problems2], seed=0)
    np.testing.assert_allclose(again[1].scores(problems2[1][1]), batched[1].scores(problems[1][1]), atol=1e-4)
    assert not np.allclose(again[0].scores(problems2[0][1]), batched[0].scores(problems[0][1]), atol=1e-3)


def test_evaluate_end_to_end_small():
    table, _ = low_rank_table(num_tasks=14, num_methods=5, num_hardware=1, density=0.9, seed=2)
    folds = ev.leave_one_task_out(table, "value")[:4]
    res = evaluate(table, "value", folds, strategies=_strategies("value"), anytime_k=3)
    s = summarise(res)
    assert {"metasel", "single_best", "random", "elect"} <= set(s)
    assert "top1" not in s["elect"]  # an order only: no zero-shot row
    # each row's regret is the relative regret of its pick against the recorded values
    values = {(t, m): v for t, m, v in table.long("value")[["task_id", "method", "value"]].itertuples(index=False)}
    for r in res.rows:
        best = max(v for (t, _), v in values.items() if t == r["task_id"])
        assert r["regret"] == pytest.approx(1.0 - values[(r["task_id"], r["pick"])] / best)
    assert s["metasel"]["regret"] < s["random"]["regret"]  # planted low-rank structure: it learns something
    assert len(res.coverage) == sum(1 for t, _ in values if t in {f.test_contexts[0][0] for f in folds})
    assert s["metasel"]["coverage50"] <= s["metasel"]["coverage90"]
    # coverage is the posterior's own intervals (calibrated widths where it has them), the Gaussian one beside it
    assert s["metasel"]["coverage50"] == pytest.approx(np.mean([c["in50"] for c in res.coverage]))
    assert s["metasel"]["coverage90_gaussian"] == pytest.approx(np.mean([c["z"] < 1.6448536 for c in res.coverage]))
    # anytime regret never increases with more benchmarks, and reaches 0 with all of them
    for curves in res.anytime.values():
        arr = np.asarray(curves)
        assert (np.diff(arr, axis=1) <= 1e-12).all()
    # every context's benchmark order is kept, and its regret@k is what the summary averages
    mine = [tr for tr in res.traces if tr["strategy"] == "metasel"]
    assert len(mine) == len({(r["task_id"], r["hardware_id"]) for r in res.rows}) and all(len(tr["order"]) <= 3 for tr in mine)
    assert math.isclose(np.mean([tr["regret_at"][1] for tr in mine]), s["metasel"]["regret@2"])


def test_pooled_values_of_identical_computations():
    true = np.log(np.array([10.0, 9.0, 8.0, np.nan, 11.0]))
    methods = ["int8", "int8+batch", "int8+cache", "int8+other", "bf16"]
    same = {"int8+batch": "int8", "int8+cache": "int8", "int8+other": "int8"}
    pooled = metrics.pooled_values(true, methods, same)
    assert np.allclose(pooled[:3], np.log([10.0, 9.0, 8.0]).mean()) and np.isnan(pooled[3])
    assert pooled[4] == true[4] and np.array_equal(metrics.pooled_values(true, methods, {}), true, equal_nan=True)


def test_evaluate_pools_identical_computations_on_measured_data():
    """On the shipped measured data, batch-1 tasks have methods that run the same
    computation: the report adds metrics that pool them, and metasel's loop never spends a
    benchmark on a computation it has measured."""
    from pathlib import Path

    from metasel.data.store import read_export

    data = read_export(Path(__file__).resolve().parents[2] / "datasets" / "cpu-v1")
    specs = {t: json.loads(s)["workload"] for t, s in zip(data.tasks["task_id"], data.tasks["spec"])}
    b1 = sorted(t for t, w in specs.items() if w["batch_size"] == 1 and w["shared_prefix"] == 0)[:3]
    b4 = sorted(t for t, w in specs.items() if w["batch_size"] > 1)[:3]
    table = data.filter(tasks=b1 + b4, hardware=sorted(data.hardware["hardware_id"])[:1])
    folds = [f for f in ev.leave_one_task_out(table, "throughput_tok_s") if f.test_contexts[0][0] in b1[:2] + b4[:1]]
    res = evaluate(table, "throughput_tok_s", folds, strategies=_strategies("throughput_tok_s", steps=30), anytime_k=3)
    assert res.pooled_contexts == 2  # the two batch-1 contexts
    s = summarise(res)
    assert s["metasel"]["top1_pooled"] >= s["metasel"]["top1"] and "regret_pooled@3" in s["random"]
    assert s["metasel"]["to_oracle_pooled"] <= s["metasel"]["to_oracle"]
    assert "Identical computations as one (2 contexts" in markdown(s, title="t", anytime_k=3)
    from metasel.domain.techniques import same_computation
    from metasel.data.table import descriptor_map

    tasks, md = descriptor_map(table.tasks, "task_id"), descriptor_map(table.methods, "method")
    for tr in res.traces:
        if tr["strategy"] == "metasel":
            same = same_computation(tasks[tr["task_id"]], md)
            assert len({same[m] for m in tr["order"]}) == len(tr["order"])


def test_evaluate_cli_on_generic_csv_with_folds(tmp_path):
    table, _ = low_rank_table(num_tasks=12, num_methods=4, num_hardware=1, density=1.0, seed=3)
    obs = table.observations
    perf = tmp_path / "perf.csv"
    perf.write_text("task,method,value\n" + "".join(f"{t},{m},{v}\n" for t, m, v in zip(obs.task_id, obs.method, obs.value)))
    feats = tmp_path / "features.csv"
    rows = [json.loads(f) for f in table.tasks["features"]]
    cols = sorted(rows[0])
    feats.write_text("task," + ",".join(cols) + ",const\n" + "".join(
        f"{t}," + ",".join(str(r[c]) for c in cols) + ",1\n" for t, r in zip(table.tasks.task_id, rows)))
    folds = tmp_path / "folds.csv"
    folds.write_text("task,fold,repetition\n" + "".join(f"{t},{i % 3},1\n" for i, t in enumerate(table.tasks.task_id)))
    out = tmp_path / "res"
    r = CliRunner().invoke(main, ["evaluate", "--data", str(perf), "--features", str(feats), "--objective", "max",
                                  "--protocol", "folds", "--folds", str(folds), "--baselines", "single_best,knn",
                                  "--steps", "60", "--members", "1", "--out", str(out)])
    assert r.exit_code == 0, (r.output, r.exception)
    for name in ("results.md", "results.json", "anytime.png", "per_task_regret.png"):
        assert (out / name).exists() and (out / name).stat().st_size > 0
    data = json.loads((out / "results.json").read_text())
    assert {"metasel", "single_best", "knn"} <= set(data["summary"])
    assert "| metasel |" in (out / "results.md").read_text()


class _Recorder(Baseline):
    """A real (if simple) strategy that keeps what the harness gave it, to check fold isolation."""

    name = "recorder"
    seen: list = []

    def fit(self, train, *, seed=0):
        self.train = train
        return self

    def scores(self, test):
        _Recorder.seen.append((self.train, test))
        return np.zeros((len(test.contexts), len(test.methods)))


def test_nothing_from_a_test_fold_reaches_a_fit():
    table, _ = low_rank_table(num_tasks=10, num_methods=4, num_hardware=2, density=0.9, seed=4)
    _Recorder.seen = []
    folds = ev.leave_one_task_out(table, "value")[:2] + ev.leave_one_hardware_out(table, "value")
    evaluate(table, "value", folds, strategies=[_Recorder()])
    assert len(_Recorder.seen) == len(folds)
    for fold, (train, test) in zip(folds, _Recorder.seen):
        held = set(fold.test_contexts)
        train_keys = set(zip(train.table.observations.task_id, train.table.observations.hardware_id))
        assert not train_keys & held and not set(train.contexts) & held
        assert not set(train.table.observations.task_id) & set(fold.exclude_tasks)
        assert not set(train.table.observations.hardware_id) & set(fold.exclude_hardware)
        assert len(test.table.observations) == 0  # a test problem carries descriptors only
        assert set(test.contexts) == held


@pytest.mark.parametrize("args, message", [
    (["--metric", "nosuch"], "--metric: expected one of"),
    (["--metric", "ttft_ms"], "--metric ttft_ms: .* has no 'ok' observation of it; it has \\['value'\\]"),
    (["--protocol", "group:nosuch"], "group:nosuch: every task falls in one group"),
    (["--protocol", "group:x0:1"], "with K >= 2"),
    (["--protocol", "group:x0:abc"], "with K >= 2"),
    (["--protocol", "group:"], "group:<spec path or feature>"),
    (["--protocol", "folds"], "--protocol folds needs --folds FILE"),
])
def test_evaluate_usage_mistakes_are_one_line(tmp_path, args, message):
    import re

    table, _ = low_rank_table(num_tasks=6, num_methods=3, num_hardware=1, density=1.0, seed=3)
    obs = table.observations
    perf = tmp_path / "perf.csv"
    perf.write_text("task,method,value\n" + "".join(f"{t},{m},{v}\n" for t, m, v in zip(obs.task_id, obs.method, obs.value)))
    r = CliRunner().invoke(main, ["evaluate", "--data", str(perf), *args, "--out", str(tmp_path / "o")])
    assert r.exit_code == 1, (r.output, r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), lines


def test_par10_means_and_gap_closed_on_a_generic_csv_with_timeouts(tmp_path):
    """Penalised runtimes (a timeout is recorded at its PAR10 penalty): each row's value is what its
    pick cost, and gap closed (means) is (single best - strategy) / (single best - oracle) of their means."""
    rng = np.random.default_rng(0)
    lines = ["task,method,value,status"]
    recorded = {}
    for t in range(120):
        hard = t % 2  # method a times out on odd tasks, b on even ones, c is slow but always finishes
        for m, timeout in (("a", hard == 1), ("b", hard == 0), ("c", False)):
            v = 1000.0 if timeout else float(rng.uniform(1, 5) if m != "c" else rng.uniform(40, 60))
            recorded[(f"t{t}", m)] = v
            lines.append(f"t{t},{m},{v},{'timeout' if timeout else 'ok'}")
    perf = tmp_path / "perf.csv"
    perf.write_text("\n".join(lines) + "\n")
    feats = tmp_path / "features.csv"
    feats.write_text("task,x,noise\n" + "".join(f"t{t},{t % 2},{rng.normal()}\n" for t in range(120)))
    folds = tmp_path / "folds.csv"
    folds.write_text("task,fold\n" + "".join(f"t{t},{(t // 2) % 4}\n" for t in range(120)))
    out = tmp_path / "res"
    r = CliRunner().invoke(main, ["evaluate", "--data", str(perf), "--features", str(feats), "--objective", "min",
                                  "--protocol", "folds", "--folds", str(folds), "--baselines", "single_best,sunny,survival_forest",
                                  "--ensemble", "--steps", "60", "--members", "1", "--out", str(out)])
    assert r.exit_code == 0, (r.output, r.exception)
    data = json.loads((out / "results.json").read_text())
    rows = data["per_context"]
    for row in rows:
        assert row["value"] == pytest.approx(recorded[(row["task_id"], row["pick"])])
        assert row["oracle_value"] == pytest.approx(min(v for (t, _), v in recorded.items() if t == row["task_id"]))
    summary = data["summary"]
    assert {"metasel", "metasel_ensemble", "sunny", "survival_forest"} <= set(summary)
    for name, s in summary.items():
        if "gap_closed_mean" not in s:
            continue
        mine = [row for row in rows if row["strategy"] == name]
        mean, sbs, vbs = (np.mean([row[c] for row in mine]) for c in ("value", "sbs_value", "oracle_value"))
        assert s["gap_closed_mean"] == pytest.approx((sbs - mean) / (sbs - vbs))
    # the feature says which method times out (90 training tasks, enough to be sure of it): the learned
    # selectors all but reach the oracle; the single best (always the slow c) does not
    for name in ("metasel", "metasel_ensemble", "sunny"):
        assert summary[name]["gap_closed_mean"] > 0.9, (name, summary[name]["gap_closed_mean"])
    assert summary["survival_forest"]["gap_closed_mean"] > 0.1  # its forests' leaves mix the noise feature in
    assert "gap closed (means)" in (out / "results.md").read_text()
