"""Cells (one task × method to measure on a hardware) and the observation rows they become."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from metasel._schema import SCHEMA2_METRICS

#: the metrics a collector measurement carries (the engines' serving metrics are schema 2's)
MEASURED_METRICS = ("throughput_tok_s", "total_tok_s", "ttft_ms", "tpot_ms", "latency_ms", "peak_mem_mb", "setup_s",
                    *SCHEMA2_METRICS)


@dataclass(frozen=True)
class Cell:
    """One (task, method) measurement to make."""

    task_id: str
    task_name: str
    task: dict
    method: str
    repeats: int
    seed: int
    #: interleaved repeats: which round of ``rounds`` this run is (None: the cell's repeats run together)
    round: int | None = None
    rounds: int = 1

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


def observation_table(cell: Cell, result: dict, hardware: dict, versions: dict, *, method: dict | None = None,
                      source: str = "collect"):
    """One observation (with its descriptors) as a PerfTable ready to append; ``method`` is the
    method's descriptor when it is not a registered one (a measured endpoint)."""
    from metasel.bench.methods import get as get_method
    from metasel.data.table import PerfTable, now_iso

    metrics = MEASURED_METRICS
    row = {"task_id": cell.task_id, "method": cell.method, "hardware_id": hardware["hardware_id"],
           **{m: result.get(m, math.nan) for m in metrics},
           "repeats": max(1, int(result.get("repeats") or 1)), "spread": result.get("spread", math.nan),
           "status": result["status"], "message": result.get("message", ""), "timestamp": now_iso(),
           "versions": {**versions, **(result.get("versions") or {})}, "seed": cell.seed, "source": source,
           "flags": result.get("flags", ""),
           "machine": result.get("machine") or ""}
    if row["status"] != "ok":
        for m in metrics:
            row[m] = math.nan
    task = {"task_id": cell.task_id, "name": cell.task_name, "spec": cell.task, "features": {}}
    return PerfTable([row], [task], [method or get_method(cell.method).descriptor()], [hardware], source=source)
