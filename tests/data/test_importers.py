import pytest

from metasel import InputDataError
from metasel.data.importers import COLLAPSE_FLAG, LLAMACPP_FLAG, read_generic_csv, read_llm_inference_bench


def test_llm_bench_main_sweep_coverage(llm_bench_path):
    t = read_llm_inference_bench(llm_bench_path)
    cov = t.coverage()
    assert (cov["tasks"], cov["methods"], cov["hardware"]) == (350, 6, 23)
    assert cov["cells_observed"] == 4682
    assert round(cov["fraction_observed"], 3) == 0.097
    best = t.best_methods("throughput_tok_s")["method"].value_counts().to_dict()
    assert best == {"vLLM": 843, "TensorRT-LLM": 527, "Deepspeed-MII": 16, "llama.cpp": 6}
    flagged = t.observations[t.observations["flags"].str.contains(LLAMACPP_FLAG, regex=False)]
    assert len(flagged) > 0 and set(flagged["method"]) == {"llama.cpp"}
    assert not t.observations["flags"].str.contains(COLLAPSE_FLAG).any()
    specs = t.task_specs()
    one = next(s for s in specs.values() if s["model"]["hf_id"] == "meta-llama/Llama-2-70b-hf")
    assert one["model"]["layers"] == 80 and one["model"]["kv_heads"] == 8
    h100 = t.hardware.set_index("hardware_id").loc["H100 x4", "specs"]
    assert '"count":4' in h100 and '"total_memory_gb":320.0' in h100


def test_llm_bench_options(llm_bench_path):
    dropped = read_llm_inference_bench(llm_bench_path, llamacpp_batched="drop")
    assert dropped.coverage()["cells_observed"] == 3521
    flagged = read_llm_inference_bench(llm_bench_path, include_flagged=True)
    assert flagged.observations["flags"].str.contains(COLLAPSE_FLAG).sum() == 33
    ext = read_llm_inference_bench(llm_bench_path, extended=True)
    assert any("+w:fp16/kv:fp8" in m for m in ext.methods["method"])


def test_generic_csv_with_features_and_failures(tmp_path):
    perf = tmp_path / "perf.csv"
    perf.write_text("task,method,value,status\ni1,a,1.5,ok\ni1,b,3000,timeout\ni2,a,2.0,\ni2,b,,error\n")
    feats = tmp_path / "f.csv"
    feats.write_text("task,x,const,y\ni1,0.5,1,\ni2,1.5,1,3\ni3,2,1,4\n")
    t = read_generic_csv(perf, features_csv=feats, objective="min")
    assert t.directions == {"value": "min"}
    o = t.observations.set_index(["task_id", "method"])
    assert o.loc[("i1", "b"), "status"] == "timeout" and o.loc[("i1", "b"), "value"] == 3000.0
    assert o.loc[("i2", "a"), "status"] == "ok"
    import json
    fi = {r.task_id: json.loads(r.features) for r in t.tasks.itertuples()}
    assert fi["i1"] == {"x": 0.5, "const": 1.0, "y": None} and "i3" in fi
    assert t.best_methods("value").empty  # no task has two ok methods to choose between
    assert t.best_methods("value", min_methods=1)["method"].tolist() == ["a", "a"]
    assert t.long("value")["task_id"].tolist() == ["i1", "i2"]


@pytest.mark.parametrize("text, match", [
    ("task,method,value\ni1,a,nan\n", "expected a finite number"),
    ("task,method,value\ni1,a,-3\n", "non-negative"),
    ("task,method,value\ni1,a,\n", "empty cell"),
    ("task,method\ni1,a\n", "missing column 'value'"),
    ("task,method,value,colour\ni1,a,1,red\n", "unknown column 'colour'"),
    ("task,method,value\n", "only a header"),
])
def test_generic_csv_errors(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(InputDataError, match=match) as info:
        read_generic_csv(p)
    assert str(p) in str(info.value)


def test_generic_csv_takes_any_status_word_as_a_failure(tmp_path):
    """Other tools write memout, crash, TIMEOUT...: `ok` is success, anything else a failure (the nearest
    metasel status where the word says so, else error), the word kept verbatim in the message."""
    from metasel.data.importers import status_of

    perf = tmp_path / "perf.csv"
    perf.write_text("task,method,value,status\ni1,a,1.5,ok\ni1,b,3000,memout\ni1,c,3000,crash\ni1,d,,TIMEOUT\n"
                    "i1,e,,other\ni1,f,,OK\n")
    with pytest.raises(InputDataError, match="row 7, column 'value'"):  # "OK" is success: it needs a value
        read_generic_csv(perf)
    perf.write_text(perf.read_text().replace("i1,f,,OK", "i1,f,2.5,OK"))
    o = read_generic_csv(perf).observations.set_index("method")
    assert o["status"].to_dict() == {"a": "ok", "b": "oom", "c": "error", "d": "timeout", "e": "error", "f": "ok"}
    assert o.loc["b", "message"] == "status 'memout'" and o.loc["c", "message"] == "status 'crash'"
    assert o.loc["d", "message"] == "status 'TIMEOUT'" and o.loc["a", "message"] == "" and o.loc["b", "value"] == 3000.0
    assert status_of("unsupported") == ("unsupported", "") and status_of(" ") == ("ok", "")


def test_the_aslib_scenario_with_memout_and_crash_reads(tmp_path):
    from tests.conftest import SHARED

    perf = SHARED / "data" / "aslib_dev" / "SAT20-MAIN" / "perf.csv"
    t = read_generic_csv(perf, objective="min")
    counts = t.observations["status"].value_counts().to_dict()
    assert counts["oom"] == 72 and counts["error"] == 234 + 116 and counts["ok"] == 12955 and counts["timeout"] == 13423
