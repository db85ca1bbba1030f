"""Descriptors of what ``suggest`` and ``tune`` are asked about: the task, its hardware, its landmarks."""

from __future__ import annotations

import hashlib
import json
from typing import Callable


def task_descriptor(spec) -> dict:
    return {"task_id": spec.task_id, "name": spec.name, "spec": spec.task_dict(), "features": {}}


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

    from metasel.data.table import PerfTable

    return PerfTable(pd.DataFrame(columns=["task_id", "method", "hardware_id"]), [task], None,
                     [hardware] if hardware is not None else None)


# Above this many FLOPs (about a minute on a 2-core CPU), suggest/tune do not measure landmarks themselves.
LANDMARK_MAX_FLOPS = 2e12


def with_landmarks(task: dict, table, *, measure: bool, say: Callable[[str], None], store=None) -> dict:
    """``task`` with its landmarks as features: the store's, else measured here (when
    ``measure``, the collector can build its model and one greedy serve of the workload
    costs at most :data:`LANDMARK_MAX_FLOPS`), else none (the surrogate then uses the
    training tasks' mean). Landmarks measured here are written to ``store`` with the task,
    so the next call reads them."""
    from metasel.domain.model import serve_flops
    from metasel.domain.pairs import LANDMARKS
    from metasel.domain.workload import workload_numbers

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
    flops = serve_flops(spec["model"], p_mean, out_len, reqs)
    if not flops <= LANDMARK_MAX_FLOPS:
        say(f"{missing}; measuring them takes one greedy serve of the workload (~{flops / 1e12:.0f} TFLOP), "
            f"too long here: 'metasel landmarks' measures them for stored tasks")
        return task
    from metasel.bench.serve import Unsupported
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
