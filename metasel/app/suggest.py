"""``suggest``: rank every method for a task on a machine, and name the next one worth benchmarking.

Flow: the task spec and its hardware become descriptors (:mod:`metasel.app.descriptors`);
the store's table and a model of the objective (loaded, cached or fitted:
:mod:`metasel.app.models`) are conditioned on what the store has measured for this task
here; the model's joint posterior over the methods gives each one's predicted value,
interval and P(best); the failure model and constraint models give P(feasible); the
selector (:class:`metasel.select.Selector`) names the next benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from metasel.app.descriptors import descriptor_table, hardware_descriptor, task_descriptor, with_landmarks
from metasel.app.models import model_for


@dataclass
class Ranked:
    rows: list[dict[str, Any]]  # one per method, best first (feasible ones before the rest)
    next_method: str | None
    next_reason: str
    metric: str
    direction: str
    task: dict
    hardware: dict
    ranked_by: str = "expected value"
    intervals_for: str | None = None  # the novelty the intervals are calibrated for (task, hardware, a task grouping)
    intervals_by_level: bool = False  # split-conformal widths level by level (else one std factor, Gaussian shape)
    reason: str = ""  # why the first row is recommended

    @property
    def recommended(self) -> dict:
        return self.rows[0]


def _measured_here(own, metric: str) -> tuple[dict[str, float], dict[str, str]]:
    """Measured values and failure statuses of one context's observations (a success wins)."""
    failed: dict[str, str] = {}
    measured: dict[str, float] = {}
    if own is not None and len(own):
        o = own.observations
        for m, s in o.loc[o["status"] != "ok", ["method", "status"]].itertuples(index=False):
            failed.setdefault(m, s)
        for m, v in own.long(metric)[["method", "value"]].itertuples(index=False):
            measured[m] = float(v)
            failed.pop(m, None)
    return measured, failed


def _constraint_feasibility(extra_models: dict | None, objective, desc, cond_table, cells) -> np.ndarray:
    """P(meets the memory cap and latency SLO) per cell, from the constraint metrics' models."""
    from metasel.select import acquisition as acq

    p = np.ones(len(cells))
    for metric, limit in (("peak_mem_mb", objective.max_memory_mb), ("latency_ms", objective.latency_slo_ms)):
        if limit is not None and extra_models and metric in extra_models:
            ep = extra_models[metric].condition(desc).condition(cond_table).predict(cells)
            p *= acq.probability_feasible(ep.mean, ep.std, limit)
    return p


def _failure_values(table, metric: str, direction: str, methods: list[str]) -> np.ndarray:
    """What a failure of each method costs on the metric's scale: 0 for a maximised metric, else the
    median value the table records for its failed runs (a PAR10 penalty), else NaN (unknown)."""
    out = np.zeros(len(methods)) if direction == "max" else np.full(len(methods), np.nan)
    if direction == "max" or not len(table) or metric not in table.observations:
        return out
    obs = table.observations
    bad = obs.loc[(obs["status"] != "ok") & (obs[metric] > 0), ["method", metric]]
    if bad.empty:
        return out
    per = bad.groupby("method")[metric].median()
    overall = float(bad[metric].median())
    return np.array([float(per.get(m, overall)) for m in methods])


