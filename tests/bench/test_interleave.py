"""Interleaved repeats: rounds of every method of a task, shuffled per round, kept as they arrive."""

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from metasel import InputDataError, Store
from metasel.bench.cells import Cell
from metasel.bench.ledger import Ledger, combine, interleave
from metasel.cli import main
from metasel.spec import parse_grid_spec
from tests.bench.test_bench import TINY_GRID

GRID = TINY_GRID + "interleave: true\n"  # 2 tasks x 3 methods, 2 repeats

HW = {"hardware_id": "hw-test", "name": "test machine", "specs": {}}


def _cells(tasks=("t0", "t1"), methods=("a", "b", "c", "d")):
    return [Cell(t, t, {}, m, 3, 7) for t in tasks for m in methods]


def _rounds(store_path):
    con = sqlite3.connect(store_path)
    try:
        return con.execute("SELECT task_id, method, round, consumed FROM rounds ORDER BY rowid").fetchall()
    except sqlite3.OperationalError:  # no round kept yet
        return []
    finally:
        con.close()


def test_interleave_runs_every_method_once_per_round_task_by_task_in_orders_shuffled_per_round():
    runs = interleave(_cells(), rounds=3, seed=0)
    assert len(runs) == 2 * 3 * 4
    assert [r.task_id for r in runs] == ["t0"] * 12 + ["t1"] * 12  # task-major: one task's model at a time
    for i in range(6):
        block = runs[4 * i:4 * i + 4]
        assert sorted(r.method for r in block) == ["a", "b", "c", "d"]  # every method once per round
        assert {r.round for r in block} == {i % 3} and all(r.rounds == 3 and r.repeats == 1 for r in block)
    orders = {tuple(r.method for r in runs[4 * i:4 * i + 4]) for i in range(6)}
    assert len(orders) > 1  # shuffled per round
    assert interleave(_cells(), rounds=3, seed=0) == runs  # deterministic
    assert interleave(_cells(), rounds=3, seed=1) != runs


def test_a_cell_made_from_rounds_takes_medians_and_the_spread_over_the_rounds():
    runs = {0: {"status": "ok", "throughput_tok_s": 100.0, "ttft_ms": 5.0, "seed": 7, "versions": {"torch": "x"},
                "machine": {"other_cores": 0.1, "cpus": 2, "seconds": 1.0}},
            1: {"status": "ok", "throughput_tok_s": 120.0, "ttft_ms": 3.0, "seed": 7,
                "machine": {"other_cores": 0.3, "cpus": 2, "seconds": 2.0}},
            2: {"status": "ok", "throughput_tok_s": 110.0, "ttft_ms": math.nan, "seed": 7}}
    out = combine(runs, threads=1)
    assert out["status"] == "ok" and out["repeats"] == 3
    assert out["throughput_tok_s"] == 110.0
    assert math.isnan(out["ttft_ms"])  # a round without it: no median of the others
    pstdev = math.sqrt(((100 - 110) ** 2 + (120 - 110) ** 2 + 0) / 3)
    assert out["spread"] == pytest.approx(pstdev / 110)
    assert out["machine"]["other_cores"] == 0.3 and out["machine"]["seconds"] == 3.0  # the busiest round
    assert "flags" not in out and out["message"] == "3 interleaved rounds"
    runs[1]["throughput_tok_s"] = 200.0  # rounds that disagree: noisy
    out = combine(runs, threads=1)
    assert out["flags"] == "noisy" and "repeats disagree" in out["message"]
    runs[1]["throughput_tok_s"], runs[1]["machine"]["other_cores"] = 120.0, 1.9  # a busy round: noisy
    assert combine(runs, threads=1)["flags"] == "noisy"


