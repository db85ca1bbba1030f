"""What measuring one cell gives back, whichever backend measured it (the collector, a replay)."""

from __future__ import annotations

from typing import Mapping, NamedTuple


class Measurement(NamedTuple):
    """One benchmark of a (task, method, hardware) cell.

    Attributes:
        status: ``ok`` or a failure status (``oom``, ``unsupported``, ``timeout``, ``error``…).
        metrics: metric name -> value (``ok`` only; empty for a failure).
        seconds: what the benchmark cost (wall time, or the recorded time of a replay).
        message: why it failed, when it did.
    """

    status: str
    metrics: Mapping[str, float]
    seconds: float
    message: str = ""

    def value(self, metric: str) -> float | None:
        """The metric's value of an ``ok`` measurement, else None."""
        return self.metrics.get(metric) if self.status == "ok" else None
