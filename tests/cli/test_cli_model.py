"""fit, suggest and tune through the CLI."""

import json
import math

import pytest
from click.testing import CliRunner

from metasel import Store
from metasel.cli import main
from metasel.surrogate import BayesianSurrogate
from tests.bench.test_bench import TINY_GRID, write

LLM_SPEC = """
name: llama2-7b-chat
model: {arch: llama, layers: 32, hidden: 4096, heads: 32, kv_heads: 32, intermediate: 11008, vocab: 32000, dtype: float16}
workload: {prompt_len: 512, output_len: 512, batch_size: 16}
hardware: {name: my-h100, device: cuda, count: 1, memory_gb: 80, peak_tflops: 989, mem_bw_gbs: 3350, price_per_hour: 4.0}
objective: {metric: throughput_tok_s}
"""


def test_fit_and_suggest_on_llm_bench(tmp_path, llm_bench_path):
    store = tmp_path / "s.sqlite"
    run = CliRunner().invoke
    assert run(main, ["--store", str(store), "import", str(llm_bench_path)]).exit_code == 0
    model = tmp_path / "m.metasel"
    r = run(main, ["--store", str(store), "fit", "--out", str(model), "--steps", "200", "--members", "1", "--embed", "hash",
                   "--exclude-flag", "batch_semantics=prompt_batch"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert BayesianSurrogate.load(model).metric == "throughput_tok_s"
    spec = write(tmp_path, "spec.yaml", LLM_SPEC)
    r = run(main, ["--store", str(store), "suggest", "--task", str(spec), "--model", str(model), "--json",
                   "--plot", str(tmp_path / "s.png")])
    assert r.exit_code == 0, (r.output, r.exception)
    out = json.loads(r.stdout)
    assert {m["method"] for m in out["methods"]} == {"vLLM", "TensorRT-LLM", "llama.cpp", "Deepspeed-MII", "Deepspeed", "sambaflow"}
    assert all(m["predicted"] > 0 and m["low90"] < m["predicted"] < m["high90"] for m in out["methods"])
    assert abs(sum(m["p_best"] for m in out["methods"]) - 1) < 1e-6
    assert all("usd_per_mtok" in m for m in out["methods"])
    assert out["next"] in {m["method"] for m in out["methods"]}
    assert out["recommended"] == out["methods"][0]["method"]  # what the table prints as recommended
    assert (tmp_path / "s.png").stat().st_size > 1000
    r = run(main, ["--store", str(store), "suggest", "--task", str(spec), "--model", str(model)])
    assert "zero-shot" in r.output and "next benchmark:" in r.output and "ranked by expected value" in r.output
    assert out["intervals_calibrated_for"] == "task"  # fit's default --calibrate-by
    assert out["intervals_level_by_level"] is True  # hundreds of training tasks: enough held out
    assert "intervals calibrated for a new task on known hardware: split conformal, level by level, on task groups" \
        in r.output
    hw_model = tmp_path / "hw.metasel"
    r = run(main, ["--store", str(store), "fit", "--out", str(hw_model), "--steps", "100", "--members", "1",
                   "--embed", "hash", "--calibrate-by", "hardware", "--exclude-flag", "batch_semantics=prompt_batch"])
    assert r.exit_code == 0, (r.output, r.exception)
    r = run(main, ["--store", str(store), "suggest", "--task", str(spec), "--model", str(hw_model)])
    assert "intervals calibrated for new hardware" in r.output, r.output
    # a fifth of the machines per split is too few alone: disjoint splits are added until 8 machines are held out
    assert "intervals calibrated for new hardware: split conformal, level by level, on hardware groups" in r.output
    assert BayesianSurrogate.load(hw_model).info()["calib_splits"] >= 2
    # --risk 0.9: ranked by the 10% quantile of throughput (failures count as zero)
    r = run(main, ["--store", str(store), "suggest", "--task", str(spec), "--model", str(model), "--json", "--risk", "0.9"])
    assert r.exit_code == 0, (r.output, r.exception)
    risky = json.loads(r.stdout)
    assert risky["ranked_by"] == "0.9 risk quantile"
    from scipy.stats import norm

    for m in risky["methods"]:
        q = (0.1 - (1 - m["p_feasible"])) / m["p_feasible"]
        if q > 0:
            assert m["score"] == pytest.approx(math.log(m["predicted"]) + m["log_std"] * norm.ppf(q), abs=1e-6)
    feasible = [m["score"] for m in risky["methods"] if m["p_feasible"] >= 0.5]
    assert feasible == sorted(feasible, reverse=True)
    r = run(main, ["--store", str(store), "suggest", "--task", str(spec), "--model", str(model), "--choose", "median"])
    assert r.exit_code != 0 and "expected one of" in r.output and "Traceback" not in r.output


def test_tune_for_real_and_resume(tmp_path):
    store = tmp_path / "s.sqlite"
    grid = write(tmp_path, "grid.yaml", TINY_GRID)
    run = CliRunner().invoke
    r = run(main, ["--store", str(store), "collect", "--grid", str(grid), "--threads", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    model = tmp_path / "m.metasel"
    assert run(main, ["--store", str(store), "fit", "--out", str(model), "--steps", "100", "--embed", "hash"]).exit_code == 0
    spec = write(tmp_path, "task.yaml", """
model: {arch: llama, layers: 1, hidden: 48, heads: 2, kv_heads: 1, intermediate: 96, vocab: 256}
workload: {prompt_len: 10, output_len: 4, batch_size: 2}
hardware: {threads: 1}
""")
    args = ["--store", str(store), "tune", "--task", str(spec), "--model", str(model), "--budget", "2", "--repeats", "1",
            "--min-gain", "0",
            "--plot", str(tmp_path / "t.png")]
    r = run(main, args)
    assert r.exit_code == 0, (r.output, r.exception)
    assert "recommendation:" in r.output and (tmp_path / "t.png").exists()
    with Store(store) as s:
        n = s.count()
    assert n == 8  # 6 grid cells + 2 tuned
    r = run(main, args)  # resumes: the budget is already spent by the stored benchmarks
    assert "resuming: 2 benchmark(s)" in r.output
    with Store(store) as s:
        assert s.count() == 8
    # one request at a time: static batching is plain (sdpa) generation, and suggest says so
    one = write(tmp_path, "one.yaml", """
model: {arch: llama, layers: 1, hidden: 48, heads: 2, kv_heads: 1, intermediate: 96, vocab: 256}
workload: {prompt_len: 10, output_len: 4, batch_size: 1}
hardware: {threads: 1}
""")
    r = run(main, ["--store", str(store), "suggest", "--task", str(one), "--model", str(model), "--json"])
    rows = {m["method"]: m for m in json.loads(r.stdout)["methods"]}
    assert rows["static_batching"]["same_as"] == "sdpa" and rows["sdpa"]["same_as"] is None
    assert rows["static_batching"]["predicted"] == rows["sdpa"]["predicted"]
    r = run(main, ["--store", str(store), "suggest", "--task", str(one), "--model", str(model)])
    assert "static_batching (= sdpa)" in r.output and "runs the same computation" in r.output


def test_suggest_shows_a_method_the_store_says_cannot_run_as_infeasible_with_the_reason_and_last(tmp_path):
    from pathlib import Path

    store, model = tmp_path / "s.sqlite", tmp_path / "m.metasel"
    run = CliRunner().invoke
    cpu_v1 = Path(__file__).resolve().parents[2] / "datasets" / "cpu-v1"
    assert run(main, ["--store", str(store), "import", str(cpu_v1)]).exit_code == 0
    r = run(main, ["--store", str(store), "fit", "--out", str(model), "--steps", "100", "--members", "1"])
    assert r.exit_code == 0, r.output
    spec = write(tmp_path, "b4.yaml", """
model: {preset: llama-5m}
workload: {prompt_len: 64, output_len: 32, batch_size: 4}
hardware: {threads: 2}
""")
    r = run(main, ["--store", str(store), "suggest", "--task", str(spec), "--model", str(model), "--json",
                   "--no-landmarks"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["recommended"] == out["methods"][0]["method"] and out["reason"].startswith("the best expected value")
    rows = {m["method"]: m for m in out["methods"]}
    bad = rows["assisted+static_batching"]  # transformers' assisted decoding refuses batch > 1: recorded unsupported
    assert bad["feasible"] is False and bad["p_feasible"] < 0.5
    assert "predicted to fail here" in bad["reason"] and "unsupported in" in bad["reason"]
    assert out["methods"][-1]["method"] == "assisted+static_batching"  # ranked last
    assert all(m["reason"] == "" for m in out["methods"] if m["feasible"])
    assert rows["prefix_cache"]["same_as"] == "sdpa" and rows["prefix_cache"]["p_feasible"] == rows["sdpa"]["p_feasible"]
    r = run(main, ["--store", str(store), "suggest", "--task", str(spec), "--model", str(model), "--no-landmarks"])
    line = next(x for x in r.output.splitlines() if x.startswith("assisted+static_batching "))
    assert "infeasible" in line and "predicted to fail" in line  # no throughput shown for it
    assert "infeasible here (1, ranked last): assisted+static_batching: predicted to fail here" in r.output
