"""Replay backend: answer benchmarks from recorded observations.

The offline stand-in for the collector (both follow :class:`metasel.select.loop.Backend`): a
held-out task's recorded cells answer the loop's requests, so the active loop can be
evaluated without running anything.
"""

from __future__ import annotations

from metasel.data.measurement import Measurement
from metasel.errors import InputDataError


class ReplayBackend:
    """Recorded observations of one metric, keyed by (task, method, hardware).

    A cell recorded several times answers with the median of its ``ok`` values; a cell
    with only failures answers with its first failure status; a cell never recorded is
    an :class:`~metasel.errors.InputDataError` (the loop should only ask for recorded candidates).
    """

    def __init__(self, table, metric: str):
        self.metric = metric
        obs = table.observations
        self._ok = {(t, m, h): v for t, m, h, v in
                    table.long(metric)[["task_id", "method", "hardware_id", "value"]].itertuples(index=False)}
        self._failed: dict[tuple[str, str, str], str] = {}
        for t, m, h, s in obs.loc[obs["status"] != "ok", ["task_id", "method", "hardware_id", "status"]].itertuples(index=False):
            self._failed.setdefault((t, m, h), s)
        cost = obs.assign(c=obs["setup_s"].fillna(0.0) + obs["latency_ms"].fillna(0.0) / 1000.0 * (obs["repeats"] + 1))
        self._seconds = cost.groupby(["task_id", "method", "hardware_id"])["c"].median().to_dict()

    def candidates(self, task_id: str, hardware_id: str) -> list[str]:
        keys = set(self._ok) | set(self._failed)
        return sorted(m for t, m, h in keys if t == task_id and h == hardware_id)

    def measure(self, task_id: str, method: str, hardware_id: str) -> Measurement:
        key = (task_id, method, hardware_id)
        seconds = float(self._seconds.get(key, 1.0)) or 1.0
        if key in self._ok:
            return Measurement("ok", {self.metric: float(self._ok[key])}, seconds)
        if key in self._failed:
            return Measurement(self._failed[key], {}, seconds, "recorded failure")
        raise InputDataError(f"replay: no recorded observation of task {task_id!r}, method {method!r}, "
                             f"hardware {hardware_id!r}")

    def oracle(self, task_id: str, hardware_id: str, direction: str) -> tuple[str, float]:
        vals = {m: v for (t, m, h), v in self._ok.items() if t == task_id and h == hardware_id}
        pick = (max if direction == "max" else min)(vals, key=vals.get)
        return pick, vals[pick]
