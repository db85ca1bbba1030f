"""What the harness compares: the :class:`Strategy` protocol, and any surrogate as a strategy.

A strategy is fitted on a fold's training :class:`~metasel.evaluation.problem.Problem`, scores
the methods of its test contexts (zero-shot: higher is better, in oriented log units), and
gives the order in which it would benchmark a test context's methods (the anytime curves).
The baselines (:mod:`metasel.evaluation.baselines`) order by their scores; a
:class:`SurrogateStrategy` orders by running the one active loop
(:func:`metasel.select.loop.run`) against the replay backend, and also gives the
predictive posterior that interval coverage is measured on.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from metasel.evaluation.problem import Problem
from metasel.select import Backend, Selector, StopRule, run
from metasel.surrogate.base import Posterior, Surrogate


@runtime_checkable
class Strategy(Protocol):
    name: str
    zero_shot: bool  # it picks without benchmarking (a row of the zero-shot table); False: an order only

    def fit(self, train: Problem, *, seed: int = 0) -> "Strategy":
        """Fit on a fold's training problem (its ``table`` is the training table)."""

    def scores(self, test: Problem) -> np.ndarray:
        """(contexts, methods) scores of the test problem, higher = better; from features and
        descriptors only (never ``test.score``)."""

    def order(self, test: Problem, i: int, *, scores: np.ndarray, candidates: np.ndarray,
              rng: np.random.Generator, backend: Backend) -> list[int]:
        """Columns of ``candidates`` in the order this strategy would benchmark context ``i``."""

    def posterior(self, test: Problem) -> Posterior | None:
        """Predictive of every (test context, method) cell, context-major, if the strategy has one."""

    # Optional: ``fit_folds(trains, *, seed) -> list[Strategy]``, one fitted strategy per training
    # problem, for a strategy that fits many folds faster together than one by one (the
    # harness uses it when present; each result must be what ``fit`` on that fold gives).


def score_order(scores: np.ndarray, candidates: np.ndarray) -> list[int]:
    """Candidates by decreasing score (stable)."""
    return [int(j) for j in candidates[np.argsort(-scores[candidates], kind="stable")]]


class SurrogateStrategy:
    """Any :class:`~metasel.surrogate.base.Surrogate` as a strategy.

    Args:
        surrogate: an unfitted surrogate (a template: each fold fits it anew).
        name: the strategy's name in the results.
        fit_kwargs: extra keyword arguments of its ``fit`` (e.g. ``calibrate_by``).
        active: order benchmarks by the active loop (else by predicted value).
        skip_repeats: the loop never benchmarks a computation it has measured.

    Zero-shot scores are the oriented predicted means; methods the failure model expects
    to fail (P(fail) > 0.5: ``oom``, ``unsupported``) go last, likeliest failures lowest.
    """

    zero_shot = True

    def __init__(self, surrogate: Surrogate, *, name: str = "metasel", fit_kwargs: dict[str, Any] | None = None,
                 active: bool = True, skip_repeats: bool = True):
        self.template, self.name = surrogate, name
        self.fit_kwargs, self.active, self.skip_repeats = dict(fit_kwargs or {}), active, skip_repeats
        self.model: Surrogate | None = None
        self._cache: tuple[Problem, Posterior, np.ndarray] | None = None
        self.seed = 0

    def fit(self, train: Problem, *, seed: int = 0) -> "SurrogateStrategy":
        self.model = self.template.fit(train.table, key=seed, **self.fit_kwargs)
        self.seed, self._cache = seed, None
        return self

    def fit_folds(self, trains: list[Problem], *, seed: int = 0) -> list["SurrogateStrategy"]:
        """One fitted copy per training problem; a surrogate with ``fit_many`` (the Bayesian one)
        fits them all as one batched program, each fold on its own training table."""
        fit_many = getattr(self.template, "fit_many", None)
        if fit_many is None:
            return [self._copy().fit(t, seed=seed) for t in trains]
        models = fit_many([t.table for t in trains], keys=[seed] * len(trains), **self.fit_kwargs)
        out = []
        for model in models:
            s = self._copy()
            s.model, s.seed = model, seed
            out.append(s)
        return out

    def _copy(self) -> "SurrogateStrategy":
        return SurrogateStrategy(self.template, name=self.name, fit_kwargs=self.fit_kwargs, active=self.active,
                                 skip_repeats=self.skip_repeats)

    def _predict(self, test: Problem) -> tuple[Posterior, np.ndarray]:
        if self._cache is None or self._cache[0] is not test:  # the object, not its id (ids are reused)
            cells = [(t, m, h) for t, h in test.contexts for m in test.methods]
            self._cache = (test, self.model.predict(cells, table=test.table), self.model.p_fail(cells, table=test.table))
        return self._cache[1], self._cache[2]

    def posterior(self, test: Problem) -> Posterior:
        return self._predict(test)[0]

    def scores(self, test: Problem) -> np.ndarray:
        pred, p_fail = self._predict(test)
        sign = 1.0 if self.model.direction == "max" else -1.0
        shape = (len(test.contexts), len(test.methods))
        zero = (sign * pred.mean).reshape(shape)
        p_fail = p_fail.reshape(shape)
        return np.where(p_fail > 0.5, np.nanmin(zero) - 1.0 - p_fail, zero)

    def order(self, test: Problem, i: int, *, scores: np.ndarray, candidates: np.ndarray,
              rng: np.random.Generator, backend: Backend) -> list[int]:
        if not self.active:
            return score_order(scores, candidates)
        t, h = test.contexts[i]
        # test.table holds descriptors only: the loop starts from none of the context's observations
        sel = Selector(self.model, t, h, table=test.table, candidates=[test.methods[j] for j in candidates], rule=StopRule(min_gain=0.0),
                       key=self.seed, skip_repeats=self.skip_repeats)
        return [test.methods.index(m) for m in run(sel, backend).order]
