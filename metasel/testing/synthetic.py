"""Synthetic performance tables with known low-rank-plus-features structure.

Used by the tests (can a model recover what was planted?) and by the scaling
benchmarks. log(value) of task t, method m, hardware h::

    y = x_t . alpha + x_h . gamma + beta_m + (A x_t + delta_t) . v_m + eps,   eps ~ N(0, noise^2)

so part of each task's latent factor is predictable from its features and part is not.
"""

from __future__ import annotations

import numpy as np


def low_rank_table(num_tasks: int = 60, num_methods: int = 8, num_hardware: int = 2, *, rank: int = 2,
                   num_features: int = 5, noise: float = 0.05, density: float = 0.7, seed: int = 0):
    """A PerfTable (metric ``value``, maximised) and the noise-free truth.

    Returns:
        (table, truth) where truth is a frame ``task_id, method, hardware_id, log_value``
        over the full cube (observed or not).
    """
    import pandas as pd

    from metasel.data.table import PerfTable

    rng = np.random.default_rng(seed)
    x_t = rng.normal(size=(num_tasks, num_features))
    x_h = rng.normal(size=(num_hardware, 2))
    alpha = rng.normal(scale=0.5, size=num_features)
    gamma = rng.normal(scale=0.5, size=2)
    beta = rng.normal(scale=0.5, size=num_methods)
    a_mat = rng.normal(scale=0.4, size=(rank, num_features))
    delta = rng.normal(scale=0.3, size=(num_tasks, rank))
    v = rng.normal(size=(num_methods, rank))
    techniques = rng.integers(0, 2, size=(num_methods, 4))
    u = x_t @ a_mat.T + delta
    rows, truth = [], []
    for t in range(num_tasks):
        for h in range(num_hardware):
            for m in range(num_methods):
                y = x_t[t] @ alpha + x_h[h] @ gamma + beta[m] + u[t] @ v[m] + 2.0
                truth.append((f"task{t:04d}", f"m{m:02d}", f"hw{h}", y))
                if rng.random() < density:
                    rows.append({"task_id": f"task{t:04d}", "method": f"m{m:02d}", "hardware_id": f"hw{h}",
                                 "value": float(np.exp(y + rng.normal(scale=noise)))})
    tasks = [{"task_id": f"task{t:04d}", "name": f"task {t}", "spec": {"kind": "synthetic"},
              "features": {f"x{i}": float(x_t[t, i]) for i in range(num_features)}} for t in range(num_tasks)]
    methods = [{"method": f"m{m:02d}", "techniques": {f"k{i}": int(techniques[m, i]) for i in range(4)},
                "description": ""} for m in range(num_methods)]
    hardware = [{"hardware_id": f"hw{h}", "name": f"hw{h}",
                 "specs": {"device": "gpu", "peak_tflops": float(np.exp(x_h[h, 0])), "mem_bw_gbs": float(np.exp(x_h[h, 1]))}}
                for h in range(num_hardware)]
    table = PerfTable(rows, tasks, methods, hardware, directions={"value": "max"}, source="synthetic")
    return table, pd.DataFrame(truth, columns=["task_id", "method", "hardware_id", "log_value"])


def planted_clusters(num_tasks: int = 60, num_methods: int = 4, *, noise: float = 0.1, seed: int = 0):
    """A generic table (metric ``value``, minimised, like runtimes) with two task clusters, each
    with its own best method, told apart by the tasks' features.

    Cluster c (feature ``x0`` near ±2) has method ``m0c`` about 2.7× faster than the others;
    ``x1`` is noise. A selector that reads features should pick the cluster's method; a
    single best method is right for about half the tasks.
    """
    from metasel.data.table import PerfTable

    rng = np.random.default_rng(seed)
    cluster = np.arange(num_tasks) % 2
    x0 = np.where(cluster == 0, -2.0, 2.0) + rng.normal(scale=0.5, size=num_tasks)
    x1 = rng.normal(size=num_tasks)
    base = rng.normal(scale=0.3, size=num_tasks)
    rows = []
    for t in range(num_tasks):
        for m in range(num_methods):
            log_v = 1.0 + base[t] + (-1.0 if m == cluster[t] else 0.1 * m) + rng.normal(scale=noise)
            rows.append({"task_id": f"t{t:03d}", "method": f"m{m:02d}", "hardware_id": "any", "value": float(np.exp(log_v))})
    tasks = [{"task_id": f"t{t:03d}", "name": f"t{t:03d}", "spec": {},
              "features": {"x0": float(x0[t]), "x1": float(x1[t])}} for t in range(num_tasks)]
    methods = [{"method": f"m{m:02d}", "techniques": {}, "description": ""} for m in range(num_methods)]
    return PerfTable(rows, tasks, methods, [{"hardware_id": "any", "name": "any", "specs": {}}],
                     directions={"value": "min"}, source="planted")
