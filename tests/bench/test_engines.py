"""Serving engines in their own environments: the load generator, the methods, and every engine for real.

The engine tests need ``metasel engines install all`` (the README's test command runs it);
with ``METASEL_REQUIRE_ENGINES=1`` (set by ``make test``) a missing engine fails them, else it skips them.
"""

import json
import math
import os
import time

import numpy as np
import pytest

from metasel.bench import methods as registry
from metasel.bench.engines import envs
from metasel.bench.engines.runtime import loadgen
from metasel.bench.serve import measure
from metasel.errors import InputDataError, MetaselError
from metasel.spec import parse_task_spec

# head_dim 64 and widths divisible by 32: every engine's kernels take it
TINY = {"arch": "llama", "layers": 2, "hidden": 128, "heads": 2, "kv_heads": 1, "intermediate": 256, "vocab": 512,
        "dtype": "float32"}


def _task(**workload):
    w = {"prompt_len": 24, "output_len": 8, "batch_size": 2, "num_requests": 4, "shared_prefix": 0.0, **workload}
    return {"model": dict(TINY), "workload": w}


# ---------------------------------------------------------------------------- load generator and metrics


def test_percentiles_match_numpy():
    rng = np.random.default_rng(0)
    xs = rng.exponential(size=37).tolist()
    for q in (0, 50, 90, 99, 100):
        assert loadgen.percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))
    assert math.isnan(loadgen.percentile([], 50))


def test_summarise_reports_what_the_requests_did():
    reqs = [loadgen.Request(i, [1] * 10, arrival=a) for i, a in enumerate((0.0, 0.5))]
    for r, (first, done) in zip(reqs, ((0.1, 0.4), (0.7, 1.0))):
        r.first, r.done, r.tokens = first, done, 4
    out = loadgen.summarise([reqs], 4, slo={"ttft_ms": 150})
    assert out["latency_ms"] == pytest.approx(1000.0)
    assert out["throughput_tok_s"] == pytest.approx(8.0)
    assert out["total_tok_s"] == pytest.approx(28.0)
    assert out["ttft_p50_ms"] == pytest.approx(150.0)
    assert out["tpot_p99_ms"] == pytest.approx(100.0)
    assert out["e2e_p90_ms"] == pytest.approx(490.0)
    assert out["goodput_req_s"] == pytest.approx(1.0)  # one of the two met the 150 ms TTFT bound
    assert math.isnan(loadgen.summarise([reqs], 4)["goodput_req_s"])
    reqs[0].tokens = 3
    with pytest.raises(RuntimeError, match="generated 3 tokens, expected 4"):
        loadgen.summarise([reqs], 4)


def _sleepy_engine(log):
    def run_batch(prompts, n, on_token, stamp=None):
        log.append(len(prompts))
        for _ in range(n):
            time.sleep(0.002)
            for i in range(len(prompts)):
                on_token(i)
    return run_batch


def test_the_batching_server_honours_arrivals_batches_and_clients():
    prompts = [[3] * 5 for _ in range(6)]
    log = []
    reqs = loadgen.serve_batched(prompts, 4, {"process": "burst"}, None, 4, _sleepy_engine(log))
    assert log == [4, 2] and all(r.tokens == 4 and r.arrival == 0.0 for r in reqs)
    assert reqs[4].first > reqs[0].done  # the second batch starts when the first is done

    log = []
    arrivals = [0.0, 0.05, 0.10, 0.15, 0.20, 0.25]
    reqs = loadgen.serve_batched(prompts, 4, {"process": "poisson", "rate": 20}, arrivals, 8, _sleepy_engine(log))
    assert all(r.first >= r.arrival for r in reqs)  # nothing is served before it arrives
    assert max(log) < 6  # requests that have not arrived are not batched

    log = []
    reqs = loadgen.serve_batched(prompts, 4, {"process": "concurrency", "clients": 2}, None, 8, _sleepy_engine(log))
    assert log == [2, 2, 2]  # a closed loop of two clients never has more than two requests in flight
    assert reqs[2].arrival == pytest.approx(reqs[0].done, abs=0.01)


def test_a_workload_spec_takes_an_arrival_process_and_an_slo():
    raw = {"name": "x", "model": {"preset": "llama-5m"},
           "workload": {"prompt_len": 32, "output_len": 8, "arrival": {"process": "poisson", "rate": 4},
                        "slo": {"ttft_ms": 200}}}
    spec = parse_task_spec(raw)
    w = spec.task_dict()["workload"]
    assert w["arrival"] == {"process": "poisson", "rate": 4.0} and w["slo"] == {"ttft_ms": 200.0}
    burst = parse_task_spec({**raw, "workload": {"prompt_len": 32, "output_len": 8}})
    assert "arrival" not in burst.task_dict()["workload"]  # the ids of tasks from before arrivals stay the same
    with pytest.raises(InputDataError, match=r"workload\.arrival\.rate"):
        parse_task_spec({**raw, "workload": {"prompt_len": 32, "output_len": 8, "arrival": {"process": "poisson"}}})
    with pytest.raises(InputDataError, match=r"workload\.arrival\.process"):
        parse_task_spec({**raw, "workload": {"prompt_len": 32, "output_len": 8, "arrival": "uniform"}})