def rank(model, task: dict, hardware: dict, table, *, objective, price_per_hour: float | None,
         extra_models: dict | None = None, seed: int = 0, choice=None) -> Ranked:
    """Every method's prediction for the task on the hardware, measured ones included; unmeasured
    ones are ranked by ``choice`` (:class:`~metasel.select.choice.Choice`: the expected value,
    failures included, by default; a risk quantile; or P(best)), measured ones by their value."""
    from metasel.select import Selector, StopRule
    from metasel.select import acquisition as acq
    from metasel.select.choice import Choice, choice_scores

    choice = choice or Choice()

    tid, hid = task["task_id"], hardware["hardware_id"]
    desc = descriptor_table(task, hardware)
    own = table.filter(tasks=[tid], hardware=[hid]) if len(table) else None
    cond_table = own if own is not None and len(own) else desc
    model = model.condition(desc).condition(cond_table)
    measured, failed = _measured_here(own, model.metric)
    methods = model.methods
    cells = [(tid, m, hid) for m in methods]
    pred = model.predict(cells, joint=True)
    lo, hi = pred.interval(0.9)
    p_best = acq.probability_best(pred.mean, pred.std, rng=np.random.default_rng(seed), direction=model.direction,
                                  cov=pred.covariance())
    constraint = _constraint_feasibility(extra_models, objective, desc, cond_table, cells)
    p_ok = 1.0 - model.p_fail(cells)  # failures of each method on similar contexts
    p_feas = np.where([m in failed for m in methods], 0.0,
                      np.where([m in measured for m in methods], constraint, constraint * p_ok))
    same = model.same_computation(tid, methods)  # e.g. static batching of one request = plain generation
    index = {m: i for i, m in enumerate(methods)}
    rep_of = np.array([index.get(same[m], i) for i, m in enumerate(methods)])
    p_feas = np.where([m in failed or m in measured for m in methods], p_feas, p_feas[rep_of])  # a twin runs as its twin
    why_not = _infeasible_reasons(table, methods, failed, constraint, 1.0 - p_ok[rep_of], objective, p_feas)
    if choice.by == "p_best":
        utility = p_best  # the joint posterior's, correlations included
    else:
        utility = choice_scores(pred.mean[None], pred.std[None], (1.0 - p_feas)[None], direction=model.direction,
                                failure_value=_failure_values(table, model.metric, model.direction, methods),
                                choice=choice, seed=seed)[0]
    rows = []
    for i, m in enumerate(methods):
        med = float(np.exp(pred.mean[i]))
        row = {"method": m, "predicted": med, "low90": float(np.exp(lo[i])), "high90": float(np.exp(hi[i])),
               "log_std": float(pred.std[i]), "p_best": float(p_best[i]), "p_feasible": float(p_feas[i]),
               "measured": measured.get(m), "status": failed.get(m, "ok" if m in measured else ""),
               "same_as": same[m] if same[m] != m else None, "score": float(utility[i]),
               "feasible": bool(p_feas[i] >= 0.5), "reason": why_not.get(m, "")}
        if price_per_hour is not None and model.metric == "throughput_tok_s":
            row["usd_per_mtok"] = price_per_hour / (measured.get(m, med) * 3600.0) * 1e6
        rows.append(row)
    sign = 1.0 if model.direction == "max" else -1.0

    def key(r):  # a measured value counts as itself (P(best): the posterior is conditioned on it already)
        if r["measured"] is not None and choice.by != "p_best":
            return (r["p_feasible"] < 0.5, -sign * float(np.log(max(r["measured"], 1e-300))))
        return (r["p_feasible"] < 0.5, -r["score"])

    rows.sort(key=key)
    sel = Selector(model, tid, hid, candidates=methods, rule=StopRule(), key=seed, measured=measured, failed=failed,
                   feasibility=dict(zip(methods, constraint.tolist())))  # the selector applies the failure model itself
    ask = sel.ask()
    by, by_level = intervals_for(model, measured=bool(measured))
    return Ranked(rows, ask.method, ask.reason, model.metric, model.direction, task, hardware, choice.describe(),
                  by, by_level, _why_recommended(rows, choice))


def _why_recommended(rows: list[dict], choice) -> str:
    best = rows[0]
    if not best["feasible"]:
        return f"no method is likely feasible here; {best['method']} is the least unlikely ({best['reason']})"
    if best["measured"] is not None:
        return "the best measured here" + ("" if all(r["measured"] is not None or not r["feasible"] for r in rows)
                                           else ", and no unmeasured method is expected to beat it")
    return (f"the best {choice.describe()} among the feasible methods (P(best) {best['p_best']:.2f}, "
            f"P(feasible) {best['p_feasible']:.2f})")


