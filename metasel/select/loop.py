"""The one active loop: ask → measure on a backend → tell, until the selector says stop.

``metasel tune`` runs it against the real collector (:class:`metasel.bench.backend.CollectorBackend`),
``metasel evaluate`` against recorded observations (:class:`metasel.evaluation.replay.ReplayBackend`)
for its anytime curves, and the Python API against any object with a ``measure`` method.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Protocol, runtime_checkable

from metasel.data.measurement import Measurement
from metasel.select.selector import Ask, Recommendation, Selector


@runtime_checkable
class Backend(Protocol):
    """Something that benchmarks a cell: the collector on this machine, a replay of a table, …"""

    def measure(self, task_id: str, method: str, hardware_id: str) -> Measurement:
        """Benchmark one cell; a failure is a :class:`Measurement` with its status, not an exception."""


class Step(NamedTuple):
    ask: Ask
    measurement: Measurement


class LoopResult(NamedTuple):
    steps: list[Step]
    stop_reason: str
    best: Recommendation | None  # None when nothing could be recommended (no candidate)

    @property
    def order(self) -> list[str]:
        """The methods benchmarked, in order."""
        return [s.ask.method for s in self.steps]


def run(selector: Selector, backend: Backend, *, on_ask: Callable[[Ask, Selector], None] | None = None,
        on_result: Callable[[Step, Selector], None] | None = None) -> LoopResult:
    """Drive ``selector`` against ``backend`` until it stops (budget, expected gain, or nothing left).

    Every measurement is told to the selector (its value for the selector's metric, or its
    failure status) with what it cost; ``on_ask`` / ``on_result`` see each step as it happens.
    """
    metric = selector.surrogate.metric
    steps: list[Step] = []
    while True:
        ask = selector.ask()
        if ask.method is None:
            break
        if on_ask is not None:
            on_ask(ask, selector)
        got = backend.measure(selector.task_id, ask.method, selector.hardware_id)
        selector.tell(ask.method, got.value(metric), status=got.status, seconds=got.seconds)
        steps.append(Step(ask, got))
        if on_result is not None:
            on_result(steps[-1], selector)
    best = selector.best() if selector.state.candidates else None
    return LoopResult(steps, ask.reason, best)
