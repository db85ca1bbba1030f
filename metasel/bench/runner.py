"""Run cells and write each observation to the store as it arrives.

``collect`` is the whole job behind ``metasel collect``: plan the cells of a grid,
skip those already measured on this hardware, measure the rest locally (one worker
process per hardware profile) or on a Ray cluster, and append every observation in
its own transaction, so a killed run loses no finished observation and stores no
half one.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from metasel._schema import STATUSES
from metasel.errors import MetaselError


@dataclass(frozen=True)
class Cell:
    """One (task, method) measurement to make."""

    task_id: str
    task_name: str
    task: dict
    method: str
    repeats: int
    seed: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.task_id, self.method)


def cell_seed(seed: int, task_id: str) -> int:
    """The seed of a task's weights and prompts, derived from the run's seed. Every method
    of a task gets the same one, so methods are compared on the same model and prompts."""
    h = hashlib.sha256(f"{seed}|{task_id}".encode()).hexdigest()
    return int(h[:8], 16)


def plan(tasks, methods, *, repeats: int, seed: int = 0) -> list[Cell]:
    """The cells of tasks × methods, task-major (so one task's model sizes stay together)."""
    return [Cell(t.task_id, t.name, t.task_dict(), m.name, repeats, cell_seed(seed, t.task_id))
            for t in tasks for m in methods]


@dataclass
class Summary:
    """What a collection did."""

    done: int = 0
    skipped: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STATUSES})
    seconds: float = 0.0
    hardware: list[str] = field(default_factory=list)

    def line(self) -> str:
        failed = {k: v for k, v in self.by_status.items() if k != "ok" and v}
        fails = ", ".join(f"{k} {v}" for k, v in failed.items()) or "none"
        return (f"collected {self.done} cells ({self.by_status['ok']} ok; failed: {fails}), "
                f"skipped {self.skipped} already measured, in {_fmt_time(self.seconds)} "
                f"on {len(self.hardware)} hardware profile(s)")


