"""Two-metric views of ``suggest``: the throughput–latency Pareto front, and goodput under an SLO.

Each metric has its own model (the store's cached fit, as ``suggest`` uses for its objective),
conditioned on the task and hardware and on what the store measured there. A method's point
is its measured value where the store has one, else the predicted median with its 90%
interval. The front is the set of methods no other method beats on both metrics, among the
methods predicted to run (P(feasible) ≥ 0.5).

Goodput under an SLO (``--slo ttft_p99_ms=500,tpot_p99_ms=50``): the predicted request rate
(generated tokens/s over the workload's output length, at most the arrival rate of a Poisson or
constant-rate workload) times the probability that every bound
holds, each from its metric's log-normal predictive (``Φ((log bound − μ) / σ)``; a measured
value counts as met or not), the metrics taken as independent given the method. It ranks
methods by the rate of requests expected to meet the SLO, the quantity a serving benchmark
reports as goodput.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from metasel.errors import InputDataError
from metasel.select.front import non_dominated

__all__ = ["non_dominated", "parse_slo", "pareto", "slo_goodput", "views_for", "metric_view", "MetricView", "ParetoResult"]


def parse_slo(text: str) -> dict[str, float]:
    """``ttft_p99_ms=500,tpot_p99_ms=50`` -> bounds on latency metrics (smaller is better)."""
    from metasel._schema import METRICS

    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in METRICS or METRICS[key][0] != "min" or key in ("peak_mem_mb", "setup_s", "convert_s"):
            lat = [m for m, (d, u) in METRICS.items() if d == "min" and u == "ms"]
            raise InputDataError(f"--slo {part!r}: expected METRIC=BOUND with a latency metric in ms ({', '.join(lat)})")
        try:
            bound = float(value)
        except ValueError:
            raise InputDataError(f"--slo {part!r}: expected a number of ms after '=', got {value!r}") from None
        if not bound > 0:
            raise InputDataError(f"--slo {part!r}: expected a positive bound, got {bound:g}")
        out[key] = bound
    if not out:
        raise InputDataError("--slo: expected at least one METRIC=BOUND, e.g. ttft_p99_ms=500,tpot_p99_ms=50")
    return out


@dataclass
class MetricView:
    """One metric's model for the context: per method the predicted log mean/std, the 90% interval, the measured value."""

    metric: str
    direction: str
    mean: dict[str, float]
    std: dict[str, float]
    low90: dict[str, float]
    high90: dict[str, float]
    measured: dict[str, float]
    p_ok: dict[str, float]

    def value(self, m: str) -> float:
        return self.measured.get(m, math.exp(self.mean[m]))


def metric_view(model, task: dict, hardware: dict, table) -> MetricView:
    """A model of one metric conditioned on the context and its measurements, predicted for every method."""
    from metasel.app.descriptors import descriptor_table
    from metasel.app.suggest import _measured_here

    tid, hid = task["task_id"], hardware["hardware_id"]
    desc = descriptor_table(task, hardware)
    own = table.filter(tasks=[tid], hardware=[hid]) if len(table) else None
    model = model.condition(desc).condition(own if own is not None and len(own) else desc)
    measured, failed = _measured_here(own, model.metric)
    methods = list(model.methods)
    cells = [(tid, m, hid) for m in methods]
    pred = model.predict(cells)
    lo, hi = pred.interval(0.9)
    p_ok = 1.0 - model.p_fail(cells)
    return MetricView(model.metric, model.direction, dict(zip(methods, map(float, pred.mean))),
                      dict(zip(methods, map(float, pred.std))), {m: math.exp(v) for m, v in zip(methods, lo)},
                      {m: math.exp(v) for m, v in zip(methods, hi)}, measured,
                      {m: 0.0 if m in failed else (1.0 if m in measured else float(p)) for m, p in zip(methods, p_ok)})


@dataclass
class ParetoResult:
    x: str
    y: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per method, the front first, by x

    @property
    def front(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["on_front"]]


