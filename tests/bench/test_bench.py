"""The collector: real generation with tiny random-weight models."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from metasel import InputDataError, Store, StoreError
from metasel.bench import methods as registry
from metasel.cli import main

TINY_GRID = """
name: tiny-test
base:
  workload: {prompt_len: 12, output_len: 4, batch_size: 2}
axes:
  model:
    - {arch: llama, layers: 1, hidden: 32, heads: 2, kv_heads: 1, intermediate: 64, vocab: 256}
    - {arch: gpt2, layers: 1, hidden: 32, heads: 2, kv_heads: 2, intermediate: 64, vocab: 256}
methods: [baseline, sdpa, static_batching]
repeats: 2
"""


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_registry_and_technique_vectors():
    m = registry.get("int8_dynamic+static_batching")
    v = m.techniques()
    assert v["int8_dynamic"] == 1 and v["static_batching"] == 1 and v["weight_bits"] == 8 and v["sdpa"] == 1
    assert registry.get("baseline").techniques()["sdpa"] == 0
    assert len(registry.resolve(None)) >= 10 and all(not m.compile for m in registry.resolve(None))
    with pytest.raises(InputDataError, match="unknown method 'warp'"):
        registry.get("warp")
    with pytest.raises(InputDataError, match="already registered"):
        registry.register(registry.Method("sdpa"))
    with pytest.raises(InputDataError, match="batching"):
        registry.Method("x", batching="dynamic")


def test_prompts_share_prefix_and_follow_lengths():
    from metasel.bench.serve import make_prompts

    prompts, k = make_prompts({"prompt_len": {"dist": "uniform", "min": 20, "max": 40}, "num_requests": 6,
                               "shared_prefix": 0.5}, 1000, seed=3)
    assert len(prompts) == 6 and k == 10
    assert all(p[:k] == prompts[0][:k] for p in prompts)
    assert all(20 <= len(p) <= 40 for p in prompts)
    again, _ = make_prompts({"prompt_len": {"dist": "uniform", "min": 20, "max": 40}, "num_requests": 6,
                             "shared_prefix": 0.5}, 1000, seed=3)
    assert again == prompts


def test_hardware_probe_profiles():
    from metasel.bench.hardware import probe

    one, two = probe(threads=1), probe(threads=2)
    assert one["hardware_id"] != two["hardware_id"]
    assert probe(threads=1) == one
    assert one["specs"]["threads"] == 1 and one["specs"]["cores"] >= 1 and one["specs"]["device"] == "cpu"


TINY_TASK = {"model": {"arch": "llama", "layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1, "intermediate": 64,
                       "vocab": 256, "dtype": "float32"},
             "workload": {"prompt_len": 10, "output_len": 5, "batch_size": 2, "num_requests": 3, "shared_prefix": 0.5}}


@pytest.mark.parametrize("method", ["baseline", "static_batching", "prefix_cache", "int8_dynamic", "bf16",
                                    "continuous_batching", "prompt_lookup"])
def test_measure_gives_consistent_metrics(method):
    from metasel.bench.serve import measure

    r = measure(TINY_TASK, method, repeats=3, seed=1)
    assert r["status"] == "ok", r
    # 3 requests x 5 tokens in latency_ms (the median repeat of both, as the repeats are odd)
    assert r["throughput_tok_s"] * r["latency_ms"] / 1000 == pytest.approx(15, rel=1e-6)
    assert r["total_tok_s"] > r["throughput_tok_s"]
    assert 0 < r["ttft_ms"] <= r["latency_ms"] and r["tpot_ms"] > 0 and r["setup_s"] > 0
    assert r["repeats"] == 3 and r["spread"] >= 0 and r["peak_mem_mb"] >= 0


def test_failures_are_observations():
    from metasel.bench.serve import measure

    r = measure(TINY_TASK, "assisted+static_batching", repeats=1, seed=1)
    assert r["status"] == "unsupported" and "batch size 1" in r["message"]
    opt = {**TINY_TASK, "model": {**TINY_TASK["model"], "arch": "opt"}}
    r = measure(opt, "sdpa", repeats=1, seed=1)
    assert r["status"] == "unsupported" and "opt" in r["message"]
    single = {**TINY_TASK, "workload": {**TINY_TASK["workload"], "batch_size": 1}}
    assert measure(single, "assisted", repeats=1, seed=1)["status"] == "ok"


def test_collect_cli_small_grid(tmp_path):
    grid = write(tmp_path, "grid.yaml", TINY_GRID)
    store = tmp_path / "s.sqlite"
    t0 = time.monotonic()
    r = CliRunner().invoke(main, ["--store", str(store), "collect", "--grid", str(grid), "--threads", "1"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert time.monotonic() - t0 < 60
    assert "collected 6 cells (6 ok" in r.output
    with Store(store) as s:
        t = s.load()
    obs = t.observations
    assert len(obs) == 6 and set(obs["status"]) == {"ok"}
    assert (obs["throughput_tok_s"] > 0).all() and (obs["repeats"] == 2).all()
    assert obs.groupby("task_id")["seed"].nunique().eq(1).all()  # one seed per task: same weights for every method
    hw = t.hardware.iloc[0]
    assert '"threads":1' in hw["specs"] and obs["versions"].str.contains("torch").all()
    assert set(t.methods["method"]) == {"baseline", "sdpa", "static_batching"}
    # then the landmarks of both tasks, stored as their features
    assert "landmarks: 2 task(s) measured" in r.output
    import json

    for feats in t.tasks["features"]:
        lm = json.loads(feats)
        assert lm["lookup_tokens_per_pass"] >= 1.0 and lm["draft_tokens_per_pass"] >= 1.0
    # resumable: a second run measures nothing
    r = CliRunner().invoke(main, ["--store", str(store), "collect", "--grid", str(grid), "--threads", "1", "--quiet"])
    assert "collected 0 cells" in r.output and "skipped 6" in r.output
    assert "landmarks: 0 task(s) measured" in r.output


def test_timeout_is_recorded_and_run_continues(tmp_path):
    grid = write(tmp_path, "grid.yaml", TINY_GRID.replace("methods: [baseline, sdpa, static_batching]",
                                                          "methods: [sdpa]").replace("output_len: 4", "output_len: 3"))
    slow = write(tmp_path, "slow.yaml", """
