"""Importers of serving benchmarks' result files (metasel.data.serving), on sample files in
tests/data/serving (see its README for where each format is documented and how each file
was made)."""

import json
import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from metasel.cli import main
from metasel.data.serving import detect, method_of, parse_overrides, read_serving
from metasel.domain import techniques as T
from metasel.errors import InputDataError

DATA = Path(__file__).parent / "serving"
GUIDELLM = DATA / "guidellm_benchmarks.json"
AIPERF = DATA / "profile_export_aiperf.json"
LLMPERF = DATA / "meta-llama-Llama-3-1-8B-Instruct_550_150_summary.json"
SWEEP = DATA / "vllm_sweep"
BENCH = DATA / "vllm_bench_serve.json"
HW = {"hardware_id": "hw-a10g", "name": "A10G x1", "specs": {"device": "cuda", "count": 1}, "price_per_hour": None}


def _obs(tbl):
    return tbl.observations.sort_values(["task_id", "method"]).reset_index(drop=True)


def _spec(tbl, task_id):
    return json.loads(tbl.tasks.set_index("task_id").loc[task_id, "spec"])


@pytest.mark.parametrize("path, fmt", [(GUIDELLM, "guidellm"), (AIPERF, "aiperf"), (LLMPERF, "llmperf"),
                                       (BENCH, "vllm-bench"), (SWEEP, "vllm-sweep")])
def test_formats_are_detected_from_content(path, fmt):
    assert detect(path) == fmt


def test_guidellm_report_gives_one_observation_per_benchmark():
    tbl = read_serving(GUIDELLM, overrides={"engine": "vllm", "max_num_seqs": 256, "dtype": "bfloat16"}, hardware=HW)
    obs = tbl.observations
    assert len(obs) == 3 and set(obs["status"]) == {"ok"}
    arrivals = sorted(json.dumps(_spec(tbl, t)["workload"].get("arrival"), sort_keys=True) for t in obs["task_id"])
    assert arrivals == sorted([json.dumps(a, sort_keys=True) for a in ({"process": "concurrency", "clients": 1},
                                                                     {"process": "constant", "rate": 4.0},
                                                                     {"process": "concurrency", "clients": 8})])
    const = next(t for t in obs["task_id"] if _spec(tbl, t)["workload"].get("arrival", {}).get("process") == "constant")
    row = obs[obs["task_id"] == const].iloc[0]
    # request latency is in seconds in GuideLLM's report, milliseconds here
    assert row["e2e_p99_ms"] == pytest.approx(3710.0) and row["ttft_p90_ms"] == pytest.approx(55.1)
    assert row["throughput_tok_s"] == pytest.approx(482.0) and row["latency_ms"] == pytest.approx(30_000.0)
    w = _spec(tbl, const)["workload"]
    assert (w["prompt_len"], w["output_len"], w["num_requests"]) == (256, 128, 120)
    assert set(obs["method"]) == {"vllm/bfloat16+seqs256"}
    assert "errored" in obs[obs["message"] != ""]["message"].iloc[0]  # 2 of 96 errored in the third