def _infeasible_reasons(table, methods: list[str], failed: dict[str, str], constraint: np.ndarray,
                        p_fail: np.ndarray, objective, p_feas: np.ndarray) -> dict[str, str]:
    """method -> why it is unlikely to run here (P(feasible) < 0.5): its recorded failure here, a
    constraint it is predicted to break, or how often it failed elsewhere in the store."""
    out: dict[str, str] = {}
    obs = table.observations if len(table) else None
    for i, m in enumerate(methods):
        if p_feas[i] >= 0.5:
            continue
        if m in failed:
            out[m] = f"recorded {failed[m]} here"
        elif constraint[i] < 0.5:
            limits = [f"max_memory_mb {objective.max_memory_mb:g}" if objective.max_memory_mb is not None else "",
                      f"latency_slo_ms {objective.latency_slo_ms:g}" if objective.latency_slo_ms is not None else ""]
            out[m] = f"predicted to break {' or '.join(x for x in limits if x)} (P {1 - constraint[i]:.2f})"
        else:
            what = ""
            if obs is not None:
                mine = obs[obs["method"] == m]
                bad = mine[mine["status"] != "ok"]
                if len(bad):
                    status = bad["status"].mode().iloc[0]
                    msg = bad.loc[bad["status"] == status, "message"].mode()
                    example = f": {msg.iloc[0][:70]!r}" if len(msg) and msg.iloc[0] else ""
                    what = f"; {status} in {len(bad)} of its {len(mine)} measurements in the store{example}"
            out[m] = f"predicted to fail here (P {p_fail[i]:.2f}){what}"
    return out


def intervals_for(model, *, measured: bool = False) -> tuple[str | None, bool]:
    """What the model's intervals were calibrated on — ``task``, ``hardware`` or a task grouping
    such as ``model.hf_id``, held out of its training data (None: not calibrated) — and whether
    they were calibrated level by level (split conformal) for this case: a new context with
    measurements (``measured``) or none."""
    info = model.info() if hasattr(model, "info") else {}
    return info.get("calibrate_by"), ("cond" if measured else "zero") in info.get("interval_widths", ())


def describe_intervals(by: str | None, by_level: bool = False) -> str:
    """One line for people: the novelty ``by`` (see :func:`intervals_for`) the intervals hold for."""
    if by is None:
        return "intervals: not calibrated (the model's Gaussian spread)"
    what = {"task": "a new task on known hardware", "hardware": "new hardware"}.get(by, f"a new {by} (tasks grouped by it)")
    how = "split conformal, level by level," if by_level else \
        "one std factor at 90% (too few held out for level by level),"
    return f"intervals calibrated for {what}: {how} on {by} groups held out of the training data"


def models_for(table, objective, *, store_path: Path | None, model_path: str | None, say: Callable[[str], None],
               refit: bool = False):
    """The objective's model and, for each constraint the spec sets (only those), a model of its metric."""
    model = model_for(table, objective.metric, store_path=store_path, model_path=model_path, say=say, refit=refit)
    extra = {}
    for metric, limit in (("peak_mem_mb", objective.max_memory_mb), ("latency_ms", objective.latency_slo_ms)):
        if limit is not None and metric != objective.metric:
            extra[metric] = model_for(table, metric, store_path=store_path, model_path=None, say=say, refit=refit)
    return model, extra


def prepare(spec, store, *, model_path: str | None, landmarks: bool, say: Callable[[str], None], refit: bool = False):
    """What ``suggest`` and ``tune`` start from: the store's table, the objective's model and the
    constraint models, and the task's descriptor with its landmarks (measured and stored when the
    model uses them and the store has none)."""
    table = store.load()
    model, extra = models_for(table, spec.objective, store_path=store.path, model_path=model_path, say=say, refit=refit)
    task = task_descriptor(spec)
    if model.uses_landmarks:
        task = with_landmarks(task, table, measure=landmarks, say=say, store=store)
    return table, model, extra, task


def suggest(spec, store, *, hardware_spec=None, device: str = "cpu", model_path: str | None = None,
            landmarks: bool = True, say: Callable[[str], None] = lambda m: None, seed: int = 0, choice=None,
            refit: bool = False) -> Ranked:
    """Rank every method for ``spec``'s task on its hardware (or ``hardware_spec``), from ``store``.

    Zero-shot when the store has no measurement of this task on this hardware; uses them
    when it has. Landmarks of a new task are measured (and stored) when the model uses them.
    """
    hw = hardware_descriptor(hardware_spec or spec.hardware, device=device)
    table, model, extra, task = prepare(spec, store, model_path=model_path, landmarks=landmarks, say=say, refit=refit)
    price = (hardware_spec or spec.hardware).price_per_hour
    return rank(model, task, hw, table, objective=spec.objective, price_per_hour=price, extra_models=extra, seed=seed,
                choice=choice)
