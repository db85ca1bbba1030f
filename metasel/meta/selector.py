"""The active loop: ask → benchmark → tell, Optuna-style, over a pure step function.

``step(state, prediction, ...)`` is pure: it looks at a task's predictive over its
remaining candidate methods and returns the next method to benchmark or a reason to
stop. :class:`Selector` holds the state and a surrogate, conditions the surrogate on
every told observation (closed form, no refit), and offers ``ask()``, ``tell()`` and
``best()``. Failed benchmarks (``oom``, ``unsupported``…) remove the method from the
candidates: they are information, not errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from metasel.meta import acquisition as acq


@dataclass(frozen=True)
class SelectorState:
    """Everything the loop knows about one (task, hardware), never mutated."""

    candidates: tuple[str, ...]
    measured: Mapping[str, float] = field(default_factory=dict)  # method -> metric value
    failed: Mapping[str, str] = field(default_factory=dict)  # method -> status
    spent_seconds: float = 0.0
    spent_dollars: float = 0.0
    same: Mapping[str, str] = field(default_factory=dict)  # method -> the method whose computation it runs here

    @property
    def num_benchmarks(self) -> int:
        return len(self.measured) + len(self.failed)

    def remaining(self) -> tuple[str, ...]:
        """Candidates not benchmarked yet, nor running a computation already benchmarked
        (static batching of one request is plain generation: measuring it again under
        another name can only repeat a measurement, not find a faster method)."""
        done = {self.same.get(m, m) for m in (*self.measured, *self.failed)}
        return tuple(m for m in self.candidates if self.same.get(m, m) not in done)


class Ask(NamedTuple):
    method: str | None  # None: stop
    reason: str
    scores: dict[str, dict[str, float]]


@dataclass(frozen=True)
class StopRule:
    min_gain: float = 0.005  # stop when the best expected relative gain is below this
    max_benchmarks: int | None = None
    max_seconds: float | None = None
    max_dollars: float | None = None


def step(state: SelectorState, mean: np.ndarray, std: np.ndarray, *, direction: str, rule: StopRule,
         acquisition: str = "ei", cost: np.ndarray | None = None, p_feasible: np.ndarray | None = None,
         rng: np.random.Generator | None = None) -> Ask:
    """Choose the next benchmark among ``state.remaining()``.

    Args:
        mean, std: predictive of log(metric) for ``state.remaining()``, in that order.
        acquisition: ``ei``, ``ucb``, ``thompson``, ``pbest``, or one of these with
            ``_per_cost`` (divided by ``cost``, the predicted seconds of each benchmark).
        p_feasible: probability that each candidate meets the constraints.
    """
    remaining = state.remaining()
    if not remaining:
        return Ask(None, "every candidate method has been benchmarked" if not state.same
                   else "every candidate computation has been benchmarked", {})
    if rule.max_benchmarks is not None and state.num_benchmarks >= rule.max_benchmarks:
        return Ask(None, f"the budget of {rule.max_benchmarks} benchmarks is spent", {})
    if rule.max_seconds is not None and state.spent_seconds >= rule.max_seconds:
        return Ask(None, f"the budget of {rule.max_seconds:g} s is spent", {})
    if rule.max_dollars is not None and state.spent_dollars >= rule.max_dollars:
        return Ask(None, f"the budget of ${rule.max_dollars:g} is spent", {})
    rng = rng or np.random.default_rng(0)
    feas = np.ones(len(remaining)) if p_feasible is None else np.asarray(p_feasible, dtype=float)
    best = None
    if state.measured:
        logs = np.log(list(state.measured.values()))
        best = float(logs.max() if direction == "max" else logs.min())
    ei = acq.expected_improvement(mean, std, best, direction=direction) * feas
    p_best = acq.probability_best(mean, std, rng=rng, direction=direction)
    kind, costly, _ = acquisition.partition("_per_cost")
    if kind == "ei":
        score = ei
    elif kind == "ucb":
        score = acq.upper_confidence_bound(mean, std, direction=direction) * feas
    elif kind == "thompson":
        score = acq.thompson_sample(mean, std, rng=rng, direction=direction) + np.log(np.maximum(feas, 1e-12))
    elif kind == "pbest":
        score = p_best * feas
    else:
        raise ValueError(f"acquisition: expected ei, ucb, thompson or pbest (optionally _per_cost), got {acquisition!r}")
    if costly:
        if cost is None:
            raise ValueError(f"{acquisition} needs the predicted cost of each benchmark")
        score = acq.per_cost(score - (score.min() if kind in ("ucb", "thompson") else 0.0), cost)
    scores = {m: {"ei": float(e), "p_best": float(p), "p_feasible": float(f), "score": float(s)}
              for m, e, p, f, s in zip(remaining, ei, p_best, feas, score)}
    if best is not None and float(ei.max()) < rule.min_gain:
        return Ask(None, f"expected gain of one more benchmark {float(ei.max()):.2%} < {rule.min_gain:.2%}", scores)
    choice = remaining[int(np.argmax(score))]
    why = "highest predicted value" if best is None else f"expected gain {scores[choice]['ei']:.2%}"
    return Ask(choice, why, scores)


class Recommendation(NamedTuple):
    method: str
    measured: bool
    value: float  # measured value, or predicted median
    log_mean: float
    log_std: float


class Selector:
    """Ask/tell over a surrogate for one task on one hardware.

    Args:
        surrogate: a fitted :class:`~metasel.surrogate.Surrogate`.
        task_id, hardware_id: the cell row to optimise; ``table`` describes them if new.
        table: descriptors of a new task or hardware (and observations already made).
        candidates: methods to choose among (default: every method the surrogate knows).
        acquisition, rule: see :func:`step`.
        cost: ``method -> predicted seconds`` of benchmarking it (for ``*_per_cost``).
        feasibility: ``method -> P(meets constraints)``.
        key: int seed for the random parts (Thompson sampling, P(best)).
        skip_repeats: never benchmark a method that runs the same computation on this task
            as one already benchmarked (``Surrogate.same_computation``).
    """

    def __init__(self, surrogate, task_id: str, hardware_id: str, *, table=None, candidates: Sequence[str] | None = None,
                 acquisition: str = "ei", rule: StopRule | None = None, cost: Mapping[str, float] | None = None,
                 feasibility: Mapping[str, float] | None = None, key: int = 0, skip_repeats: bool = True):
        self.surrogate = surrogate.condition(table) if table is not None else surrogate
        self.task_id, self.hardware_id = task_id, hardware_id
        self.acquisition, self.rule = acquisition, rule or StopRule()
        self.cost, self.feasibility = dict(cost or {}), dict(feasibility or {})
        self.rng = np.random.default_rng(key)
        candidates = tuple(candidates or surrogate.methods)
        same_as = getattr(self.surrogate, "same_computation", None)
        same = same_as(task_id, candidates) if skip_repeats and same_as is not None else {}
        self.state = SelectorState(candidates, same={m: r for m, r in same.items() if m != r})
        self.history: list[tuple[str, str, float | None]] = []

    def _predict(self, methods: Sequence[str]):
        cells = [(self.task_id, m, self.hardware_id) for m in methods]
        return self.surrogate.predict(cells)

    def _p_ok(self, methods: Sequence[str]) -> np.ndarray:
        """P(the benchmark runs) from the surrogate's failure model (1 where it has none)."""
        p_fail = getattr(self.surrogate, "p_fail", None)
        if p_fail is None or not methods:
            return np.ones(len(methods))
        return 1.0 - p_fail([(self.task_id, m, self.hardware_id) for m in methods])

    def ask(self) -> Ask:
        remaining = self.state.remaining()
        if not remaining:
            return step(self.state, np.zeros(0), np.zeros(0), direction=self.surrogate.direction, rule=self.rule)
        pred = self._predict(remaining)
        cost = np.array([self.cost.get(m, 1.0) for m in remaining])
        feas = np.array([self.feasibility.get(m, 1.0) for m in remaining]) * self._p_ok(remaining)
        return step(self.state, pred.mean, pred.std, direction=self.surrogate.direction, rule=self.rule,
                    acquisition=self.acquisition, cost=cost, p_feasible=feas, rng=self.rng)

    def tell(self, method: str, value: float | None = None, *, status: str = "ok", seconds: float = 0.0,
             dollars: float = 0.0) -> None:
        """Record a benchmark: its metric value (status ``ok``) or its failure status."""
        from metasel.table import PerfTable

        if method not in self.state.candidates:
            self.state = replace(self.state, candidates=self.state.candidates + (method,))
        spent = dict(spent_seconds=self.state.spent_seconds + seconds, spent_dollars=self.state.spent_dollars + dollars)
        if status == "ok":
            if value is None or not math.isfinite(value) or value <= 0:
                raise ValueError(f"tell({method!r}): an ok benchmark needs a positive value, got {value!r}")
            self.state = replace(self.state, measured={**self.state.measured, method: float(value)}, **spent)
            obs = PerfTable([{"task_id": self.task_id, "method": method, "hardware_id": self.hardware_id,
                              self.surrogate.metric: float(value)}], source="tell")
            self.surrogate = self.surrogate.condition(obs)
        else:
            self.state = replace(self.state, failed={**self.state.failed, method: status}, **spent)
        self.history.append((method, status, value))

    def best(self) -> Recommendation:
        """The recommendation: the best measured method, or before any measurement, the best predicted."""
        direction = self.surrogate.direction
        if self.state.measured:
            pick = (max if direction == "max" else min)(self.state.measured, key=self.state.measured.get)
            p = self._predict([pick])
            return Recommendation(pick, True, self.state.measured[pick], float(p.mean[0]), float(p.std[0]))
        pool = [m for m in self.state.candidates if m not in self.state.failed]
        likely = [m for m, ok in zip(pool, self._p_ok(pool)) if ok >= 0.5]
        pool = likely or pool  # methods that will probably run, if any
        p = self._predict(pool)
        i = int(np.argmax(p.mean) if direction == "max" else np.argmin(p.mean))
        return Recommendation(pool[i], False, float(np.exp(p.mean[i])), float(p.mean[i]), float(p.std[i]))
