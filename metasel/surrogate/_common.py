"""What the surrogates share: cell frames, the descriptor catalogue, the failure model, keys."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from metasel.data.table import descriptor_map
from metasel.errors import InputDataError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from metasel.data.table import PerfTable

CELL_COLUMNS = ("task_id", "method", "hardware_id")
FOREST_MIN = 5  # failures and successes of a method each, for a forest failure model


def cells_frame(cells) -> "pd.DataFrame":
    """Cells as a frame of ``task_id, method, hardware_id`` strings (from a frame or tuples)."""
    import pandas as pd

    frame = cells if isinstance(cells, pd.DataFrame) else pd.DataFrame(list(cells), columns=list(CELL_COLUMNS))
    missing = [c for c in CELL_COLUMNS if c not in frame.columns]
    if missing:
        raise InputDataError(f"cells: missing column {missing[0]!r}; expected task_id, method, hardware_id")
    return frame[list(CELL_COLUMNS)].astype(str).reset_index(drop=True)


def context_keys(frame: "pd.DataFrame") -> list[tuple[str, str]]:
    """The distinct (task, hardware) pairs of a cells frame, in first-seen order."""
    return list(dict.fromkeys(zip(frame["task_id"], frame["hardware_id"])))


def cell_positions(frame: "pd.DataFrame", ctx_keys: list[tuple[str, str]], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's row in ``ctx_keys`` and column in ``names``."""
    ci = {k: i for i, k in enumerate(ctx_keys)}
    mi = {m: j for j, m in enumerate(names)}
    return (np.array([ci[k] for k in zip(frame["task_id"], frame["hardware_id"])], dtype=int),
            np.array([mi[m] for m in frame["method"]], dtype=int))


@dataclass(frozen=True)
class Catalog:
    """Descriptors a model knows: task, hardware and method id -> record."""

    tasks: dict
    hardware: dict
    methods: dict

    @classmethod
    def of(cls, table: "PerfTable", *, real_only: bool = False) -> "Catalog":
        return cls(descriptor_map(table.tasks, "task_id", real_only=real_only),
                   descriptor_map(table.hardware, "hardware_id", real_only=real_only),
                   descriptor_map(table.methods, "method", real_only=real_only))

    def merged(self, table: "PerfTable | None") -> "Catalog":
        """This catalogue with the real (not placeholder) descriptors of ``table`` added."""
        if table is None:
            return self
        new = Catalog.of(table, real_only=True)
        return Catalog({**self.tasks, **new.tasks}, {**self.hardware, **new.hardware}, {**self.methods, **new.methods})

    def contexts(self, keys) -> list[tuple[dict, dict]]:
        """(task, hardware) descriptor pairs of context keys; a clear error for an unknown one."""
        for t, h in keys:
            if t not in self.tasks:
                raise InputDataError(f"no descriptor for task {t!r}: pass a table (or spec) that describes it")
            if h not in self.hardware:
                raise InputDataError(f"no descriptor for hardware {h!r}: pass a table that describes it")
        return [(self.tasks[t], self.hardware[h]) for t, h in keys]

    def method_list(self, names) -> list[dict]:
        for m in names:
            if m not in self.methods:
                raise InputDataError(f"no descriptor for method {m!r}: pass a table that describes it")
        return [self.methods[m] for m in names]

    def same_computation(self, task_id: str, methods) -> dict[str, str]:
        """``method -> representative`` on this task (:func:`metasel.domain.techniques.same_computation`)."""
        from metasel.domain.techniques import same_computation

        methods = list(methods)
        if task_id not in self.tasks:
            raise InputDataError(f"no descriptor for task {task_id!r}: pass a table (or spec) that describes it")
        same = same_computation(self.tasks[task_id], {m: self.methods[m] for m in methods if m in self.methods})
        return {m: same.get(m, m) for m in methods}