# ---------------------------------------------------------------------------- methods and environments


def test_engine_methods_are_described_by_what_they_share():
    chosen = registry.resolve(["ctranslate2/*", "vllm/*"])
    assert {m.engine for m in chosen} == {"ctranslate2", "vllm"} and len(chosen) >= 10
    int8 = registry.get("ctranslate2/int8+b8").techniques()
    assert int8["engine_ctranslate2"] == 1.0 and int8["engine_vllm"] == 0.0
    assert int8["weight_bits"] == 8.0 and int8["static_batching"] == 1.0 and int8["max_batch_log2"] == 3.0
    v = registry.get("vllm/float32+seqs16+prefix").techniques()
    assert v["continuous_batching"] == 1.0 and v["prefix_cache"] == 1.0 and v["weight_bits"] == 32.0
    assert "engine_vllm" not in registry.get("sdpa").techniques()  # transformers methods keep their vectors
    assert all(m.engine == "transformers" for m in registry.resolve(None))
    with pytest.raises(InputDataError, match="matches no method"):
        registry.resolve(["nosuch/*"])
    with pytest.raises(InputDataError, match="compute_type: expected one of"):
        registry.Method("x", engine="ctranslate2", settings=(("compute_type", "int3"),))


def test_a_missing_engine_is_an_unsupported_cell_naming_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv(envs.ENV_VAR, str(tmp_path / "no-engines"))
    result = measure(_task(), "ctranslate2/int8+b1", repeats=1, seed=0)
    assert result["status"] == "unsupported"
    assert "metasel engines install ctranslate2" in result["message"]
    assert envs.listing()[0]["installed"] is False
    with pytest.raises(MetaselError, match="unknown engine 'nosuch'"):
        envs.install("nosuch")


def test_a_half_written_environment_does_not_count_as_installed(tmp_path):
    env = envs.env_dir("ctranslate2", tmp_path)
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("")
    assert envs.installed("ctranslate2", tmp_path) is None  # no marker: a killed install
    record = {"requirements": ["ctranslate2==0.0.1"], "version": "0.0.1"}
    (env / envs.MARKER).write_text(json.dumps(record))
    assert envs.installed("ctranslate2", tmp_path) is None  # pins changed since: reinstall
    spec = envs.get_spec("llama_cpp")
    env = envs.env_dir("llama_cpp", tmp_path)
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("")
    record = {"requirements": list(spec.requirements), "version": "0.3.36"}
    (env / envs.MARKER).write_text(json.dumps(record))
    assert envs.installed("llama_cpp", tmp_path) is None  # built with other flags (-march=native): rebuild
    (env / envs.MARKER).write_text(json.dumps({**record, "build_flags": spec.build_flags}))
    assert envs.installed("llama_cpp", tmp_path) is not None
    assert "GGML_NATIVE=OFF" in spec.build_flags and "AMX" in spec.build_flags


# ---------------------------------------------------------------------------- every engine, for real

ENGINE_CELLS = [
    ("ctranslate2", "ctranslate2/float32+b8", "ctranslate2/int8+b1"),
    ("ort_genai", "ort_genai/fp32+b8", "ort_genai/int4+b1"),
    ("openvino", "openvino/fp32+b8", "openvino/int8+b1"),
    ("llama_cpp", "llama_cpp/f32+nb512", "llama_cpp/q4_0+nb512"),
    ("vllm", "vllm/float32+seqs16", None),
]


def _need(engine):
    if envs.installed(engine) is None:
        if os.environ.get("METASEL_REQUIRE_ENGINES") == "1":
            pytest.fail(envs.missing_message(engine))
        pytest.skip(envs.missing_message(engine))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return tmp_path_factory.mktemp("checkpoints")


@pytest.mark.engines
@pytest.mark.slow
@pytest.mark.parametrize("engine,exact,quantised", ENGINE_CELLS, ids=[e[0] for e in ENGINE_CELLS])
def test_engine_serves_a_tiny_model_and_passes_the_token_gate(engine, exact, quantised, checkpoints, monkeypatch):
    _need(engine)
    monkeypatch.setenv("METASEL_CHECKPOINTS_DIR", str(checkpoints))
    task = _task(arrival={"process": "poisson", "rate": 50.0}, slo={"ttft_ms": 10_000})
    r = measure(task, exact, repeats=2, seed=1)
    assert r["status"] == "ok", r["message"]
    assert r["token_agreement"] == 1.0 and "agree with transformers on 16 of 16" in r["message"]
    assert r["throughput_tok_s"] > 0 and r["repeats"] == 2
    for name in ("ttft", "tpot", "e2e"):
        assert 0 <= r[f"{name}_p50_ms"] <= r[f"{name}_p90_ms"] <= r[f"{name}_p99_ms"]
    assert r["e2e_p50_ms"] >= r["ttft_p50_ms"]
    assert r["goodput_req_s"] > 0 and r["convert_s"] >= 0 and r["setup_s"] > 0
    assert any(k.startswith("engine:") for k in r["versions"])
    if quantised:
        q = measure(task, quantised, repeats=1, seed=1)
        assert q["status"] == "ok", q["message"]
        assert 0.0 <= q["token_agreement"] <= 1.0