def test_the_ledger_keeps_rounds_resumes_with_them_and_fails_a_cell_at_its_first_failed_round(tmp_path):
    path = tmp_path / "s.sqlite"
    runs = interleave([Cell("t0", "t0", {"model": {}}, m, 2, 7) for m in ("sdpa", "baseline")], rounds=2, seed=0)
    first = {(r.method, r.round): r for r in runs}
    ok = {"status": "ok", "throughput_tok_s": 50.0, "seed": 7}
    with Store(path) as store:
        ledger = Ledger(store, threads=1)
        assert ledger.record(first["sdpa", 0], ok, HW, {}) is None  # kept, no observation yet
        failed = ledger.record(first["baseline", 0], {"status": "error", "message": "boom", "seed": 7}, HW, {})
        assert failed["status"] == "error" and failed["message"] == "round 1 of 2: boom"
        assert not ledger.wanted(first["baseline", 1], HW)  # a failed cell's later rounds are not run
        assert store.count() == 1
    # a collection killed here resumes with the round it kept
    with Store(path) as store:
        ledger = Ledger(store, threads=1)
        assert not ledger.wanted(first["sdpa", 0], HW) and ledger.wanted(first["sdpa", 1], HW)
        obs = ledger.record(first["sdpa", 1], {**ok, "throughput_tok_s": 70.0}, HW, {})
        assert obs["throughput_tok_s"] == 60.0 and obs["repeats"] == 2
        table = store.load().observations.set_index("method")
        assert store.open_rounds("hw-test") == {}  # consumed with the observation, in its transaction
    assert table.loc["sdpa", "throughput_tok_s"] == 60.0 and table.loc["sdpa", "repeats"] == 2
    assert table.loc["baseline", "status"] == "error"
    assert [r[3] for r in _rounds(path)] == [1, 1, 1]  # the rounds stay, marked consumed
    with Store(path) as store:  # --force measures again; the consumed rounds are not reused
        ledger = Ledger(store, force=True, threads=1)
        assert ledger.wanted(first["sdpa", 0], HW) and ledger.wanted(first["baseline", 0], HW)


def test_collect_interleaved_on_a_small_grid_measures_rounds_of_every_method(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    store = tmp_path / "s.sqlite"
    r = CliRunner().invoke(main, ["--store", str(store), "collect", "--grid", str(grid), "--threads", "1",
                                  "--no-landmarks"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert "collected 6 cells (6 ok" in r.output
    assert r.output.count("(round 1/2)") == 6 and r.output.count("(round 2/2)") == 6
    rounds = _rounds(store)
    assert len(rounds) == 12 and all(c == 1 for *_, c in rounds)
    for i in range(4):  # the first task's round 1, then its round 2, ...: every method once in each
        block = rounds[3 * i:3 * i + 3]
        assert len({t for t, *_ in block}) == 1 and {r for _, _, r, _ in block} == {i % 2}
        assert sorted(m for _, m, _, _ in block) == ["baseline", "sdpa", "static_batching"]
    with Store(store) as s:
        obs = s.load().observations
    assert len(obs) == 6 and set(obs["status"]) == {"ok"} and (obs["repeats"] == 2).all()
    assert obs["message"].str.contains("2 interleaved rounds").all()
    r = CliRunner().invoke(main, ["--store", str(store), "collect", "--grid", str(grid), "--threads", "1", "--quiet",
                                  "--no-landmarks"])
    assert "collected 0 cells" in r.output and "skipped 6" in r.output


def test_a_collection_killed_between_rounds_resumes_without_measuring_a_kept_round_again(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    store = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "metasel", "--store", str(store), "collect", "--grid", str(grid), "--threads", "1",
           "--quiet", "--no-landmarks"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and len(_rounds(store)) < 2:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    kept = _rounds(store)
    assert 2 <= len(kept) < 12
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rounds = _rounds(store)
    assert rounds[:len(kept)] == [(t, m, n, 1) for t, m, n, _ in kept]
    assert len(rounds) == 12  # no kept round was measured again
    assert len({(t, m, n) for t, m, n, _ in rounds}) == 12
    with Store(store) as s:
        obs = s.load().observations
    assert len(obs) == 6 and (obs["repeats"] == 2).all()


def test_a_grid_says_interleave_true_or_false():
    with pytest.raises(InputDataError, match=r"interleave.*expected true or false, got 'yes please'"):
        parse_grid_spec({"axes": {"workload.batch_size": [1]}, "interleave": "yes please"}, source="g.yaml")
    grid = {"base": {"model": {"preset": "llama-5m"}, "workload": {"prompt_len": 8, "output_len": 4}},
            "axes": {"workload.batch_size": [1, 2]}}
    assert parse_grid_spec(grid).interleave is False and parse_grid_spec({**grid, "interleave": True}).interleave