def test_aiperf_export_names_its_gpu_and_load():
    tbl = read_serving(AIPERF, overrides={"engine": "trtllm"})
    row = tbl.observations.iloc[0]
    hw = tbl.hardware.iloc[0]
    assert hw["name"] == "NVIDIA H100 80GB HBM3 x1" and json.loads(hw["specs"])["count"] == 1
    spec = _spec(tbl, row["task_id"])
    assert spec["model"]["hf_id"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert spec["workload"]["arrival"] == {"process": "concurrency", "clients": 8}
    assert (spec["workload"]["prompt_len"], spec["workload"]["output_len"]) == (512, 128)
    assert row["tpot_p99_ms"] == pytest.approx(19.8) and row["latency_ms"] == pytest.approx(27_620.0)
    assert row["total_tok_s"] == pytest.approx((51200 + 12800) / 27.62)
    techniques = json.loads(tbl.methods.iloc[0]["techniques"])
    assert techniques[T.engine("trtllm")] == 1.0 and techniques[T.engine("vllm")] == 0.0


def test_llmperf_summary_hand_computed():
    tbl = read_serving(LLMPERF, overrides={"engine": "vllm"}, hardware=HW)
    row = tbl.observations.iloc[0]
    assert row["latency_ms"] == pytest.approx(50 / 104.5 * 60_000.0)
    assert row["ttft_p50_ms"] == pytest.approx(80.0) and row["e2e_p90_ms"] == pytest.approx(2390.0)
    assert row["tpot_ms"] == pytest.approx(14.7)
    w = _spec(tbl, row["task_id"])["workload"]
    assert w["arrival"] == {"process": "concurrency", "clients": 4} and w["output_len"] == 151
    # the Llama 3.1 8B dimensions come from the known models
    assert _spec(tbl, row["task_id"])["model"]["layers"] == 32


def test_vllm_bench_serve_percentiles_from_its_requests():
    data = json.loads(BENCH.read_text())
    tbl = read_serving(BENCH, hardware=HW)
    row = tbl.observations.iloc[0]
    # e2e from the per-request latencies (seconds), as numpy.percentile interpolates
    lats = sorted(data["latencies"])
    pos = (len(lats) - 1) * 0.9
    lo = math.floor(pos)
    assert row["e2e_p90_ms"] == pytest.approx(1000 * (lats[lo] + (lats[lo + 1] - lats[lo]) * (pos - lo)))
    assert row["e2e_p90_ms"] == pytest.approx(data["p90_e2el_ms"])  # vLLM's own figure agrees
    # TTFT and TPOT from its summary keys (the file has no per-request TTFTs without --save-detailed)
    assert row["ttft_p99_ms"] == pytest.approx(data["p99_ttft_ms"]) and row["tpot_p50_ms"] == data["median_tpot_ms"]
    assert row["throughput_tok_s"] == pytest.approx(data["output_throughput"])
    spec = _spec(tbl, row["task_id"])
    assert spec["workload"]["arrival"] == {"process": "poisson", "rate": 4.0}
    assert (spec["workload"]["prompt_len"], spec["workload"]["output_len"], spec["workload"]["num_requests"]) == (32, 16, 8)
    assert tbl.methods.iloc[0]["method"] == "vllm"  # a single run states no server settings


def test_vllm_sweep_settings_become_methods():
    tbl = read_serving(SWEEP, hardware=HW)
    assert len(tbl.observations) == 4 and set(tbl.observations["method"]) == {"vllm/seqs1", "vllm/seqs4"}
    vec = {m: json.loads(t) for m, t in zip(tbl.methods["method"], tbl.methods["techniques"])}
    assert vec["vllm/seqs4"][T.MAX_BATCH_LOG2] == 2.0 and vec["vllm/seqs4"][T.CONTINUOUS_BATCHING] == 1.0
    assert vec["vllm/seqs1"][T.CONTINUOUS_BATCHING] == 0.0
    arrivals = {json.dumps(_spec(tbl, t)["workload"].get("arrival"), sort_keys=True) for t in tbl.observations["task_id"]}
    assert arrivals == {json.dumps({"process": "poisson", "rate": 4.0}, sort_keys=True),
                        json.dumps({"clients": 2, "process": "concurrency"}, sort_keys=True)}
    # a combination without its summary.json: the server's overrides are read from the folder's name
    combo = next(SWEEP.iterdir())
    tbl1 = read_serving(combo / "run=0.json", fmt="vllm-sweep", hardware=HW)
    assert tbl1.observations.iloc[0]["method"] == ("vllm/seqs1" if "seqs=1" in combo.name else "vllm/seqs4")


def test_method_of_matches_the_collectors_vectors():
    from metasel.bench import methods as M

    m = M.get("vllm/float32+seqs16+prefix")
    got = method_of("vllm", dict(m.settings))
    assert got["method"] == m.name and got["techniques"] == m.techniques()
    hand = method_of("vllm", {"dtype": "bfloat16", "max_num_seqs": 256, "quantization": "awq"})
    assert hand["method"] == "vllm/bfloat16+awq+seqs256"
    assert hand["techniques"][T.WEIGHT_BITS] == 4.0 and hand["techniques"][T.MAX_BATCH_LOG2] == 8.0


@pytest.mark.parametrize("overrides, hardware, field", [
    ({}, HW, "engine"),  # GuideLLM does not know the server behind the endpoint
    ({"engine": "vllm"}, None, "hardware"),
])
def test_what_the_file_does_not_state_is_asked_for(overrides, hardware, field):
    with pytest.raises(InputDataError, match=rf"benchmarks\[0\]: {field}: .*pass --"):
        read_serving(GUIDELLM, overrides=overrides, hardware=hardware)


def test_a_file_missing_a_field_is_refused_naming_it(tmp_path):
    data = json.loads(LLMPERF.read_text())
    del data["num_concurrent_requests"]
    bad = tmp_path / "x_summary.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(InputDataError, match="arrival: num_concurrent_requests is missing"):
        read_serving(bad, overrides={"engine": "vllm"}, hardware=HW)
    report = json.loads(GUIDELLM.read_text())
    report["benchmarks"][1]["config"]["strategy"] = {"type_": "warp"}
    bad = tmp_path / "benchmarks.json"
    bad.write_text(json.dumps(report))
    with pytest.raises(InputDataError, match=r"benchmarks\[1\]\.config\.strategy\.type_: .*got 'warp'"):
        read_serving(bad, overrides={"engine": "vllm"}, hardware=HW)


def test_a_results_folder_skips_companion_files(tmp_path):
    shutil.copy(LLMPERF, tmp_path / LLMPERF.name)
    (tmp_path / "x_550_150_individual_responses.json").write_text("[]")
    tbl = read_serving(tmp_path, overrides={"engine": "vllm"}, hardware=HW)
    assert len(tbl.observations) == 1
    (tmp_path / "notes.json").write_text('{"a": 1}')
    with pytest.raises(InputDataError, match="notes.json: not a result file"):
        read_serving(tmp_path, overrides={"engine": "vllm"}, hardware=HW)


def test_overrides_parse_values():
    assert parse_overrides(["engine=vllm", "max-num-seqs=64", "enable_prefix_caching=true", "rate=2.5"]) == \
        {"engine": "vllm", "max_num_seqs": 64, "enable_prefix_caching": True, "rate": 2.5}
    with pytest.raises(InputDataError, match="expected KEY=VALUE"):
        parse_overrides(["engine"])


def _hw_yaml(tmp_path):
    p = tmp_path / "hw.yaml"
    p.write_text("name: A10G\ndevice: cuda\ncount: 1\nmemory_gb: 24\n")
    return str(p)


def test_cli_round_trip_and_refusal_leave_the_store_right(tmp_path):
    store = str(tmp_path / "s.sqlite")
    hw = _hw_yaml(tmp_path)
    r = CliRunner().invoke(main, ["--store", store, "import", str(GUIDELLM), "--hardware", hw, "--set", "engine=vllm"])
    assert r.exit_code == 0, r.output
    assert "3 new observations" in r.output
    again = CliRunner().invoke(main, ["--store", store, "import", str(GUIDELLM), "--hardware", hw, "--set", "engine=vllm"])
    assert again.exit_code == 0 and "0 new observations, 3 already stored" in again.output
    bad = CliRunner().invoke(main, ["--store", store, "import", str(GUIDELLM), "--hardware", hw])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    assert bad.output.strip().count("\n") == 0 and "engine" in bad.output
    out = CliRunner().invoke(main, ["--store", store, "export", str(tmp_path / "exp")])
    assert out.exit_code == 0, out.output
    from metasel.data.store import read_export

    back = read_export(tmp_path / "exp")
    # the refused import added nothing: the store holds the first import's observations only
    assert len(back.observations) == 3 and set(back.observations["method"]) == {"vllm"}


def test_cli_hardware_must_be_auto_or_a_file(tmp_path):
    r = CliRunner().invoke(main, ["--store", str(tmp_path / "s.sqlite"), "import", str(LLMPERF),
                                  "--set", "engine=vllm", "--hardware", "a10g"])
    assert r.exit_code != 0 and "expected 'auto' or a hardware YAML file" in r.output


@pytest.mark.parametrize("path, extra, n", [
    (BENCH, [], 1), (SWEEP, [], 4), (GUIDELLM, ["--set", "engine=sglang"], 3), (AIPERF, ["--set", "engine=trtllm"], 1),
    (LLMPERF, ["--set", "engine=vllm", "--set", "max_num_seqs=256"], 1)])
def test_each_sample_round_trips_through_the_store(tmp_path, path, extra, n):
    from metasel.data.store import Store, read_export

    store = str(tmp_path / "s.sqlite")
    hw = [] if path == AIPERF else ["--hardware", _hw_yaml(tmp_path)]
    r = CliRunner().invoke(main, ["--store", store, "import", str(path), *hw, *extra])
    assert r.exit_code == 0, r.output
    assert f"{n} new observations" in r.output
    assert CliRunner().invoke(main, ["--store", store, "export", str(tmp_path / "exp")]).exit_code == 0
    back = read_export(tmp_path / "exp")
    with Store(store) as s:
        stored = s.load()
    assert len(back.observations) == len(stored.observations) == n
    cols = ["task_id", "method", "hardware_id", "throughput_tok_s", "ttft_p99_ms", "e2e_p50_ms", "status"]
    a = stored.observations[cols].sort_values(cols[:3]).reset_index(drop=True)
    b = back.observations[cols].sort_values(cols[:3]).reset_index(drop=True)
    assert a.equals(b)


def _mutations(data, rng, n):
    """Copies of ``data`` with one value somewhere replaced by a wrong type, or one key removed."""
    import copy

    paths = []

    def walk(obj, path):
        if isinstance(obj, dict):
            for k, v in obj.items():
                paths.append(path + [k])
                walk(v, path + [k])
        elif isinstance(obj, list):
            for i, v in enumerate(obj[:3]):
                paths.append(path + [i])
                walk(v, path + [i])

    walk(data, [])
    bad_values = ["x", None, [], {}, -1, 0, 1e308, "nan", True, [1, "a"], {"successful": "x"}]
    for _ in range(n):
        d = copy.deepcopy(data)
        path = paths[int(rng.integers(len(paths)))]
        parent = d
        for k in path[:-1]:
            parent = parent[k]
        if isinstance(parent, dict) and rng.random() < 0.3:
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = bad_values[int(rng.integers(len(bad_values)))]
        yield d


@pytest.mark.reliability
@pytest.mark.parametrize("path", [BENCH, GUIDELLM, AIPERF, LLMPERF], ids=lambda p: p.name)
def test_malformed_results_are_refused_with_a_clear_error_never_a_crash(tmp_path, path):
    import numpy as np

    rng = np.random.default_rng(0)
    data = json.loads(path.read_text())
    target = tmp_path / path.name
    for i, d in enumerate(_mutations(data, rng, 100)):
        target.write_text(json.dumps(d))
        try:
            tbl = read_serving(target, overrides={"engine": "vllm"}, hardware=HW)
        except InputDataError as exc:
            assert "\n" not in str(exc) and str(target) in str(exc), (i, str(exc))
            continue
        assert len(tbl.observations) >= 1