@pytest.mark.engines
@pytest.mark.slow
def test_an_engine_failure_is_the_observation_and_the_worker_carries_on(checkpoints, monkeypatch):
    """vLLM's CPU attention rejects head_dim 16: the cell records vLLM's reason, and the next cell runs."""
    _need("vllm")
    _need("ctranslate2")
    monkeypatch.setenv("METASEL_CHECKPOINTS_DIR", str(checkpoints))
    bad = _task()
    bad["model"].update(hidden=64, heads=4, kv_heads=2)  # head_dim 16
    r = measure(bad, "vllm/float32+seqs1", repeats=1, seed=1)
    assert r["status"] == "unsupported" and "head_dim=16" in r["message"], r
    from metasel.bench.engines import client

    proc = client.engine_process("ctranslate2", 2)
    proc.proc.kill()  # the worker dies between cells: the next cell starts a new one
    proc.proc.wait()
    assert measure(_task(), "ctranslate2/float32+b1", repeats=1, seed=1)["status"] == "ok"


def test_the_transformers_backend_does_not_pretend_to_serve_an_arrival_process():
    r = measure(_task(arrival={"process": "poisson", "rate": 5.0}), "sdpa", repeats=1, seed=0)
    assert r["status"] == "unsupported" and "arrive together" in r["message"]


def test_show_says_which_engine_wins_where(tmp_path):
    from click.testing import CliRunner

    from metasel.bench.cells import Cell, observation_table
    from metasel.cli import main
    from metasel.data.store import Store

    hw = {"hardware_id": "hw-x", "name": "cpu x", "specs": {"device": "cpu"}, "price_per_hour": None}
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        for t, winner in (("t-a", "ctranslate2/int8+b1"), ("t-b", "sdpa")):
            for m in ("ctranslate2/int8+b1", "sdpa"):
                cell = Cell(t, t, _task(), m, 1, 0)
                result = {"status": "ok", "throughput_tok_s": 200.0 if m == winner else 100.0, "repeats": 1}
                store.append(observation_table(cell, result, hw, {}))
    out = CliRunner().invoke(main, ["--store", str(path), "show"]).output
    block = out.split("best engine per (task, hardware)")[1]
    rows = {line.split()[0]: line.split()[1:] for line in block.splitlines()[3:5]}
    assert rows == {"ctranslate2": ["1", "50.0%"], "transformers": ["1", "50.0%"]}


@pytest.mark.engines
@pytest.mark.slow
def test_tune_s_backend_installs_an_engine_on_first_use_saying_so(tmp_path, monkeypatch, capsys, checkpoints):
    """The collector behind `tune` installs a missing engine the first time a method needs it (pip,
    from the warm cache: about 30 s), then measures; with auto_install off the cell is unsupported."""
    _need("ctranslate2")  # the install below takes its packages from pip's cache, as the first one left them
    from metasel.bench.backend import CollectorBackend
    from metasel.bench.executors.local import LocalWorker
    from metasel.data.store import Store

    monkeypatch.setenv(envs.ENV_VAR, str(tmp_path / "engines"))
    monkeypatch.setenv("METASEL_CHECKPOINTS_DIR", str(checkpoints))
    spec = parse_task_spec({"model": dict(TINY), "workload": {"prompt_len": 16, "output_len": 4, "batch_size": 2}})
    worker = LocalWorker(threads=1, device="cpu")
    worker.start()
    try:
        with Store(tmp_path / "s.sqlite") as store:
            off = CollectorBackend(worker, store, {spec.task_id: spec}, repeats=1, auto_install=False)
            hw = off.hardware["hardware_id"]
            assert off.measure(spec.task_id, "ctranslate2/float32+b1", hw).status == "unsupported"
            on = CollectorBackend(worker, store, {spec.task_id: spec}, repeats=1)
            got = on.measure(spec.task_id, "ctranslate2/int8+b1", hw)
            assert got.status == "ok", got.message
    finally:
        worker.stop()
    assert "needs engine 'ctranslate2', which is not installed; installing it now" in capsys.readouterr().err
    assert envs.installed("ctranslate2", tmp_path / "engines") is not None
