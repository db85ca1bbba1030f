"""Fan cells out over a Ray cluster: every node probes its own hardware and measures its share."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from metasel.bench.cells import Cell
from metasel.bench.executors import netns_launch
from metasel.errors import MetaselError


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
    from metasel.bench.machine import watched
    from metasel.bench.serve import measure

    return watched(lambda: measure(task, method, repeats=repeats, seed=seed, device=device), threads=threads)


def connect_ray(address: str):
    """Connect to a Ray cluster: an address, ``auto`` (a running cluster) or ``local``
    (start a one-node cluster on 127.0.0.1 for this run)."""
    from metasel.errors import require

    ray = require("ray", feature="metasel collect --ray", extra="dist")
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "runtime_env": {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}}
    if address == "local" and os.environ.get(netns_launch.ENV_FLAG) != "1":
        raise MetaselError("--ray local: the local cluster runs only inside a private network namespace (its servers "
                           "listen on every interface, without auth); 'metasel collect --ray local' starts one "
                           "(run_isolated), or measure without Ray")
    try:
        if address == "local":
            # a private one-node cluster in a network namespace with only loopback (netns_launch): no token
            # auth is needed, because nothing outside the namespace can reach it
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray.init(_node_ip_address="127.0.0.1", **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError…
        raise MetaselError(f"--ray {address}: cannot connect to a Ray cluster ({type(exc).__name__}: {exc})") from exc
    return ray


def run_isolated(argv: list[str], *, stdout=None, stderr=None) -> int:
    """Run ``python -m metasel ARGV`` inside a private network namespace (:mod:`netns_launch`),
    copying its output to ``stdout``/``stderr`` as it comes; returns its exit status. Ctrl-C
    reaches the child (same process group), which stops cleanly; this process waits for it."""
    import signal
    import subprocess
    import sys
    import threading

    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    cmd = [sys.executable, "-s", netns_launch.__file__, sys.executable, "-m", "metasel", *argv]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def pump(src, dst):
        for chunk in iter(lambda: os.read(src.fileno(), 4096), b""):
            dst.write(chunk.decode(errors="replace"))
            dst.flush()

    pumps = [threading.Thread(target=pump, args=(proc.stdout, stdout), daemon=True),
             threading.Thread(target=pump, args=(proc.stderr, stderr), daemon=True)]
    for t in pumps:
        t.start()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        code = proc.wait()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    for t in pumps:
        t.join(timeout=5)
    return code


def _hardware_groups(ray, threads, device) -> dict[str, dict]:
    """Live nodes grouped by the hardware each one probes: ``hardware_id -> {hardware, versions, nodes}``."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    probe_fn = ray.remote(num_cpus=0)(_ray_probe)
    probes = ray.get([probe_fn.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                      .remote(threads, device) for n in nodes])
    groups: dict[str, dict] = {}
    for (node_id, hardware, versions), node in zip(probes, nodes):
        g = groups.setdefault(hardware["hardware_id"], {"hardware": hardware, "versions": versions, "nodes": []})
        g["nodes"].append((node_id, node.get("Resources", {}).get("CPU", 1)))
    return groups


def run_ray(cells: list[Cell], *, address: str, threads: int | None, device: str, timeout_s: float, wanted: Callable,
            on_result: Callable, on_skip: Callable) -> list[dict]:
    """Fan cells out over a Ray cluster. Every node probes its own hardware; nodes with the
    same hardware share that profile's cells; results stream back and are stored on arrival.
    One cell runs at a time per node (a cell takes all of a node's CPUs), so cells do not
    disturb each other's timings. ``wanted(cell, hardware)`` says, when a cell's turn comes,
    whether it is still to be measured (else ``on_skip``)."""
    ray = connect_ray(address)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    groups = _hardware_groups(ray, threads, device)
    measure_fn = ray.remote(max_retries=0)(_ray_measure)
    pending: dict[Any, tuple[Cell, dict, float]] = {}
    free = [(g, node_id, cpus) for g in groups.values() for node_id, cpus in g["nodes"]]
    todo_by_hw = {hid: list(cells) for hid in groups}

    def submit(g, node_id, cpus):
        queue = todo_by_hw[g["hardware"]["hardware_id"]]
        while queue and not wanted(queue[0], g["hardware"]):
            on_skip(queue.pop(0), g["hardware"])
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
