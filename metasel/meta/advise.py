"""What ``metasel suggest`` and ``metasel tune`` share: descriptors of a task and its
hardware, a model for a metric (loaded, or fitted and cached), and the ranked table."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from metasel.errors import InputDataError


def task_descriptor(spec) -> dict:
    return {"task_id": spec.task_id, "name": spec.name, "spec": spec.task_dict(), "features": {}}


# Above this many FLOPs (about a minute on a 2-core CPU), suggest/tune do not measure landmarks themselves.
LANDMARK_MAX_FLOPS = 2e12


def with_landmarks(task: dict, table, *, measure: bool, say: Callable[[str], None], store=None) -> dict:
    """``task`` with its landmarks as features: the store's, else measured here (when
    ``measure``, the collector can build its model and one greedy serve of the workload
    costs at most :data:`LANDMARK_MAX_FLOPS`), else none (the surrogate then uses the
    training tasks' mean). Landmarks measured here are written to ``store`` with the task,
    so the next call reads them."""
    import json

    from metasel.meta.features import LANDMARKS, model_numbers, workload_numbers

    rows = table.tasks.loc[table.tasks["task_id"] == task["task_id"], "features"] if table is not None else []
    stored = json.loads(rows.iloc[0] or "{}") if len(rows) else {}
    if all(k in stored for k in LANDMARKS):
        return {**task, "features": {**task.get("features", {}), **stored}}
    from metasel.bench.landmarks import buildable

    missing = "landmarks: none for this task (speculative decoding is predicted from the training tasks' mean)"
    if not measure or not buildable(task["spec"]):
        say(missing)
        return task
    spec = task["spec"]
    p_mean, _, out_len, _, reqs = workload_numbers(spec["workload"])
    flops = 2.0 * model_numbers(spec["model"])["active_params"] * (p_mean + out_len) * reqs
    if not flops <= LANDMARK_MAX_FLOPS:
        say(f"{missing}; measuring them takes one greedy serve of the workload (~{flops / 1e12:.0f} TFLOP), "
            f"too long here: 'metasel landmarks' measures them for stored tasks")
        return task
    from metasel.bench.backend import Unsupported
    from metasel.bench.landmarks import task_landmarks

    try:
        lm = task_landmarks(task["task_id"], spec)
    except ImportError as exc:  # torch and transformers are the optional 'bench' extra
        say(f"landmarks: not measured ({exc}; pip install 'metasel[bench]')")
        return task
    except Unsupported as exc:
        say(f"landmarks: not measured ({exc})")
        return task
    seconds = lm.pop("landmark_s")
    task = {**task, "features": {**task.get("features", {}), **lm}}
    if store is not None:
        store.append(descriptor_table(task))
    say(f"landmarks: measured in {seconds:.1f} s: prompt lookup {lm['lookup_tokens_per_pass']:.2f}, "
        f"assisted decoding {lm['draft_tokens_per_pass']:.2f} tokens per forward pass"
        + ("; stored with the task" if store is not None else ""))
    return task


def hardware_descriptor(spec_hw, *, device: str = "cpu") -> dict:
    """``hardware: auto`` probes this machine; explicit specs become a descriptor with a stable id."""
    if spec_hw.auto:
        from metasel.bench.hardware import probe

        return probe(threads=spec_hw.threads, device=device)
    specs = {k: v for k, v in {
        "device": spec_hw.device or "other", "count": spec_hw.count, "memory_gb": spec_hw.memory_gb,
        "peak_tflops": spec_hw.peak_tflops, "mem_bw_gbs": spec_hw.mem_bw_gbs, "cores": spec_hw.cores,
        "threads": spec_hw.threads}.items() if v is not None}
    hid = "hw-" + hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()[:12]
    return {"hardware_id": hid, "name": spec_hw.name or hid, "specs": specs, "price_per_hour": spec_hw.price_per_hour}


def descriptor_table(task: dict, hardware: dict | None = None):
    """A table with no observations that describes one task (and one hardware)."""
    import pandas as pd

    from metasel.table import PerfTable

    return PerfTable(pd.DataFrame(columns=["task_id", "method", "hardware_id"]), [task], None,
                     [hardware] if hardware is not None else None)


def model_for(table, metric: str, *, store_path: Path | None, model_path: str | None,
              say: Callable[[str], None], steps: int = 2000, seed: int = 0):
    """Load ``model_path``; else a cached model of this store's data; else fit one and cache it."""
    from metasel.surrogate import Surrogate

    if model_path:
        model = Surrogate.load(model_path)
        if model.metric != metric:
            raise InputDataError(f"{model_path}: models {model.metric!r}, but {metric!r} is needed")
        say(f"model: loaded {model_path}")
        return model
    digest = hashlib.sha256("\n".join(sorted(table.observations["obs_id"])).encode()).hexdigest()[:16]
    cache_dir = (store_path.parent if store_path else Path(".")) / "models"
    cached = cache_dir / f"{metric}-{digest}.metasel"
    if cached.exists():
        try:
            model = Surrogate.load(cached)
        except InputDataError as exc:  # e.g. written by an older metasel: fit again below
            say(f"model: not using {cached} ({exc})")
        else:
            say(f"model: loaded {cached} (fitted earlier on this store's data)")
            return model
    from dataclasses import replace

    from metasel.errors import require
    from metasel.surrogate import TrainConfig

    require("jax", feature="fitting a model", extra="surrogate")
    say(f"model: no model of this store's data for {metric}; fitting one (saved to {cached})")
    model = Surrogate(metric, config=replace(TrainConfig(), steps=steps)).fit(table, key=seed)
    cache_dir.mkdir(parents=True, exist_ok=True)
    model.save(cached)
    return model


@dataclass
class Ranked:
    rows: list[dict[str, Any]]
    next_method: str | None
    next_reason: str
    metric: str
    direction: str


def rank(model, task: dict, hardware: dict, table, *, objective, price_per_hour: float | None,
         extra_models: dict | None = None, seed: int = 0) -> Ranked:
    """Every method's prediction for the task on the hardware, measured ones included."""
    from metasel.meta import acquisition as acq
    from metasel.meta.selector import Selector, StopRule

    tid, hid = task["task_id"], hardware["hardware_id"]
    desc = descriptor_table(task, hardware)
    own = table.filter(tasks=[tid], hardware=[hid]) if len(table) else None
    cond_table = own if own is not None and len(own) else desc
    model = model.condition(desc).condition(cond_table)
    failed: dict[str, str] = {}
    measured: dict[str, float] = {}
    if own is not None and len(own):
        o = own.observations
        for m, s in o.loc[o["status"] != "ok", ["method", "status"]].itertuples(index=False):
            failed.setdefault(m, s)
        for m, v in own.long(model.metric)[["method", "value"]].itertuples(index=False):
            measured[m] = float(v)
            failed.pop(m, None)
    methods = model.methods
    pred = model.predict([(tid, m, hid) for m in methods])
    lo, hi = pred.interval(0.9)
    rng = np.random.default_rng(seed)
    p_best = acq.probability_best(pred.mean, pred.std, rng=rng, direction=model.direction)
    p_feas = np.ones(len(methods))
    for metric, limit in (("peak_mem_mb", objective.max_memory_mb), ("latency_ms", objective.latency_slo_ms)):
        if limit is not None and extra_models and metric in extra_models:
            em = extra_models[metric].condition(desc).condition(cond_table)
            ep = em.predict([(tid, m, hid) for m in methods])
            p_feas *= acq.probability_feasible(ep.mean, ep.std, limit)
    constraint_feas = dict(zip(methods, p_feas.tolist()))
    p_ok = 1.0 - model.p_fail([(tid, m, hid) for m in methods])  # failures of each method on similar contexts
    for i, m in enumerate(methods):
        if m in failed:
            p_feas[i] = 0.0
        elif m not in measured:
            p_feas[i] *= p_ok[i]
    same = model.same_computation(tid, methods)  # e.g. static batching of one request = plain generation
    rows = []
    for i, m in enumerate(methods):
        med = float(np.exp(pred.mean[i]))
        row = {"method": m, "predicted": med, "low90": float(np.exp(lo[i])), "high90": float(np.exp(hi[i])),
               "log_std": float(pred.std[i]), "p_best": float(p_best[i]), "p_feasible": float(p_feas[i]),
               "measured": measured.get(m), "status": failed.get(m, "ok" if m in measured else ""),
               "same_as": same[m] if same[m] != m else None}
        if price_per_hour is not None and model.metric == "throughput_tok_s":
            tok_s = measured.get(m, med)
            row["usd_per_mtok"] = price_per_hour / (tok_s * 3600.0) * 1e6
        rows.append(row)
    sign = -1.0 if model.direction == "max" else 1.0
    rows.sort(key=lambda r: (r["p_feasible"] < 0.5,
                             sign * (r["measured"] if r["measured"] is not None else r["predicted"])))
    from dataclasses import replace

    sel = Selector(model, tid, hid, candidates=methods, rule=StopRule(), key=seed,
                   feasibility=constraint_feas)  # the selector applies the failure model itself
    sel.state = replace(sel.state, measured=measured, failed=failed)
    ask = sel.ask()
    return Ranked(rows, ask.method, ask.reason, model.metric, model.direction)
