"""Two-metric views of suggest: the Pareto front and goodput under an SLO."""

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from metasel.app.pareto import MetricView, non_dominated, pareto, parse_slo, slo_goodput
from metasel.cli import main
from metasel.errors import InputDataError

CPU_V2 = Path(__file__).resolve().parents[2] / "datasets" / "cpu-v2"


def test_non_dominated_by_hand():
    # (throughput up, latency down): b beats a on both; c is faster but slower to answer; d is beaten by b
    xs, ys = [100, 200, 300, 150], [50, 40, 90, 60]
    assert non_dominated(xs, ys) == [False, True, True, False]
    assert non_dominated([1, 1], [2, 2]) == [True, True]  # ties on both keep both
    assert non_dominated([1, 2], [1, 2], x_dir="min", y_dir="min") == [True, False]


def _view(metric, direction, means, stds, measured=None):
    return MetricView(metric, direction, {m: math.log(v) for m, v in means.items()}, dict(stds),
                      {m: v / 2 for m, v in means.items()}, {m: v * 2 for m, v in means.items()}, dict(measured or {}),
                      {m: 1.0 for m in means})


def test_pareto_uses_measured_values_where_there_are_some():
    views = {"throughput_tok_s": _view("throughput_tok_s", "max", {"a": 100, "b": 200}, {"a": .1, "b": .1},
                                       measured={"a": 300.0}),
             "e2e_p99_ms": _view("e2e_p99_ms", "min", {"a": 50, "b": 40}, {"a": .1, "b": .1})}
    front = pareto(views, "throughput_tok_s", "e2e_p99_ms")
    assert [r["method"] for r in front.front] == ["a", "b"]  # a: 300 measured (faster), b: answers sooner
    assert front.rows[0]["throughput_tok_s_measured"] is True


def test_slo_goodput_by_hand():
    views = {"throughput_tok_s": _view("throughput_tok_s", "max", {"a": 320, "b": 640}, {"a": .1, "b": .1}),
             "ttft_p99_ms": _view("ttft_p99_ms", "min", {"a": 100, "b": 400}, {"a": 0.5, "b": 0.5})}
    rows = slo_goodput(views, {"ttft_p99_ms": 400.0}, output_len=32)
    p_a = 0.5 * (1 + math.erf((math.log(400) - math.log(100)) / (0.5 * math.sqrt(2))))
    by = {r["method"]: r for r in rows}
    assert by["a"]["p_meet_slo"] == pytest.approx(p_a) and by["b"]["p_meet_slo"] == pytest.approx(0.5)
    assert by["a"]["goodput_req_s"] == pytest.approx(10 * p_a) and by["b"]["goodput_req_s"] == pytest.approx(10.0)
    assert [r["method"] for r in rows] == ["b", "a"]
    capped = {r["method"]: r for r in slo_goodput(views, {"ttft_p99_ms": 400.0}, output_len=32, arrival_rate=4)}
    assert capped["b"]["req_s"] == 4 and capped["b"]["goodput_req_s"] == pytest.approx(2.0)


def test_slo_and_pareto_options_are_checked():
    assert parse_slo("ttft_p99_ms=500, tpot_p99_ms=50") == {"ttft_p99_ms": 500.0, "tpot_p99_ms": 50.0}
    for bad in ("throughput_tok_s=5", "ttft_p99_ms", "ttft_p99_ms=-1", "ttft_p99_ms=abc", ""):
        with pytest.raises(InputDataError, match="--slo"):
            parse_slo(bad)


@pytest.mark.slow
def test_suggest_shows_the_front_and_goodput_on_the_engine_data(tmp_path):
    store = str(tmp_path / "s.sqlite")
    run = CliRunner().invoke
    assert run(main, ["--store", store, "import", str(CPU_V2)]).exit_code == 0
    task = tmp_path / "t.yaml"
    task.write_text("""
model: {arch: llama, layers: 4, hidden: 256, heads: 4, kv_heads: 2, intermediate: 704, vocab: 8192}
workload: {prompt_len: 96, output_len: 32, batch_size: 4, num_requests: 16, arrival: {process: poisson, rate: 4}}
hardware: {name: cpu-2t, device: cpu, threads: 2}
""")
    png = tmp_path / "front.png"
    r = run(main, ["--store", store, "suggest", "--task", str(task), "--no-landmarks", "--pareto",
                   "throughput_tok_s,e2e_p99_ms", "--pareto-plot", str(png), "--slo", "e2e_p99_ms=400", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    rows = out["pareto"]["methods"]
    front = [x for x in rows if x["on_front"]]
    assert front and all(x["feasible"] for x in front)
    for a in front:  # nothing beats a front method on both metrics
        assert not any(b["throughput_tok_s"] > a["throughput_tok_s"] and b["e2e_p99_ms"] < a["e2e_p99_ms"]
                       for b in rows if b["feasible"])
    slo = out["slo"]["methods"]
    assert slo[0]["goodput_req_s"] >= slo[-1]["goodput_req_s"] and all(r["req_s"] <= 4 for r in slo)
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    bad = run(main, ["--store", store, "suggest", "--task", str(task), "--no-landmarks", "--pareto", "throughput_tok_s"])
    assert bad.exit_code == 1 and "expected two different metrics" in bad.output