model: {preset: llama-125m}
workload: {prompt_len: 512, output_len: 256, batch_size: 1, num_requests: 8}
""")
    store = tmp_path / "s.sqlite"
    # no landmarks: they would generate 8 x 256 tokens of the 125M model (and a draft) in this process
    r = CliRunner().invoke(main, ["--store", str(store), "collect", "--grid", str(slow), "--methods", "baseline",
                                  "--timeout", "3", "--threads", "1", "--quiet", "--no-landmarks"])
    assert r.exit_code == 0, r.output
    assert "timeout 1" in r.output
    r = CliRunner().invoke(main, ["--store", str(store), "collect", "--grid", str(grid), "--threads", "1", "--quiet",
                                  "--no-landmarks"])
    assert "2 ok" in r.output
    with Store(store) as s:
        statuses = s.load().observations["status"].tolist()
    assert sorted(statuses) == ["ok", "ok", "timeout"]


def test_sigkill_midway_then_resume(tmp_path):
    grid = write(tmp_path, "grid.yaml", TINY_GRID.replace("repeats: 2", "repeats: 1"))
    store = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "metasel", "--store", str(store), "collect", "--grid", str(grid), "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    count = 0
    try:
        while time.monotonic() < deadline:
            try:
                with Store(store, readonly=True) as s:
                    count = s.count()
            except StoreError:  # not there yet, or being created this moment
                count = 0
            if count >= 2:
                break
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert 2 <= count < 6, count
    with Store(store) as s:
        partial = s.load()  # every stored row is whole: loading re-validates each one
    kept = set(partial.observations["obs_id"])
    assert len(kept) >= 2
    r = subprocess.run(cmd + ["--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with Store(store) as s:
        final = s.load().observations
    assert len(final) == 6
    assert not final[["task_id", "method", "hardware_id"]].duplicated().any()
    assert kept <= set(final["obs_id"])


@pytest.mark.ray
# Ray starts its processes by fork + exec; when an earlier test has imported jax in this
# process, jax warns at the fork (harmless: the child execs at once) from inside an at-fork
# hook, which pytest would report as an error depending on test order.
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_collect_on_local_ray_cluster(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    grid = write(tmp_path, "grid.yaml", TINY_GRID.replace("methods: [baseline, sdpa, static_batching]",
                                                          "methods: [sdpa, static_batching]"))
    store = tmp_path / "s.sqlite"
    import threading

    seen, stop = {}, threading.Event()

    def watch():  # every listening socket of every Ray process, in whatever network namespace it is
        while not stop.is_set():
            for pid, name, addrs in _ray_listening():
                seen.setdefault(name, set()).update(addrs)
            time.sleep(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        r = CliRunner().invoke(main, ["--store", str(store), "collect", "--grid", str(grid), "--ray", "local", "--quiet"])
    finally:
        stop.set()
        watcher.join()
    assert r.exit_code == 0, (r.output, r.exception)
    with Store(store) as s:
        t = s.load()
    assert len(t) == 4 and set(t.observations["status"]) == {"ok"}
    assert t.hardware["hardware_id"].nunique() == 1
    assert {"gcs_server", "raylet"} <= set(seen) and seen["gcs_server"], seen  # it was watched while it listened
    outside = {name: sorted(a for a in addrs if not a.startswith("127.") and a != "::1") for name, addrs in seen.items()}
    assert not any(outside.values()), f"Ray listened beyond loopback: {outside}"


def _hex_ip(text: str) -> str:
    import ipaddress

    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    ip = ipaddress.IPv6Address(words)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ip)


def _ray_listening():
    """(pid, name, listening addresses) of Ray's processes, read from each one's own /proc/PID/net."""
    import psutil

    out = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        name = proc.info["name"] or ""
        cmd = " ".join(proc.info["cmdline"] or [])
        if not (name in ("gcs_server", "raylet") or name.startswith("ray::") or "ray/dashboard" in cmd
                or "runtime_env/agent" in cmd):
            continue
        addrs = set()
        for table in ("tcp", "tcp6", "udp", "udp6"):
            try:
                lines = open(f"/proc/{proc.pid}/net/{table}").read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" or table.startswith("udp"):  # 0A: LISTEN
                    addrs.add(_hex_ip(local.split(":")[0]))
        out.append((proc.pid, name if not name.startswith("ray::") else name.split(":")[-1] or name, addrs))
    return out


def test_collector_backend_conformance(tmp_path):
    """The real collector as the loop's backend: a measuring process, a tiny random-weight model,
    each observation stored before the loop hears of it; a method that cannot run is a failure."""
    from metasel.bench.backend import CollectorBackend
    from metasel.bench.executors.local import LocalWorker
    from metasel.spec import parse_task_spec
    from metasel.testing.conformance import check_backend

    spec = parse_task_spec({"model": {"arch": "llama", "layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1,
                                      "intermediate": 64, "vocab": 256},
                            "workload": {"prompt_len": 12, "output_len": 4, "batch_size": 2}})
    worker = LocalWorker(threads=1, device="cpu")
    worker.start()
    try:
        with Store(tmp_path / "s.sqlite") as store:
            backend = CollectorBackend(worker, store, {spec.task_id: spec}, repeats=1, timeout_s=120)
            hw = backend.hardware["hardware_id"]
            got = check_backend(backend, spec.task_id, hw, ok_method="sdpa", metric="throughput_tok_s",
                                failing_method="assisted+static_batching")  # speculative decoding runs at batch size 1 only
            stored = store.load()
            assert len(stored) == 2 and set(stored.observations["method"]) == {"sdpa", "assisted+static_batching"}
            ok = stored.observations[stored.observations["method"] == "sdpa"].iloc[0]
            assert ok["throughput_tok_s"] == got.value("throughput_tok_s")
            with pytest.raises(InputDataError, match="no spec for task"):
                backend.measure("nope", "sdpa", hw)
            with pytest.raises(InputDataError, match="asked to measure on hardware"):
                backend.measure(spec.task_id, "sdpa", "hw-elsewhere")
    finally:
        worker.stop()


def test_a_cell_measured_beside_a_cpu_hog_is_flagged_noisy_and_measured_again_on_request(tmp_path):
    import json

    grid = write(tmp_path, "grid.yaml", """
