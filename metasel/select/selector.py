"""Ask/tell over a pure step function, Optuna-style.

``step(state, posterior, ...)`` is pure: it looks at a task's joint predictive over its
remaining candidate methods and returns the next method to benchmark or a reason to
stop. :class:`Selector` holds the state and a surrogate (any
:class:`~metasel.surrogate.base.Surrogate`), conditions the surrogate on every told
observation (closed form, no refit), and offers ``ask()``, ``tell()`` and ``best()``.
Failed benchmarks (``oom``, ``unsupported``…) remove the method from the candidates:
they are information, not errors. The loop that drives a selector against a backend is
:func:`metasel.select.loop.run`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from metasel.errors import InputDataError
from metasel.select import acquisition as acq
from metasel.surrogate.base import Posterior, Surrogate


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

    def spent(self, state: SelectorState) -> str | None:
        """Why the budget stops the loop, or None."""
        if self.max_benchmarks is not None and state.num_benchmarks >= self.max_benchmarks:
            return f"the budget of {self.max_benchmarks} benchmarks is spent"
        if self.max_seconds is not None and state.spent_seconds >= self.max_seconds:
            return f"the budget of {self.max_seconds:g} s is spent"
        if self.max_dollars is not None and state.spent_dollars >= self.max_dollars:
            return f"the budget of ${self.max_dollars:g} is spent"
        return None


def step(state: SelectorState, posterior: Posterior, *, direction: str, rule: StopRule,
         acquisition: str | acq.Acquisition = "ei", cost: np.ndarray | None = None,
         p_feasible: np.ndarray | None = None, rng: np.random.Generator | None = None) -> Ask:
    """Choose the next benchmark among ``state.remaining()``.

    Args:
        posterior: the (joint) predictive of log(metric) for ``state.remaining()``, in that order.
        acquisition: a name (``ei``, ``ucb``, ``thompson``, ``pbest``, each optionally
            ``_per_cost``: divided by ``cost``, the predicted seconds of each benchmark) or any
            :data:`~metasel.select.acquisition.Acquisition` callable.
        p_feasible: probability that each candidate runs and meets the constraints.
    """
    remaining = state.remaining()
    if not remaining:
        return Ask(None, "every candidate method has been benchmarked" if not state.same
                   else "every candidate computation has been benchmarked", {})
    spent = rule.spent(state)
    if spent:
        return Ask(None, spent, {})
    rng = rng or np.random.default_rng(0)
    feas = np.ones(len(remaining)) if p_feasible is None else np.asarray(p_feasible, dtype=float)
    best = None
    if state.measured:
        logs = np.log(list(state.measured.values()))
        best = float(logs.max() if direction == "max" else logs.min())
    if cost is None and isinstance(acquisition, str) and acquisition.endswith("_per_cost"):
        raise InputDataError(f"{acquisition} needs the predicted cost of each benchmark")
    chosen = acq.resolve(acquisition)
    ctx = acq.AcquisitionContext(direction, best, feas, np.ones(len(remaining)) if cost is None else np.asarray(cost, float), rng)
    gain = acq.ei(posterior, ctx)  # the stopping rule and the report use the expected gain whatever the acquisition
    p_best = acq.probability_best(posterior.mean, posterior.std, rng=rng, direction=direction,
                                  cov=posterior.joint_covariance())
    score = gain if chosen is acq.ei else chosen(posterior, ctx)
    scores = {m: {"ei": float(e), "p_best": float(p), "p_feasible": float(f), "score": float(s)}
              for m, e, p, f, s in zip(remaining, gain, p_best, feas, score)}
    if best is not None and float(gain.max()) < rule.min_gain:
        return Ask(None, f"expected gain of one more benchmark {float(gain.max()):.2%} < {rule.min_gain:.2%}", scores)
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
        surrogate: a fitted :class:`~metasel.surrogate.base.Surrogate`.
        task_id, hardware_id: the cell row to optimise; ``table`` describes them if new.
        table: descriptors of a new task or hardware (and observations already made), conditioned on.
        candidates: methods to choose among (default: every method the surrogate knows).
        acquisition, rule: see :func:`step`.
        cost: ``method -> predicted seconds`` of benchmarking it (for ``*_per_cost``).
        feasibility: ``method -> P(meets constraints)``.
        measured, failed: benchmarks already made (``method -> value`` / ``method -> status``)
            that the surrogate already holds: they count as spent and are not asked again.
        key: int seed for the random parts (Thompson sampling, P(best)).
        skip_repeats: never benchmark a method that runs the same computation on this task
            as one already benchmarked (``Surrogate.same_computation``).
    """

    def __init__(self, surrogate: Surrogate, task_id: str, hardware_id: str, *, table=None,
                 candidates: Sequence[str] | None = None, acquisition: str | acq.Acquisition = "ei",
                 rule: StopRule | None = None, cost: Mapping[str, float] | None = None,
                 feasibility: Mapping[str, float] | None = None, measured: Mapping[str, float] | None = None,
                 failed: Mapping[str, str] | None = None, key: int = 0, skip_repeats: bool = True):
        self.surrogate = surrogate.condition(table) if table is not None else surrogate
        self.task_id, self.hardware_id = task_id, hardware_id
        acq.resolve(acquisition)  # an unknown name fails here, not at the first ask
        self.acquisition, self.rule = acquisition, rule or StopRule()
        self.cost, self.feasibility = dict(cost or {}), dict(feasibility or {})
        self.rng = np.random.default_rng(key)
        candidates = tuple(candidates or surrogate.methods)
        same = self.surrogate.same_computation(task_id, candidates) if skip_repeats else {}
        self.state = SelectorState(candidates, measured=dict(measured or {}), failed=dict(failed or {}),
                                   same={m: r for m, r in same.items() if m != r})
        self.history: list[tuple[str, str, float | None]] = []

    def _cells(self, methods: Sequence[str]) -> list[tuple[str, str, str]]:
        return [(self.task_id, m, self.hardware_id) for m in methods]

    def ask(self) -> Ask:
        remaining = self.state.remaining()
        if not remaining:
            return step(self.state, Posterior(np.zeros(0), np.zeros(0)), direction=self.surrogate.direction,
                        rule=self.rule)
        post = self.surrogate.predict(self._cells(remaining), joint=True)
        cost = np.array([self.cost.get(m, 1.0) for m in remaining])
        p_ok = 1.0 - self.surrogate.p_fail(self._cells(remaining))  # the failure model: oom, unsupported
        feas = np.array([self.feasibility.get(m, 1.0) for m in remaining]) * p_ok
        return step(self.state, post, direction=self.surrogate.direction, rule=self.rule,
                    acquisition=self.acquisition, cost=cost, p_feasible=feas, rng=self.rng)

    def tell(self, method: str, value: float | None = None, *, status: str = "ok", seconds: float = 0.0,
             dollars: float = 0.0) -> None:
        """Record a benchmark: its metric value (status ``ok``) or its failure status."""
        from metasel.data.table import PerfTable

        if method not in self.state.candidates:
            self.state = replace(self.state, candidates=self.state.candidates + (method,))
        spent = dict(spent_seconds=self.state.spent_seconds + seconds, spent_dollars=self.state.spent_dollars + dollars)
        if status == "ok":
            if value is None or not math.isfinite(value) or value <= 0:
                raise InputDataError(f"tell({method!r}): an ok benchmark needs a positive value, got {value!r}")
            self.state = replace(self.state, measured={**self.state.measured, method: float(value)}, **spent)
            obs = PerfTable.measurement(self.task_id, method, self.hardware_id, self.surrogate.metric, float(value),
                                        source="tell")
            self.surrogate = self.surrogate.condition(obs)
        else:
            self.state = replace(self.state, failed={**self.state.failed, method: status}, **spent)
        self.history.append((method, status, value))

    def best(self) -> Recommendation:
        """The recommendation: the best measured method, or before any measurement, the best predicted
        among the methods that will probably run."""
        direction = self.surrogate.direction
        if self.state.measured:
            pick = (max if direction == "max" else min)(self.state.measured, key=self.state.measured.get)
            p = self.surrogate.predict(self._cells([pick]))
            return Recommendation(pick, True, self.state.measured[pick], float(p.mean[0]), float(p.std[0]))
        pool = [m for m in self.state.candidates if m not in self.state.failed]
        likely = [m for m, p_fail in zip(pool, self.surrogate.p_fail(self._cells(pool))) if 1.0 - p_fail >= 0.5]
        pool = likely or pool  # methods that will probably run, if any
        p = self.surrogate.predict(self._cells(pool))
        i = int(np.argmax(p.mean) if direction == "max" else np.argmin(p.mean))
        return Recommendation(pool[i], False, float(np.exp(p.mean[i])), float(p.mean[i]), float(p.std[i]))
