"""``metasel collect --endpoint``: benchmark a running OpenAI-compatible server.

The real test starts vLLM's server (from its own environment, ``metasel engines install
vllm``) on 127.0.0.1 with a tiny random-weight checkpoint and measures it through the CLI.
"""

import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest
from click.testing import CliRunner

from metasel.bench.endpoint import endpoint_method, parse_endpoint
from metasel.bench.engines import envs
from metasel.cli import main
from metasel.errors import InputDataError

TASK = """
name: endpoint-tiny
model: {arch: llama, layers: 2, hidden: 128, heads: 2, kv_heads: 1, intermediate: 256, vocab: 512}
workload:
  prompt_len: 24
  output_len: 8
  batch_size: 4
  num_requests: 6
  arrival: {process: poisson, rate: 40}
  slo: {ttft_ms: 10000}
"""


def _task_file(tmp_path):
    p = tmp_path / "task.yaml"
    p.write_text(TASK)
    return p


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_endpoint_url_is_checked():
    assert parse_endpoint("http://127.0.0.1:8000") == ("http", "127.0.0.1", 8000, "/v1")
    assert parse_endpoint("https://node7/serve/v1/") == ("https", "node7", 443, "/serve/v1")
    for bad in ("127.0.0.1:8000", "ftp://x", "http://h:notaport"):
        with pytest.raises(InputDataError, match="--endpoint"):
            parse_endpoint(bad)


def test_endpoint_method_takes_the_engines_vector():
    m = endpoint_method("prod-vllm", "http://h:1", engine="vllm", settings={"max_num_seqs": 64, "dtype": "bfloat16"})
    assert m["techniques"]["engine_vllm"] == 1.0 and m["techniques"]["max_batch_log2"] == 6.0
    assert endpoint_method("mine", "http://h:1")["techniques"] == {}


def test_an_endpoint_that_does_not_answer_is_one_clear_line(tmp_path):
    store = tmp_path / "s.sqlite"
    r = CliRunner().invoke(main, ["--store", str(store), "collect", "--endpoint", f"http://127.0.0.1:{_free_port()}",
                                  "--task", str(_task_file(tmp_path)), "--method-name", "x"])
    assert r.exit_code == 1 and "cannot reach the server" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["--store", str(store), "collect", "--endpoint", "http://127.0.0.1:1"])
    assert r.exit_code == 2 and "--task" in r.output


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    if envs.installed("vllm") is None:
        if os.environ.get("METASEL_REQUIRE_ENGINES") == "1":
            pytest.fail(envs.missing_message("vllm"))
        pytest.skip(envs.missing_message("vllm"))
    from metasel.bench.engines.checkpoint import ensure_checkpoint
    from metasel.spec import parse_task_spec
    from metasel.spec import read_yaml

    root = tmp_path_factory.mktemp("endpoint")
    (root / "task.yaml").write_text(TASK)
    spec = parse_task_spec(read_yaml(str(root / "task.yaml")))
    ckpt, _ = ensure_checkpoint(spec.task_dict()["model"], seed=0, needed_positions=64, root=root / "ckpt")
    port = _free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "0-1", "OMP_NUM_THREADS": "2"}
    log = open(root / "vllm.log", "w")
    proc = subprocess.Popen([str(envs.python_of("vllm")), "-m", "vllm.entrypoints.openai.api_server", "--model",
                             str(ckpt), "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
                             "--dtype", "float32", "--max-num-seqs", "4", "--max-model-len", "128",
                             "--disable-log-stats"], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.time()
        while True:
            assert proc.poll() is None, (root / "vllm.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.time() - t0 < 600, "the vLLM server did not start within 600 s"
            time.sleep(1.0)
        yield url, root / "task.yaml"
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


@pytest.mark.engines
@pytest.mark.slow
def test_collect_endpoint_measures_a_local_vllm_server_and_stores_percentiles(vllm_server, tmp_path):
    url, task = vllm_server
    store = tmp_path / "s.sqlite"
    r = CliRunner().invoke(main, ["--store", str(store), "collect", "--endpoint", url, "--task", str(task),
                                  "--method-name", "my-vllm", "--set", "engine=vllm", "--set", "max_num_seqs=4",
                                  "--repeats", "2"])
    assert r.exit_code == 0, r.output
    assert "my-vllm: ok" in r.output and "model tiny" in r.output
    from metasel.data.store import Store

    with Store(store) as s:
        tbl = s.load()
    row = tbl.observations.iloc[0]
    assert row["status"] == "ok" and row["method"] == "my-vllm" and row["repeats"] == 2
    for name in ("ttft", "tpot", "e2e"):
        assert 0 < row[f"{name}_p50_ms"] <= row[f"{name}_p90_ms"] <= row[f"{name}_p99_ms"]
    assert row["throughput_tok_s"] > 0 and row["goodput_req_s"] > 0
    assert json.loads(row["versions"])["served_model"] == "tiny"
    techniques = json.loads(tbl.methods.set_index("method").loc["my-vllm", "techniques"])
    assert techniques["engine_vllm"] == 1.0 and techniques["max_batch_log2"] == 2.0
    spec = json.loads(tbl.tasks.iloc[0]["spec"])
    assert spec["workload"]["arrival"] == {"process": "poisson", "rate": 40.0}
    # a model the server does not serve is refused before anything is sent
    bad = CliRunner().invoke(main, ["--store", str(store), "collect", "--endpoint", url, "--task", str(task),
                                    "--method-name", "other", "--served-model", "nope"])
    assert bad.exit_code == 1 and "serves ['tiny']" in bad.output


def test_constant_arrivals_are_evenly_spaced_and_named():
    from metasel.bench.engines.client import arrival_times
    from metasel.spec import parse_grid_spec, parse_task_spec

    assert arrival_times({"arrival": {"process": "constant", "rate": 4.0}}, 3, seed=9) == [0.0, 0.25, 0.5]
    spec = parse_task_spec({"model": {"arch": "llama", "layers": 1, "hidden": 64, "heads": 1, "kv_heads": 1,
                                      "intermediate": 128, "vocab": 256},
                            "workload": {"prompt_len": 8, "output_len": 4, "num_requests": 4,
                                         "arrival": {"process": "constant", "rate": 2}}})
    assert spec.task_dict()["workload"]["arrival"] == {"process": "constant", "rate": 2.0}
    grid = parse_grid_spec({"base": spec.task_dict(), "axes": {"workload.output_len": [4]}})
    assert grid.tasks[0].name.endswith("-constant2")