model: {arch: llama, layers: 1, hidden: 32, heads: 2, kv_heads: 1, intermediate: 64, vocab: 256}
workload: {prompt_len: 12, output_len: 4, batch_size: 2}
""")
    store = tmp_path / "s.sqlite"
    args = ["--store", str(store), "collect", "--grid", str(grid), "--methods", "sdpa", "--repeats", "2", "--threads", "2",
            "--no-landmarks"]
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        r = CliRunner().invoke(main, args)
    finally:
        hog.kill()
        hog.wait()
    assert r.exit_code == 0, r.output
    assert "collect: warning: this machine is busy: other processes used" in r.output
    assert "1 of them noisy" in r.output
    with Store(store) as s:
        obs = s.load().observations
    assert obs["flags"].tolist() == ["noisy"] and obs["message"].iloc[0].startswith("noisy: other processes used")
    assert json.loads(obs["machine"].iloc[0])["other_cores"] > 0.5
    # on a quiet machine: no warning; a plain re-run skips the noisy cell, --remeasure-noisy measures it again
    r = CliRunner().invoke(main, args)
    assert "collected 0 cells" in r.output and "skipped 1" in r.output
    from metasel.bench.machine import busy_reason, sample

    if busy_reason(sample(1.0), 2):  # something outside this test keeps the machine busy: no quiet run to compare
        pytest.skip("the machine is busy without the test's hog; the quiet half cannot be checked")
    for _ in range(3):
        r = CliRunner().invoke(main, [*args, "--remeasure-noisy"])
        assert r.exit_code == 0, r.output
        assert "busy" not in r.output, r.output
        if "noisy" not in r.output.split("collected")[1]:
            break
        # two repeats of a 4-token cell can disagree on a quiet machine: that is the cell's own spread, flagged as
        # such (not as other processes' work), and --remeasure-noisy measures it again
        assert "its repeats disagree" in r.output, r.output
    else:
        pytest.fail(f"three quiet re-measurements were all noisy: {r.output}")
    with Store(store) as s:
        t = s.load()
    flags = t.observations.sort_values("timestamp")["flags"].tolist()
    assert flags[0] == "noisy" and flags[-1] == "" and flags.count("") == 1
    clean = t.observations[t.observations["flags"] == ""].iloc[0]
    assert json.loads(clean["machine"])["other_cores"] < 0.25
    long = t.long("throughput_tok_s")
    assert long["value"].tolist() == [clean["throughput_tok_s"]] and long["weight"].tolist() == [1.0]
    r = CliRunner().invoke(main, [*args, "--remeasure-noisy"])
    assert "collected 0 cells" in r.output


def test_ctrl_c_during_collect_is_one_line_exit_130_and_the_rerun_resumes(tmp_path):
    # 10 cells, so that many are left when the first one is done. The first finished cell is seen in the
    # collector's own per-cell line: polling the store with a read-only count saw no row during a whole
    # collect in the full suite on this machine (twice), and the Ctrl-C came after the collector's loop
    grid = write(tmp_path, "grid.yaml", TINY_GRID.replace("repeats: 2", "repeats: 1").replace(
        "methods: [baseline, sdpa, static_batching]", "methods: [baseline, sdpa, static_batching, bf16, int8_dynamic]"))
    store = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "metasel", "--store", str(store), "collect", "--grid", str(grid), "--threads", "1",
           "--no-landmarks"]
    # a suite started as a background job (`make test &`) runs with SIGINT ignored, and a child inherits that:
    # Python then installs no KeyboardInterrupt handler and the collector would finish all cells. A terminal's
    # collector has the default disposition: catch SIGINT here while starting it (exec resets a caught signal to
    # the default; a preexec_fn would fork with this process's threads, whose at-fork hooks raise)
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    # the collector writes a line per finished cell (after storing it) to stderr: the first one is the signal,
    # read by a thread so that a collector that hangs cannot hang the test
    import queue
    import re
    import threading

    lines: queue.Queue = queue.Queue()
    seen: list[str] = []

    def read():
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    cell_line = re.compile(r" \| .+: (ok|error|oom|timeout|unsupported)\b")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            seen.append(line)
            if cell_line.search(line):
                break
        assert proc.poll() is None, f"collect finished before the test could interrupt it: {''.join(seen)[-500:]}"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground process group
        out = proc.stdout.read()
        proc.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            break
        if line is not None:
            seen.append(line)
    err = "".join(seen)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "metasel: interrupted", err
    r = subprocess.run([*cmd, "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with Store(store) as s:
        final = s.load().observations
    assert len(final) == 10 and not final[["task_id", "method", "hardware_id"]].duplicated().any()


@pytest.mark.reliability
def test_a_chain_of_kill_9s_at_random_points_loses_duplicates_and_half_writes_nothing(tmp_path):
    import random

    grid = write(tmp_path, "grid.yaml", TINY_GRID.replace("repeats: 2", "repeats: 1"))
    store = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "metasel", "--store", str(store), "collect", "--grid", str(grid), "--threads", "1",
           "--quiet", "--no-landmarks"]
    rng = random.Random(18)
    kept: set[str] = set()

    def stored() -> int:
        try:
            with Store(store, readonly=True) as s:
                return s.count()
        except StoreError:  # not there yet, or being created this moment
            return 0

    for _ in range(4):
        before = stored()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None and stored() <= before:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.0))  # somewhere in the next cell: mid-measurement or mid-append
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with Store(store, readonly=True) as s:
            obs = s.load().observations  # every stored row is whole: loading re-validates each one
        assert not obs[["task_id", "method", "hardware_id"]].duplicated().any()
        assert kept <= set(obs["obs_id"])  # nothing finished was lost
        kept = set(obs["obs_id"])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with Store(store) as s:
        final = s.load().observations
    assert len(final) == 6 and not final[["task_id", "method", "hardware_id"]].duplicated().any()
    assert kept <= set(final["obs_id"])


def test_work_of_the_measuring_tree_never_reads_as_other_processes_even_when_its_processes_die_unreaped():
    """An engine server killed with its process group leaves its workers to be reaped by init: their
    CPU time leaves the tree's counters. It must not be counted as another process's work; a real
    competitor outside the tree must."""
    from metasel.bench.machine import sample, snapshot, state_between

    if sample(1.0)["other_cores"] > 0.2:
        pytest.skip("the machine is busy from outside the test; its quiet half cannot be checked")
    burner = "import os, time\nif os.fork() == 0:\n    t = time.process_time()\n    while time.process_time() - t < 1.5: pass\n" \
             "    os._exit(0)\ntime.sleep(30)\n"
    before = snapshot()
    server = subprocess.Popen([sys.executable, "-c", burner], start_new_session=True)  # a child whose child works
    time.sleep(1.7)
    os.killpg(server.pid, signal.SIGKILL)  # the parent dies; the worker has finished and is reaped by init
    server.wait()
    time.sleep(0.3)
    state = state_between(before, snapshot())
    assert state["other_cores"] < 0.3, state
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        assert sample(1.0)["other_cores"] > 0.7  # seen from this process alone, its child hog is another process
    finally:
        hog.kill()
        hog.wait()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2, reason="needs Linux and two CPUs")
def test_a_collector_pinned_to_one_cpu_counts_other_processes_in_cores_of_the_whole_machine():
    """``taskset -c 0 metasel collect --threads 1`` beside a job on the other CPU: the job is one
    core of another process, which a 1-thread measurement leaves free (not noisy); two such jobs
    are more than it leaves (noisy). The scale is the machine's, not the pinned process's one CPU."""
    from metasel.bench.machine import busy_reason, sample

    if sample(1.0)["other_cores"] > 0.2:
        pytest.skip("the machine is busy from outside the test")
    code = ("import os, sys, time\nos.sched_setaffinity(0, {int(sys.argv[1])})\n"
            "t = time.monotonic()\nwhile time.monotonic() - t < 30: pass\n")
    script = "import os\nos.sched_setaffinity(0, {0})\n"  # the measuring process, on CPU 0 only
    script += ("from metasel.bench.machine import snapshot, state_between\nimport json, time\n"
               "b = snapshot(); time.sleep(1.5); print(json.dumps(state_between(b, snapshot())))\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def measure():
        return json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                         env=env).stdout)

    hogs = []
    try:
        hogs.append(subprocess.Popen([sys.executable, "-c", code, "1"], start_new_session=True))
        time.sleep(0.5)
        one = measure()
        hogs.append(subprocess.Popen([sys.executable, "-c", code, "0"], start_new_session=True))
        time.sleep(0.5)
        two = measure()
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert 0.8 < one["other_cores"] < 1.3, one
    assert one["cpus"] == os.cpu_count()
    assert busy_reason(one, 1) is None, one
    assert busy_reason(two, 1) is not None and 1.7 < two["other_cores"] < 2.3, two
