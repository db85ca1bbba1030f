"""``tune``: the active loop for real — ask → benchmark on this machine → store → tell → … → recommend.

It is the same loop (:func:`metasel.select.loop.run`) that the evaluation replays, run
against :class:`metasel.bench.backend.CollectorBackend`. Resumable: measurements already in
the store for this task and machine are told to the selector first, and only new ones run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

from metasel.app.descriptors import descriptor_table
from metasel._format import number as _number
from metasel.app.suggest import prepare


@dataclass
class TuneResult:
    best: object  # metasel.select.Recommendation
    history: list[tuple[str, str, float | None]]  # (method, status, value) of every benchmark told, resumed ones first
    predicted: dict[str, float]  # zero-shot predicted value of each candidate (before this task's benchmarks)
    resumed: int  # benchmarks read from the store rather than run
    stop_reason: str
    seconds: float
    curve: list[float]  # best-so-far value after each benchmark run here


def tune(spec, store, *, budget: int | None = None, budget_seconds: float | None = None, model_path: str | None = None,
         repeats: int = 3, min_gain: float = 0.005, timeout_s: float = 600.0, landmarks: bool = True,
         say: Callable[[str], None] = lambda m: None, refit: bool = False) -> TuneResult:
    """Benchmark the methods worth trying for ``spec``'s task on this machine, storing each one."""
    from metasel.bench.backend import CollectorBackend
    from metasel.bench.executors.local import LocalWorker
    from metasel.select import Selector, StopRule, run

    from metasel.bench.collect import warn_if_busy

    warn_if_busy(spec.hardware.threads, say=lambda m: say(f"warning: {m}"))
    worker = LocalWorker(threads=spec.hardware.threads, device="cpu")
    say("starting the measuring process…")
    worker.start()
    try:
        backend = CollectorBackend(worker, store, {spec.task_id: spec}, repeats=repeats, timeout_s=timeout_s)
        hardware, metric = worker.hardware, spec.objective.metric
        table, model, _, task = prepare(spec, store, model_path=model_path, landmarks=landmarks, say=say, refit=refit)
        rule = StopRule(min_gain=min_gain, max_benchmarks=budget or spec.budget.benchmarks or 5,
                        max_seconds=budget_seconds or spec.budget.seconds)
        sel = Selector(model, spec.task_id, hardware["hardware_id"], table=descriptor_table(task, hardware), rule=rule)
        prior = sel.surrogate.predict([(spec.task_id, m, hardware["hardware_id"]) for m in sel.state.candidates])
        predicted = {m: math.exp(mu) for m, mu in zip(sel.state.candidates, prior.mean)}
        lo90, hi90 = prior.interval(0.9)
        log_prior = {m: v for m, *v in zip(sel.state.candidates, prior.mean, prior.std, lo90, hi90)}
        resumed = _resume(sel, table, spec.task_id, hardware["hardware_id"], metric)
        if resumed:
            say(f"resuming: {resumed} benchmark(s) of this task already in the store")
        t0, curve = time.monotonic(), []

        def on_ask(ask, selector):
            say(f"[{selector.state.num_benchmarks + 1}] benchmarking {ask.method} ({ask.reason}; predicted "
                f"{_number(predicted.get(ask.method, math.nan))})")

        def on_result(step, selector):
            got = step.measurement
            value = got.value(metric)
            say(f"    {got.status}" + (f": {_number(value)} {metric}" if value is not None else f": {got.message[:80]}"))
            surprise = far_from_prediction(value, *log_prior.get(step.ask.method, (math.nan,) * 4))
            if surprise:
                busy = got.message if got.message.startswith("noisy") else \
                    "the machine was quiet during it (flagged noisy otherwise)"
                say(f"    warning: measured {_number(value)}, {surprise} ({busy})")
            if selector.state.measured:
                curve.append(selector.best().value)

        result = run(sel, backend, on_ask=on_ask, on_result=on_result)
        say(f"stop: {result.stop_reason}")
        return TuneResult(sel.best(), list(sel.history), predicted, resumed, result.stop_reason,
                          time.monotonic() - t0, curve)
    finally:
        worker.stop()


def _resume(sel, table, task_id: str, hardware_id: str, metric: str) -> int:
    """Tell the selector what the store already has for this task here; how many benchmarks that was."""
    own = table.filter(tasks=[task_id], hardware=[hardware_id]) if len(table) else None
    if own is None or not len(own):
        return 0
    told = 0
    for m, st, v in own.observations[["method", "status", metric]].itertuples(index=False):
        if m in sel.state.measured or m in sel.state.failed:
            continue
        sel.tell(m, v if st == "ok" else None, status=st)
        told += 1
    return told


#: how many predictive standard deviations (of log value) make a measurement "far" from its prediction
SURPRISE_Z = 3.0


def far_from_prediction(value: float | None, log_mean: float, log_std: float, log_lo90: float,
                        log_hi90: float) -> str | None:
    """Why ``value`` lies far outside its zero-shot prediction (more than :data:`SURPRISE_Z`
    standard deviations of log value; the 90% interval is quoted), or None."""
    if value is None or not value > 0 or not log_std > 0:
        return None
    z = (math.log(value) - log_mean) / log_std
    if abs(z) <= SURPRISE_Z:
        return None
    lo, hi = math.exp(log_lo90), math.exp(log_hi90)
    return (f"far {'below' if z < 0 else 'above'} the predicted {_number(math.exp(log_mean))} "
            f"(90% interval {_number(lo)}-{_number(hi)}; {abs(z):.1f} sd)")