@dataclass
class Failures:
    """P(a method's benchmark fails: ``oom``, ``unsupported``, a timeout ...) given the context's
    encoded features, per method, fitted on the contexts where the method was attempted: an
    L2-regularised logistic regression (numpy Newton steps) or — with ``forests`` (the
    default; ``TrainConfig(failure_forests=False)`` turns it off), where the method both
    failed and succeeded at least ``FOREST_MIN`` times each — a random forest classifier
    (:class:`~metasel.surrogate._forest.Forest`, 100 trees, each leaf smoothed with a tenth of
    a pseudo-run at the method's failure rate) when its out-of-bag log loss is lower than the
    regression's 5-fold cross-validated one (a choice made on the training data: the forest
    wins on many runs and tangled features, the regression on few runs and a linear border).
    A method that never failed, or always did, gets its smoothed rate.
    Recorded failures of the very cell are certain (``failed_cells``)."""

    methods: list[str]
    weights: np.ndarray  # (methods, 1 + context_dim): bias, then feature weights
    overall: float  # smoothed failure rate over every attempted cell (methods never attempted)
    failed_cells: dict  # (task, hw) -> {method: status}
    forests: dict = field(default_factory=dict)  # method index -> Forest (replaces its logistic regression)

    def p_fail(self, xq: np.ndarray, names: list[str]) -> np.ndarray:
        """(queries, len(names)) probabilities of failure from the context features ``xq``."""
        out = np.full((len(xq), len(names)), self.overall)
        index = {m: j for j, m in enumerate(self.methods)}
        xb = np.concatenate([np.ones((len(xq), 1)), xq], axis=1)
        for i, m in enumerate(names):
            j = index.get(m)
            if j in self.forests:
                out[:, i] = self.forests[j].predict(xq)
            elif j is not None:
                out[:, i] = _sigmoid(xb @ self.weights[j])
        return out

    def with_failures(self, observations: "PerfTable") -> "Failures":
        """A copy that also holds the recorded failures of ``observations``."""
        obs = observations.observations
        failed = obs["status"].to_numpy() != "ok"
        if not failed.any():
            return self
        cells = {k: dict(v) for k, v in self.failed_cells.items()}
        for t, m, h, st in obs.loc[failed, ["task_id", "method", "hardware_id", "status"]].itertuples(index=False):
            cells.setdefault((t, h), {})[m] = st
        return Failures(self.methods, self.weights, self.overall, cells, self.forests)

    @classmethod
    def fit(cls, table: "PerfTable", encode, catalog: Catalog, *, dim: int, l2: float = 1.0, seed: int = 0,
            forests: bool = True) -> "Failures":
        """Attempted / failed matrices over every described context of ``table``; ``encode`` maps
        (task, hardware) descriptor pairs to ``dim`` features; ``forests``: let a forest compete
        with each method's logistic regression (else logistic only)."""
        with one_blas_thread():
            return cls._fit(table, encode, catalog, dim=dim, l2=l2, seed=seed, forests=forests)

    @classmethod
    def _fit(cls, table, encode, catalog, *, dim, l2, seed, forests) -> "Failures":
        from metasel.surrogate._forest import Forest

        obs = table.observations
        keys = [k for k in dict.fromkeys(zip(obs["task_id"], obs["hardware_id"]))
                if k[0] in catalog.tasks and k[1] in catalog.hardware]
        methods = sorted(obs["method"].unique())
        ci = {k: i for i, k in enumerate(keys)}
        mi = {m: j for j, m in enumerate(methods)}
        attempted = np.zeros((len(keys), len(methods)), dtype=bool)
        ok = np.zeros_like(attempted)
        status: dict = {}  # (i, j) -> a failure status
        for t, m, h, st in obs[["task_id", "method", "hardware_id", "status"]].itertuples(index=False):
            i = ci.get((t, h))
            if i is None:
                continue
            attempted[i, mi[m]] = True
            if st == "ok":
                ok[i, mi[m]] = True
            else:
                status[i, mi[m]] = st
        failed = np.zeros_like(attempted)
        failed_cells: dict = {}
        for (i, j), st in status.items():
            if not ok[i, j]:  # a cell that also succeeded is not a failure
                failed[i, j] = True
                failed_cells.setdefault(keys[i], {})[methods[j]] = st
        x = np.asarray(encode(catalog.contexts(keys)), np.float64) if keys else np.zeros((0, dim))
        overall = float((failed.sum() + 0.5) / (attempted.sum() + 1.0))
        weights = np.zeros((len(methods), 1 + x.shape[1]))
        trees = {}
        for j in range(len(methods)):
            rows = np.flatnonzero(attempted[:, j])
            y = failed[rows, j].astype(float)
            rate = (y.sum() + overall) / (len(y) + 1.0)
            weights[j, 0] = math.log(rate / (1.0 - rate))
            if 0 < y.sum() < len(y):
                start = weights[j].copy()
                weights[j] = _logistic(x[rows], y, start, l2)
                if forests and min(y.sum(), len(y) - y.sum()) >= FOREST_MIN and x.shape[1]:
                    forest, oob = Forest.fit_oob(x[rows], y.astype(int), seed=seed + j, prior=rate)
                    if _log_loss(y, oob) < _logistic_cv_loss(x[rows], y, start, l2, seed=seed + j):
                        trees[j] = forest
        return cls(methods, weights, overall, failed_cells, trees)


