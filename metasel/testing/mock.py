"""A surrogate with a hand-set posterior, to test acquisitions and the selector against hand computations
(as BoTorch's ``MockModel(MockPosterior(mean, variance))``)."""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from metasel.surrogate.base import Posterior


class MockSurrogate:
    """Fixed log-means and stds per method; ``condition`` pins told methods at their value (std 1e-6).

    Args:
        means, stds: ``method -> log mean`` / ``method -> std`` (the same for every task and hardware).
        direction: ``max`` or ``min``.
        same: ``method -> representative`` returned by ``same_computation``.
        p_fail: ``method -> P(fail)``.
        correlation: the within-task correlation of every pair of methods in the joint posterior.
    """

    def __init__(self, means: Mapping[str, float], stds: Mapping[str, float], direction: str = "max", *,
                 metric: str = "throughput_tok_s", same: Mapping[str, str] | None = None,
                 p_fail: Mapping[str, float] | None = None, correlation: float = 0.0,
                 pinned: Mapping[str, float] | None = None):
        self.means, self.stds, self._direction, self.metric = dict(means), dict(stds), direction, metric
        self.same, self.fail, self.correlation = dict(same or {}), dict(p_fail or {}), correlation
        self.pinned = dict(pinned or {})

    @property
    def direction(self) -> str:
        return self._direction

    @property
    def methods(self) -> list[str]:
        return sorted(self.means)

    @property
    def uses_landmarks(self) -> bool:
        return False

    def fit(self, table, *, key) -> "MockSurrogate":
        return MockSurrogate(self.means, self.stds, self._direction, metric=self.metric, same=self.same,
                             p_fail=self.fail, correlation=self.correlation, pinned=self.pinned)

    def predict(self, cells, *, table=None, joint: bool = False) -> Posterior:
        cells = list(cells.itertuples(index=False) if hasattr(cells, "itertuples") else cells)
        mean = np.array([self.pinned.get(m, self.means[m]) for _, m, _ in cells], dtype=float)
        std = np.array([1e-6 if m in self.pinned else self.stds[m] for _, m, _ in cells], dtype=float)
        if not joint or not cells:
            return Posterior(mean, std)
        groups: dict = {}
        for i, (t, _, h) in enumerate(cells):
            groups.setdefault((t, h), []).append(i)
        blocks = []
        for idx in groups.values():
            idx = np.asarray(idx)
            corr = np.full((len(idx), len(idx)), self.correlation)
            np.fill_diagonal(corr, 1.0)
            blocks.append((idx, corr * np.outer(std[idx], std[idx])))
        return Posterior(mean, std, tuple(blocks))

    def condition(self, observations) -> "MockSurrogate":
        long = observations.long(self.metric)
        pinned = {**self.pinned, **{m: float(np.log(v)) for m, v in zip(long["method"], long["value"])}}
        return MockSurrogate(self.means, self.stds, self._direction, metric=self.metric, same=self.same,
                             p_fail=self.fail, correlation=self.correlation, pinned=pinned)

    def p_fail(self, cells, *, table=None) -> np.ndarray:
        return np.array([self.fail.get(m, 0.0) for _, m, _ in cells], dtype=float)

    def same_computation(self, task_id: str, methods: Iterable[str], *, table=None) -> dict[str, str]:
        return {m: self.same.get(m, m) for m in methods}