def _fmt_time(s: float) -> str:
    if s != s or s == math.inf:
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """One line per finished cell on stderr, with ETA."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total, self.enabled, self.stream = total, enabled, stream or sys.stderr
        self.start, self.count, self.measured = time.monotonic(), 0, 0

    def skip(self) -> None:
        self.count += 1

    def update(self, cell: Cell, hardware_name: str, result: dict) -> None:
        self.count += 1
        self.measured += 1
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.measured * (self.total - self.count)  # skipped cells cost nothing
        thr = result.get("throughput_tok_s")
        what = f"{thr:,.1f} tok/s" if result["status"] == "ok" and thr is not None else result.get("message", "")[:70]
        print(f"[{self.count}/{self.total} {self.count / max(1, self.total):4.0%} eta {_fmt_time(eta)}] "
              f"{hardware_name} | {cell.task_name} | {cell.method}: {result['status']} {what}",
              file=self.stream, flush=True)


# ---------------------------------------------------------------------------- observation rows


def observation_table(cell: Cell, result: dict, hardware: dict, versions: dict):
    """One observation (with its descriptors) as a PerfTable ready to append."""
    from metasel.bench.methods import get as get_method
    from metasel.table import PerfTable, now_iso

    metrics = ("throughput_tok_s", "total_tok_s", "ttft_ms", "tpot_ms", "latency_ms", "peak_mem_mb", "setup_s")
    row = {"task_id": cell.task_id, "method": cell.method, "hardware_id": hardware["hardware_id"],
           **{m: result.get(m, math.nan) for m in metrics},
           "repeats": max(1, int(result.get("repeats") or 1)), "spread": result.get("spread", math.nan),
           "status": result["status"], "message": result.get("message", ""), "timestamp": now_iso(),
           "versions": versions, "seed": cell.seed, "source": "collect", "flags": ""}
    if row["status"] != "ok":
        for m in metrics:
            row[m] = math.nan
    task = {"task_id": cell.task_id, "name": cell.task_name, "spec": cell.task, "features": {}}
    return PerfTable([row], [task], [get_method(cell.method).descriptor()], [hardware], source="collect")


# ---------------------------------------------------------------------------- local worker


class LocalWorker:
    """A measuring child process for one hardware profile (restarted after a timeout or crash)."""

    def __init__(self, *, threads: int | None, device: str, start_timeout: float = 300.0):
        self.threads, self.device, self.start_timeout = threads, device, start_timeout
        self._ctx = mp.get_context("spawn")
        self.proc = None
        self.hardware: dict | None = None
        self.versions: dict | None = None

    def start(self) -> None:
        parent, child = self._ctx.Pipe()
        self.proc = self._ctx.Process(target=_worker_entry, args=(child, self.threads, self.device, os.getpid()),
                                      daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        if not self.conn.poll(self.start_timeout):
            self.stop(kill=True)
            raise MetaselError(f"the measuring process did not start within {self.start_timeout:.0f}s")
        try:
            kind, hardware, versions = self.conn.recv()
        except EOFError:
            code = self.proc.exitcode
            self.stop(kill=True)
            raise MetaselError(f"the measuring process died while starting (exit code {code})") from None
        if kind != "ready":
            self.stop(kill=True)
            raise MetaselError(f"the measuring process could not start: {hardware}")
        self.hardware, self.versions = hardware, versions

    def measure(self, cell: Cell, timeout_s: float) -> dict:
        if self.proc is None or not self.proc.is_alive():
            self.start()
        self.conn.send((cell.key, cell.task, cell.method, cell.repeats, cell.seed))
        if not self.conn.poll(timeout_s):
            self.stop(kill=True)
            return {"status": "timeout", "message": f"no result within {timeout_s:.0f}s; the worker was killed"}
        try:
            kind, key, result = self.conn.recv()
        except (EOFError, ConnectionResetError):
            code = self.proc.exitcode if self.proc is not None else None
            self.stop(kill=True)
            status = "oom" if code == -9 else "error"
            return {"status": status, "message": f"the measuring process died (exit code {code})"}
        assert key == cell.key, (key, cell.key)
        return result

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.proc = None


def _worker_entry(conn, threads, device, parent_pid):
    from metasel.bench.worker import worker_main

    worker_main(conn, threads, device, parent_pid)


def run_local(cells: list[Cell], *, threads: int | None, device: str, timeout_s: float, store, force: bool,
              on_result: Callable, on_skip: Callable) -> dict:
    """Measure cells on this machine with one worker; returns the hardware descriptor."""
    worker = LocalWorker(threads=threads, device=device)
    worker.start()
    try:
        hardware = worker.hardware
        done = set() if force else store.measured_cells(hardware["hardware_id"])
        for cell in cells:
            if cell.key in done:
                on_skip(cell, hardware)
                continue
            result = worker.measure(cell, timeout_s)
            on_result(cell, result, hardware, worker.versions or {})
    finally:
        worker.stop()
    return hardware


# ---------------------------------------------------------------------------- Ray


def _ray_probe(threads, device):
    import torch

    from metasel.bench.hardware import library_versions, probe

    if threads:
        torch.set_num_threads(threads)
    import ray

    return ray.get_runtime_context().get_node_id(), probe(threads=torch.get_num_threads(), device=device), library_versions()


def _ray_measure(task, method, repeats, seed, threads, device):
    import torch

    if threads:
        torch.set_num_threads(threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    from metasel.bench.backend import measure

    return measure(task, method, repeats=repeats, seed=seed, device=device)


def connect_ray(address: str):
    """Connect to a Ray cluster: an address, ``auto`` (a running cluster) or ``local``
    (start a one-node cluster on 127.0.0.1 for this run)."""
    from metasel.errors import require

    ray = require("ray", feature="metasel collect --ray", extra="dist")
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "runtime_env": {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}}
    try:
        if address == "local":
            # a private one-node cluster on loopback: no token auth needed, nothing else can reach it
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray.init(_node_ip_address="127.0.0.1", **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError…
        raise MetaselError(f"--ray {address}: cannot connect to a Ray cluster ({type(exc).__name__}: {exc})") from exc
    return ray


def run_ray(cells: list[Cell], *, address: str, threads: int | None, device: str, timeout_s: float, store,
            force: bool, on_result: Callable, on_skip: Callable) -> list[dict]:
    """Fan cells out over a Ray cluster. Every node probes its own hardware; nodes with the
    same hardware share that profile's cells; results stream back and are stored on arrival.
    One cell runs at a time per node (a cell takes all of a node's CPUs), so cells do not
    disturb each other's timings."""
    ray = connect_ray(address)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    probe_fn = ray.remote(num_cpus=0)(_ray_probe)
    probes = ray.get([probe_fn.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                      .remote(threads, device) for n in nodes])
    groups: dict[str, dict] = {}
    for (node_id, hardware, versions), node in zip(probes, nodes):
        g = groups.setdefault(hardware["hardware_id"], {"hardware": hardware, "versions": versions, "nodes": []})
        g["nodes"].append((node_id, node.get("Resources", {}).get("CPU", 1)))
    measure_fn = ray.remote(max_retries=0)(_ray_measure)
    pending: dict[Any, tuple[Cell, dict, float]] = {}
    queues = []
    for hid, g in groups.items():
        done = set() if force else store.measured_cells(hid)
        todo = []
        for cell in cells:
            if cell.key in done:
                on_skip(cell, g["hardware"])
            else:
                todo.append(cell)
        queues.append((g, todo))
    free = [(g, node_id, cpus) for g, _ in queues for node_id, cpus in g["nodes"]]
    todo_by_hw = {g["hardware"]["hardware_id"]: list(todo) for g, todo in queues}

    def submit(g, node_id, cpus):
        queue = todo_by_hw[g["hardware"]["hardware_id"]]
        if not queue:
            return False
        cell = queue.pop(0)
        ref = measure_fn.options(num_cpus=cpus, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)) \
            .remote(cell.task, cell.method, cell.repeats, cell.seed, threads, device)
        pending[ref] = (cell, g, node_id, cpus, time.monotonic())
        return True

    for g, node_id, cpus in free:
        submit(g, node_id, cpus)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        now = time.monotonic()
        for ref in ready:
            cell, g, node_id, cpus, _t = pending.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as exc:  # a task that died is an observation, not a crash of the run
                result = {"status": "error", "message": f"ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
            on_result(cell, result, g["hardware"], g["versions"])
            submit(g, node_id, cpus)
        for ref, (cell, g, node_id, cpus, t) in list(pending.items()):
            if now - t > timeout_s:
                ray.cancel(ref, force=True)
                pending.pop(ref)
                on_result(cell, {"status": "timeout", "message": f"no result within {timeout_s:.0f}s; the task was cancelled"},
                          g["hardware"], g["versions"])
                submit(g, node_id, cpus)
    return [g["hardware"] for g in groups.values()]


# ---------------------------------------------------------------------------- the job


def collect(tasks: Iterable, store, *, methods=None, repeats: int = 3, threads: Iterable[int | None] = (None,),
            device: str = "cpu", ray: str | None = None, force: bool = False, timeout_s: float = 600.0,
            seed: int = 0, progress: bool = True, stream=None) -> Summary:
    """Measure every (task, method) cell on each hardware profile and store each result.

    Args:
        tasks: :class:`~metasel.spec.TaskSpec` objects (e.g. ``grid.tasks``).
        store: an open :class:`~metasel.store.Store`.
        methods: method names (``None``: every registered method except the compiled ones).
        threads: one hardware profile per entry (``None``: all cores).
        ray: a Ray address, ``auto`` or ``local``; ``None`` runs here.
        force: measure cells again even if the store has them for this hardware.
    """
    from metasel.bench import methods as registry

    chosen = registry.resolve(methods)
    cells = plan(list(tasks), chosen, repeats=repeats, seed=seed)
    threads = list(threads)
    summary = Summary()
    bar = Progress(len(cells) * len(threads), enabled=progress, stream=stream)
    t0 = time.monotonic()

    def on_result(cell, result, hardware, versions):
        store.append(observation_table(cell, result, hardware, versions))
        summary.done += 1
        summary.by_status[result["status"]] = summary.by_status.get(result["status"], 0) + 1
        bar.update(cell, hardware["name"], result)

    def on_skip(cell, hardware):
        summary.skipped += 1
        bar.skip()

    try:
        for th in threads:
            if ray:
                hws = run_ray(cells, address=ray, threads=th, device=device, timeout_s=timeout_s, store=store,
                              force=force, on_result=on_result, on_skip=on_skip)
                summary.hardware += [h["hardware_id"] for h in hws]
            else:
                hw = run_local(cells, threads=th, device=device, timeout_s=timeout_s, store=store, force=force,
                               on_result=on_result, on_skip=on_skip)
                summary.hardware.append(hw["hardware_id"])
    finally:
        summary.seconds = time.monotonic() - t0
    return summary
