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
from metasel.select.choice import Choice, choice_scores, failure_values
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
        choice: what the zero-shot pick maximises (:class:`~metasel.select.choice.Choice`:
            the expected value by default, failures included at the value the training
            problem records for them — a PAR10 penalty, zero throughput).
    """

    zero_shot = True

    def __init__(self, surrogate: Surrogate, *, name: str = "metasel", fit_kwargs: dict[str, Any] | None = None,
                 active: bool = True, skip_repeats: bool = True, choice: Choice = Choice()):
        self.template, self.name = surrogate, name
        self.fit_kwargs, self.active, self.skip_repeats = dict(fit_kwargs or {}), active, skip_repeats
        self.choice = choice
        self.model: Surrogate | None = None
        self._cache: tuple[Problem, Posterior, np.ndarray] | None = None
        self.seed = 0
        self.failure_value: dict[str, float] = {}

    def fit(self, train: Problem, *, seed: int = 0) -> "SurrogateStrategy":
        self.model = self.template.fit(train.table, key=seed, **self.fit_kwargs)
        self.seed, self._cache = seed, None
        self._failures_of(train)
        return self

    def _failures_of(self, train: Problem) -> None:
        direction = self.model.direction
        self.failure_value = dict(zip(train.methods, failure_values(train.penalty, direction)))
        values = np.array(list(self.failure_value.values()))
        self._failure_default = 0.0 if direction == "max" else (float(np.nanmedian(values)) if np.isfinite(values).any()
                                                                else float("nan"))

    def fit_folds(self, trains: list[Problem], *, seed: int = 0) -> list["SurrogateStrategy"]:
        """One fitted copy per training problem; a surrogate with ``fit_many`` (the Bayesian one)
        fits them all as one batched program, each fold on its own training table."""
        fit_many = getattr(self.template, "fit_many", None)
        if fit_many is None:
            return [self._copy().fit(t, seed=seed) for t in trains]
        models = fit_many([t.table for t in trains], keys=[seed] * len(trains), **self.fit_kwargs)
        out = []
        for model, train in zip(models, trains):
            s = self._copy()
            s.model, s.seed = model, seed
            s._failures_of(train)
            out.append(s)
        return out

    def _copy(self) -> "SurrogateStrategy":
        return SurrogateStrategy(self.template, name=self.name, fit_kwargs=self.fit_kwargs, active=self.active,
                                 skip_repeats=self.skip_repeats, choice=self.choice)

    def _predict(self, test: Problem) -> tuple[Posterior, np.ndarray]:
        if self._cache is None or self._cache[0] is not test:  # the object, not its id (ids are reused)
            cells = [(t, m, h) for t, h in test.contexts for m in test.methods]
            self._cache = (test, self.model.predict(cells, table=test.table), self.model.p_fail(cells, table=test.table))
        return self._cache[1], self._cache[2]

    def posterior(self, test: Problem) -> Posterior:
        return self._predict(test)[0]

    def scores(self, test: Problem) -> np.ndarray:
        pred, p_fail = self._predict(test)
        shape = (len(test.contexts), len(test.methods))
        fail = np.array([self.failure_value.get(m, self._failure_default) for m in test.methods])
        return choice_scores(pred.mean.reshape(shape), pred.std.reshape(shape), p_fail.reshape(shape),
                             direction=self.model.direction, failure_value=fail, choice=self.choice, seed=self.seed)

    def order(self, test: Problem, i: int, *, scores: np.ndarray, candidates: np.ndarray,
              rng: np.random.Generator, backend: Backend) -> list[int]:
        if not self.active:
            return score_order(scores, candidates)
        t, h = test.contexts[i]
        # test.table holds descriptors only: the loop starts from none of the context's observations
        sel = Selector(self.model, t, h, table=test.table, candidates=[test.methods[j] for j in candidates], rule=StopRule(min_gain=0.0),
                       key=self.seed, skip_repeats=self.skip_repeats)
        return [test.methods.index(m) for m in run(sel, backend).order]


def row_ranks(scores: np.ndarray) -> np.ndarray:
    """Each row's scores as ranks in [0, 1] (1 = best; ties share the mean rank; -inf = worst)."""
    from scipy.stats import rankdata

    s = np.where(np.isfinite(scores), scores, -np.inf)
    r = rankdata(s, axis=1, method="average") - 1.0
    return r / max(s.shape[1] - 1, 1)


class EnsembleStrategy:
    """A zero-shot pick by the mean of several fitted strategies' per-context ranks.

    Every member scores the test contexts; each context's scores become ranks in [0, 1],
    and the ensemble's score is their equal-weight mean (ties broken by the first member's
    score). It benchmarks in that order. Members are fitted on the same training problem;
    one with ``fit_folds`` (metasel's surrogate) fits a chunk of folds together.
    """

    zero_shot = True

    def __init__(self, members: list, *, name: str = "metasel_ensemble"):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members, self.name = list(members), name

    def fit(self, train: Problem, *, seed: int = 0) -> "EnsembleStrategy":
        return EnsembleStrategy([m.fit(train, seed=seed) for m in self._fresh()], name=self.name)

    def fit_folds(self, trains: list[Problem], *, seed: int = 0) -> list["EnsembleStrategy"]:
        per_member = []
        for m in self._fresh():
            if hasattr(m, "fit_folds"):
                per_member.append(m.fit_folds(trains, seed=seed))
            else:
                per_member.append([_fresh(m).fit(t, seed=seed) for t in trains])
        return [EnsembleStrategy(list(fitted), name=self.name) for fitted in zip(*per_member)]

    def _fresh(self) -> list:
        return [_fresh(m) for m in self.members]

    def scores(self, test: Problem) -> np.ndarray:
        per = [m.scores(test) for m in self.members]
        first = np.where(np.isfinite(per[0]), per[0], np.nan)
        spread = np.nanmax(np.abs(first)) if np.isfinite(first).any() else 1.0
        tie = np.nan_to_num(first / (spread or 1.0), nan=-1.0) * 1e-6  # the first member breaks ties
        return np.mean([row_ranks(s) for s in per], axis=0) + tie

    def order(self, test: Problem, i: int, *, scores: np.ndarray, candidates: np.ndarray,
              rng: np.random.Generator, backend: Backend) -> list[int]:
        return score_order(scores[i], candidates)

    def posterior(self, test: Problem) -> None:
        return None


def _fresh(strategy):
    """An unfitted copy of a strategy (a fitted one is never refitted in place)."""
    import copy

    if isinstance(strategy, SurrogateStrategy):
        return strategy._copy()
    return copy.copy(strategy)