def pareto(views: dict[str, MetricView], x: str, y: str) -> ParetoResult:
    """The front of ``x`` against ``y`` over the methods both views know."""
    vx, vy = views[x], views[y]
    methods = [m for m in vx.mean if m in vy.mean]
    feasible = [m for m in methods if min(vx.p_ok[m], vy.p_ok[m]) >= 0.5]
    flags = dict(zip(feasible, non_dominated([vx.value(m) for m in feasible], [vy.value(m) for m in feasible],
                                             x_dir=vx.direction, y_dir=vy.direction)))
    rows = []
    for m in methods:
        rows.append({"method": m, "on_front": flags.get(m, False), "feasible": m in flags,
                     x: vx.value(m), f"{x}_low90": vx.low90[m], f"{x}_high90": vx.high90[m], f"{x}_measured": m in vx.measured,
                     y: vy.value(m), f"{y}_low90": vy.low90[m], f"{y}_high90": vy.high90[m], f"{y}_measured": m in vy.measured})
    sign = -1.0 if vx.direction == "max" else 1.0
    rows.sort(key=lambda r: (not r["on_front"], not r["feasible"], sign * r[x]))
    return ParetoResult(x, y, rows)


def _p_below(view: MetricView, m: str, bound: float) -> float:
    if m in view.measured:
        return float(view.measured[m] <= bound)
    from math import erf, log, sqrt

    s = max(view.std[m], 1e-9)
    return 0.5 * (1.0 + erf((log(bound) - view.mean[m]) / (s * sqrt(2.0))))


def slo_goodput(views: dict[str, MetricView], slo: dict[str, float], output_len: float,
                arrival_rate: float | None = None) -> list[dict[str, Any]]:
    """Methods by predicted goodput (requests/s meeting every bound of ``slo``), best first. Under
    open-loop arrivals at ``arrival_rate`` (Poisson, constant) no method serves more requests/s than arrive."""
    thr = views["throughput_tok_s"]
    methods = [m for m in thr.mean if all(m in views[k].mean for k in slo)]
    rows = []
    for m in methods:
        p_meet = float(np.prod([_p_below(views[k], m, b) for k, b in slo.items()]))
        p_ok = min([thr.p_ok[m], *(views[k].p_ok[m] for k in slo)])
        rate = thr.value(m) / max(float(output_len), 1.0)
        if arrival_rate:
            rate = min(rate, float(arrival_rate))
        rows.append({"method": m, "goodput_req_s": rate * p_meet * (p_ok >= 0.5), "req_s": rate, "p_meet_slo": p_meet,
                     "feasible": p_ok >= 0.5, **{k: views[k].value(m) for k in slo},
                     "measured": all(m in views[k].measured for k in (*slo, "throughput_tok_s"))})
    rows.sort(key=lambda r: (not r["feasible"], -r["goodput_req_s"], -r["req_s"]))
    return rows


def views_for(spec, store, metrics: list[str], *, hardware: dict, model_path: str | None = None,
              say: Callable[[str], None] = lambda m: None) -> dict[str, MetricView]:
    """A conditioned :class:`MetricView` per metric for the spec's task on ``hardware`` (each metric's
    model: ``model_path`` when it models that metric, else the store's cached fit, else a new fit)."""
    from metasel.app.descriptors import task_descriptor
    from metasel.app.models import model_for
    from metasel.surrogate import BayesianSurrogate

    table = store.load()
    loaded = BayesianSurrogate.load(model_path) if model_path else None
    task = task_descriptor(spec)
    out = {}
    for metric in dict.fromkeys(metrics):
        if not len(table.long(metric)):
            raise InputDataError(f"{metric}: the store has no measurement of it to learn from "
                                 f"(the serving percentiles come from engines measured under load, e.g. datasets/cpu-v2)")
        model = loaded if loaded is not None and loaded.metric == metric else \
            model_for(table, metric, store_path=store.path, model_path=None, say=say)
        out[metric] = metric_view(model, task, hardware, table)
    return out
