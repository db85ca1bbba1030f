"""The real collector as a :class:`metasel.select.loop.Backend`: measure a cell here, store it, report it.

``tune`` drives the one active loop against it: every benchmark the loop asks for runs in
the measuring process (:class:`~metasel.bench.executors.local.LocalWorker`), its
observation is appended to the store in its own transaction before the loop hears of it
(a killed run loses nothing it measured), and the loop gets a
:class:`~metasel.data.measurement.Measurement`.
"""

from __future__ import annotations

import time

from metasel.bench.cells import MEASURED_METRICS, Cell, cell_seed, observation_table
from metasel.bench.executors.local import LocalWorker
from metasel.data.measurement import Measurement
from metasel.errors import InputDataError


class CollectorBackend:
    """Measure cells of known tasks on the worker's hardware and append each observation to ``store``.

    Args:
        worker: a started :class:`LocalWorker` (its probed hardware is the only hardware it measures).
        store: an open :class:`~metasel.data.store.Store`.
        tasks: ``task_id -> TaskSpec`` of the tasks it may be asked to measure.
        repeats, timeout_s: per cell.
        run_seed: the run seed each task's cell seed derives from.
    """

    def __init__(self, worker: LocalWorker, store, tasks: dict, *, repeats: int = 3, timeout_s: float = 600.0,
                 run_seed: int = 0):
        self.worker, self.store, self.tasks = worker, store, dict(tasks)
        self.repeats, self.timeout_s, self.run_seed = repeats, timeout_s, run_seed

    @property
    def hardware(self) -> dict:
        return self.worker.hardware

    def measure(self, task_id: str, method: str, hardware_id: str) -> Measurement:
        if hardware_id != self.hardware["hardware_id"]:
            raise InputDataError(f"collector: asked to measure on hardware {hardware_id!r}, but this machine is "
                                 f"{self.hardware['hardware_id']!r}")
        spec = self.tasks.get(task_id)
        if spec is None:
            raise InputDataError(f"collector: no spec for task {task_id!r}; known: {sorted(self.tasks)}")
        cell = Cell(task_id, spec.name, spec.task_dict(), method, self.repeats, cell_seed(self.run_seed, task_id))
        t0 = time.monotonic()
        result = self.worker.measure(cell, self.timeout_s)
        seconds = time.monotonic() - t0
        self.store.append(observation_table(cell, result, self.hardware, self.worker.versions or {}))
        metrics = {k: float(result[k]) for k in MEASURED_METRICS if result.get(k) is not None} if result["status"] == "ok" else {}
        return Measurement(result["status"], metrics, seconds, result.get("message", ""))