def p_fail_cells(failures: "Failures | None", frame: "pd.DataFrame", catalog: Catalog, encode) -> np.ndarray:
    """P(fail) of each cell of ``frame``; a recorded failure of the very cell is certain."""
    if failures is None:
        return np.zeros(len(frame))
    keys = context_keys(frame)
    names = sorted(set(frame["method"]))
    p = failures.p_fail(np.asarray(encode(catalog.contexts(keys)), np.float64), names)
    out = p[cell_positions(frame, keys, names)]
    hit = [m in failures.failed_cells.get((t, h), ()) for t, m, h in frame.itertuples(index=False)]
    return np.where(hit, 1.0, out)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean log loss of probabilities ``p`` (NaN: no held-out prediction, left out)."""
    ok = np.isfinite(p)
    p = np.clip(p[ok], 1e-3, 1.0 - 1e-3)
    return float(-np.mean(y[ok] * np.log(p) + (1.0 - y[ok]) * np.log(1.0 - p))) if ok.any() else math.inf


def _logistic_cv_loss(x: np.ndarray, y: np.ndarray, w0: np.ndarray, l2: float, *, seed: int, k: int = 5) -> float:
    """The logistic regression's k-fold cross-validated log loss."""
    fold = np.random.default_rng(seed).permutation(len(y)) % k
    p = np.full(len(y), np.nan)
    xb = np.concatenate([np.ones((len(x), 1)), x], axis=1)
    for f in range(k):
        out = fold == f
        if out.any() and (~out).any() and 0 < y[~out].sum() < (~out).sum():
            p[out] = _sigmoid(xb[out] @ _logistic(x[~out], y[~out], w0, l2))
        elif out.any():
            p[out] = (y[~out].sum() + 0.5) / ((~out).sum() + 1.0)
    return _log_loss(y, p)


def _logistic(x: np.ndarray, y: np.ndarray, w0: np.ndarray, l2: float, iters: int = 50) -> np.ndarray:
    """L2-regularised logistic regression (the bias unpenalised) by Newton's method."""
    xb = np.concatenate([np.ones((len(x), 1)), x], axis=1)
    pen = np.full(xb.shape[1], l2)
    pen[0] = 1e-6
    w = w0.copy()
    for _ in range(iters):
        p = _sigmoid(xb @ w)
        grad = xb.T @ (p - y) + pen * w
        hess = (xb * (p * (1.0 - p))[:, None]).T @ xb + np.diag(pen)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def one_blas_thread():
    """A context in which numpy's BLAS (OpenBLAS) uses one thread. The failure model's linear
    algebra is on small matrices (Newton steps over about a hundred features), where a second
    thread gains nothing; on a machine whose cores are busy with other work, OpenBLAS's waiting
    threads made its fit about 3x slower (15 s against 5 s on CSP-Minizinc-Time-2016)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; without it the fit runs as numpy is set up
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def seed_of(key) -> int:
    """A non-negative int seed from an int or a jax PRNG key (the edge accepts both)."""
    if isinstance(key, (int, np.integer)):
        return int(key) % (2**32)
    import jax

    try:
        data = jax.random.key_data(key)
    except (TypeError, ValueError):
        data = key
    return int(np.asarray(data).ravel()[-1]) % (2**32)
