"""The selection problem a strategy sees: a (contexts × methods) matrix of oriented scores plus features."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from metasel.data.table import descriptor_map

if TYPE_CHECKING:  # pragma: no cover
    from metasel.data.table import PerfTable


@dataclass
class Problem:
    """A (contexts × methods) selection problem.

    Attributes:
        contexts: (task_id, hardware_id) per row.
        methods: method names per column.
        score: (C, M) oriented log performance (higher better), NaN where not observed ok.
        failed: (C, M) True where the cell was run and failed.
        penalty: (C, M) oriented score to charge a failed cell (PAR-style), NaN if none.
        x: (C, d) context features (scaled on training data only).
        method_x: (M, dm) method features.
        text: optional (C, e) embeddings of context descriptions (MetaInf-style inputs).
        method_text: optional (M, e) embeddings of method descriptions.
        table: what a strategy that learns from the raw table may read: for a training problem,
            the training table; for a test problem, the descriptors of its tasks, methods and
            hardware with no observations (nothing measured in a test fold reaches a fit).
        direction: ``max`` or ``min``, the metric's (scores are oriented whichever it is).
    """

    contexts: list[tuple[str, str]]
    methods: list[str]
    score: np.ndarray
    failed: np.ndarray
    penalty: np.ndarray
    x: np.ndarray
    method_x: np.ndarray
    text: np.ndarray | None = None
    method_text: np.ndarray | None = None
    table: "PerfTable | None" = None
    direction: str = "max"

    def candidates(self, i: int) -> np.ndarray:
        return np.flatnonzero(~np.isnan(self.score[i]) | self.failed[i])

    def filled(self) -> np.ndarray:
        """Scores with failures charged their penalty (or the context's worst minus 1)."""
        s = self.score.copy()
        for i in range(len(s)):
            worst = np.nanmin(s[i]) if np.isfinite(s[i]).any() else 0.0
            fail = self.failed[i] & np.isnan(s[i])
            s[i, fail] = np.where(np.isnan(self.penalty[i, fail]), worst - 1.0, self.penalty[i, fail])
        return s

    def normalised(self) -> np.ndarray:
        """Each context's filled scores minus its best: 0 for the best method, negative else."""
        import warnings

        s = self.filled()
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return s - np.nanmax(s, axis=1, keepdims=True)


def make_problem(table, metric: str, contexts, methods: list[str], encoder, *, test: bool = False) -> Problem:
    """The (contexts × methods) problem of ``table``, features from the fitted ``encoder``.

    ``test``: the problem's ``table`` keeps the descriptors only (its observations are what
    the strategies are scored against, never what they learn from).
    """
    direction = table.direction(metric)
    sign = 1.0 if direction == "max" else -1.0
    tasks = descriptor_map(table.tasks, "task_id")
    hws = descriptor_map(table.hardware, "hardware_id")
    mdesc = descriptor_map(table.methods, "method")
    ci = {c: i for i, c in enumerate(contexts)}
    mi = {m: j for j, m in enumerate(methods)}
    score = np.full((len(contexts), len(methods)), np.nan)
    failed = np.zeros_like(score, dtype=bool)
    penalty = np.full_like(score, np.nan)
    long = table.long(metric)
    for t, m, h, v in long[["task_id", "method", "hardware_id", "value"]].itertuples(index=False):
        if (t, h) in ci and m in mi and v > 0:
            score[ci[(t, h)], mi[m]] = sign * math.log(v)
    obs = table.observations
    for t, m, h, v in obs.loc[obs["status"] != "ok", ["task_id", "method", "hardware_id", metric]].itertuples(index=False):
        if (t, h) in ci and m in mi and np.isnan(score[ci[(t, h)], mi[m]]):
            failed[ci[(t, h)], mi[m]] = True
            if v == v and v > 0:
                penalty[ci[(t, h)], mi[m]] = sign * math.log(v)
    x = encoder.contexts([(tasks[t], hws[h]) for t, h in contexts])
    mx = encoder.methods([mdesc[m] for m in methods])
    e = encoder.embed_dims
    text = x[:, -2 * e:] if e and encoder.pca_task is not None and encoder.pca_task.components.shape[0] else None
    mtext = mx[:, -e:] if e and encoder.pca_method is not None and encoder.pca_method.components.shape[0] else None
    own = table.subset(np.zeros(len(table), dtype=bool)) if test else table
    return Problem(list(contexts), list(methods), score, failed, penalty, x, mx, text, mtext, own, direction)
