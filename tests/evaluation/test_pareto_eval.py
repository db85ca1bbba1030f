"""evaluate's Pareto view: fronts and hypervolumes by hand, a planted two-metric table, the CLI."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from metasel.cli import main
from metasel.data.table import PerfTable
from metasel.evaluation import folds as ev
from metasel.evaluation.baselines import PerMethodRegression, RandomChoice
from metasel.evaluation.harness import metasel_strategy
from metasel.evaluation.pareto import evaluate_pareto, front_scores
from metasel.select.front import hypervolume, non_dominated


def test_hypervolume_by_hand():
    # the union of [0,3]x[0,1], [0,2]x[0,2] and [0,1]x[0,3]: 3 + 2 + 1
    assert hypervolume([(3, 1), (1, 3), (2, 2)], (0, 0)) == pytest.approx(6.0)
    assert hypervolume([(3, 1), (1, 3), (2, 2), (1, 1)], (0, 0)) == pytest.approx(6.0)  # a dominated point adds nothing
    assert hypervolume([(3, 1)], (0, 2)) == 0.0  # not above the reference
    assert hypervolume([], (0, 0)) == 0.0
    assert non_dominated([1, float("nan"), 2], [1, 5, 0], x_dir="max", y_dir="max") == [True, False, True]


def test_front_scores_by_hand():
    measured = {"a": (3.0, 1.0), "b": (1.0, 3.0), "c": (0.5, 0.5)}
    # the reference point: 10% of each range below the worst: 0.5 - 0.25 = 0.25 on both
    full = (3 - .25) * (1 - .25) + (1 - .25) * (3 - 1)
    only_a = front_scores(measured, {"a": (9.0, 9.0), "b": (0.0, 0.0), "c": (1.0, 1.0)}, ["a", "b", "c"])
    assert only_a["front"] == ["a"] and only_a["measured_front"] == ["a", "b"]
    assert only_a["hv_ratio"] == pytest.approx((3 - .25) * (1 - .25) / full)
    assert (only_a["precision"], only_a["recall"]) == (1.0, 0.5)
    both = front_scores(measured, {"a": (2.0, 0.0), "b": (0.0, 2.0), "c": (-1.0, -1.0)}, ["a", "b", "c"])
    assert both["hv_ratio"] == pytest.approx(1.0) and (both["precision"], both["recall"]) == (1.0, 1.0)
    wrong = front_scores(measured, {"a": (0.0, 0.0), "b": (0.0, 0.0), "c": (1.0, 1.0)}, ["a", "b", "c"])
    assert wrong["front"] == ["c"] and wrong["precision"] == 0.0
    assert wrong["hv_ratio"] == pytest.approx(.25 * .25 / full)  # the worst method: only the margin below it
    # a front method that never ran well (no measured point) adds nothing and is a miss
    failed = front_scores(measured, {"a": (1.0, 1.0), "d": (5.0, 5.0)}, ["a", "d"])
    assert failed["front"] == ["d"] and failed["hv_ratio"] == 0.0


def planted_two_metric(num_tasks=24, num_methods=6, seed=0):
    """Throughput and p99 latency of each method are functions of a task feature: which methods
    are on a context's front changes with it (learnable from features, invisible to a random order)."""
    rng = np.random.default_rng(seed)
    slope_t, slope_l = rng.normal(size=num_methods), rng.normal(size=num_methods)
    base_t, base_l = rng.normal(size=num_methods), rng.normal(size=num_methods)
    rows, tasks = [], []
    for t in range(num_tasks):
        x = rng.uniform(-2, 2)
        tasks.append({"task_id": f"t{t:02d}", "name": f"task {t}", "spec": {"kind": "synthetic"}, "features": {"x": x}})
        for m in range(num_methods):
            rows.append({"task_id": f"t{t:02d}", "method": f"m{m}", "hardware_id": "hw0",
                         "throughput_tok_s": float(np.exp(3 + base_t[m] + slope_t[m] * x + rng.normal(scale=.05))),
                         "e2e_p99_ms": float(np.exp(4 + base_l[m] + slope_l[m] * x + rng.normal(scale=.05)))})
    methods = [{"method": f"m{m}", "techniques": {"k": m % 2}, "description": ""} for m in range(num_methods)]
    hardware = [{"hardware_id": "hw0", "name": "hw0", "specs": {"device": "cpu"}}]
    return PerfTable(rows, tasks, methods, hardware, source="synthetic")


def test_a_regression_reaches_more_of_the_planted_front_than_random():
    table = planted_two_metric()
    folds = ev.grouped_k_fold(table, "throughput_tok_s", "x", 4, seed=0)

    def make(metric):
        return [RandomChoice(), PerMethodRegression("rf"), metasel_strategy(metric, steps=60, members=1)]

    pe = evaluate_pareto(table, "throughput_tok_s", "e2e_p99_ms", folds, make_strategies=make, seed=0)
    s = pe.summary()
    assert {n: s[n]["contexts"] for n in s} == {"random": 24, "regression_rf": 24, "metasel": 24}
    assert s["regression_rf"]["hv_ratio"] > s["random"]["hv_ratio"] + 0.1
    assert s["regression_rf"]["recall"] > s["random"]["recall"]
    assert all(0.0 <= r["hv_ratio"] <= 1.0 + 1e-9 for r in pe.rows)
    assert len(pe.panels) == 24 and all(set(p["predicted"]) == set(p["front"]) for p in pe.panels)
    # metasel's front in the panels is drawn from its medians: each has a 90% interval around it
    p = pe.panels[0]
    for (x, lo, hi), (y, ylo, yhi) in p["predicted"].values():
        assert lo <= x <= hi and ylo <= y <= yhi


def test_evaluate_cli_pareto(tmp_path):
    from metasel.data.store import export_table

    export_table(planted_two_metric(num_tasks=12, num_methods=4), tmp_path / "data")
    out = tmp_path / "o"
    r = CliRunner().invoke(main, ["evaluate", "--data", str(tmp_path / "data"), "--pareto", "throughput_tok_s,e2e_p99_ms",
                                  "--baselines", "random,single_best", "--steps", "20", "--members", "1",
                                  "--protocol", "group:x:3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "## Pareto front: throughput_tok_s (max) against e2e_p99_ms (min)" in r.output
    data = json.loads((out / "results.json").read_text())
    assert set(data["pareto"]["summary"]) == {"random", "single_best", "metasel"}
    assert data["summary"]  # the single-metric evaluation is still there
    assert (out / "pareto-1.png").stat().st_size > 10_000 and "pareto-1.png" in r.output


@pytest.mark.parametrize("arg, says", [("throughput_tok_s", "expected two different metrics"),
                                       ("throughput_tok_s,throughput_tok_s", "expected two different metrics"),
                                       ("throughput_tok_s,ttft_p99_ms", "no 'ok' observation of it")])
def test_evaluate_cli_pareto_refuses_bad_metrics(tmp_path, arg, says):
    from metasel.data.store import export_table

    export_table(planted_two_metric(num_tasks=4, num_methods=2), tmp_path / "data")
    r = CliRunner().invoke(main, ["evaluate", "--data", str(tmp_path / "data"), "--pareto", arg, "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and says in r.output and "Traceback" not in r.output
