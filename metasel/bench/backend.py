"""The real collector as a :class:`metasel.select.loop.Backend`: measure a cell here, store it, report it.

``tune`` drives the one active loop against it: every benchmark the loop asks for runs in
the measuring process (:class:`~metasel.bench.executors.local.LocalWorker`), its
observation is appended to the store in its own transaction before the loop hears of it
(a killed run loses nothing it measured), and the loop gets a
:class:`~metasel.data.measurement.Measurement`.
"""

from __future__ import annotations

import sys
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
        auto_install: install an engine the first time one of its methods is asked for (else
            its cells are ``unsupported`` with the install command).
    """

    def __init__(self, worker: LocalWorker, store, tasks: dict, *, repeats: int = 3, timeout_s: float = 600.0,
                 run_seed: int = 0, auto_install: bool = True):
        self.worker, self.store, self.tasks = worker, store, dict(tasks)
        self.repeats, self.timeout_s, self.run_seed = repeats, timeout_s, run_seed
        self.auto_install = auto_install

    def _engine_ready(self, method: str) -> None:
        """An engine method's engine is installed on first use, saying so (``auto_install``)."""
        from metasel.bench.engines import envs
        from metasel.bench.methods import get

        engine = get(method).engine
        if engine == "transformers" or not self.auto_install or envs.installed(engine) is not None:
            return
        print(f"tune: {method} needs engine {engine!r}, which is not installed; installing it now "
              f"(first use; {envs.get_spec(engine).note})", file=sys.stderr, flush=True)
        envs.install(engine)

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
        self._engine_ready(method)
        cell = Cell(task_id, spec.name, spec.task_dict(), method, self.repeats, cell_seed(self.run_seed, task_id))
        t0 = time.monotonic()
        result = self.worker.measure(cell, self.timeout_s)
        seconds = time.monotonic() - t0
        self.store.append(observation_table(cell, result, self.hardware, self.worker.versions or {}))
        metrics = {k: float(result[k]) for k in MEASURED_METRICS if result.get(k) is not None} if result["status"] == "ok" else {}
        return Measurement(result["status"], metrics, seconds, result.get("message", ""))
