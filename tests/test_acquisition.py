"""Acquisitions and the selector against hand-computed answers, with a mock surrogate."""

import math

import numpy as np
import pytest

from metasel.meta import acquisition as acq
from metasel.meta.selector import Selector, SelectorState, StopRule, step
from metasel.surrogate.model import Prediction


def test_expected_improvement_hand_values():
    # mu = best: sd * phi(0); mu = best + 1, sd = 1: Phi(1) + phi(1)
    ei = acq.expected_improvement([1.0, 2.0, 0.0], [1.0, 1.0, 1e-9], 1.0)
    assert ei[0] == pytest.approx(0.3989423, abs=1e-6)
    assert ei[1] == pytest.approx(0.8413447 + 0.2419707, abs=1e-6)
    assert ei[2] == pytest.approx(0.0, abs=1e-9)
    # minimisation mirrors: a mean of 0 against best 1 is the improving one
    ei_min = acq.expected_improvement([0.0, 2.0], [1.0, 1.0], 1.0, direction="min")
    assert ei_min[0] == pytest.approx(0.8413447 + 0.2419707, abs=1e-6) and ei_min[1] < 0.1


def test_pi_ucb_feasibility_cost():
    assert acq.probability_of_improvement([1.0], [1.0], 0.0)[0] == pytest.approx(0.8413447, abs=1e-6)
    assert acq.upper_confidence_bound([1.0, 0.0], [0.5, 1.0], beta=4.0).tolist() == [2.0, 2.0]
    assert acq.upper_confidence_bound([1.0], [0.5], direction="min", beta=1.0)[0] == pytest.approx(-0.5)
    # P(mem <= 100) when log mem ~ N(log 100, 1) is one half
    assert acq.probability_feasible([math.log(100.0)], [1.0], 100.0)[0] == pytest.approx(0.5)
    assert acq.probability_feasible([0.0], [1.0], None)[0] == 1.0
    assert acq.per_cost([1.0, 1.0], [2.0, 4.0]).tolist() == [0.5, 0.25]


def test_probability_best_and_thompson():
    rng = np.random.default_rng(0)
    p = acq.probability_best([0.0, 0.0, -10.0], [1.0, 1.0, 0.1], rng=rng, num_samples=20000)
    assert p[0] == pytest.approx(0.5, abs=0.02) and p[2] == 0.0 and p.sum() == pytest.approx(1.0)
    # perfectly correlated candidates: the higher mean always wins
    p = acq.probability_best([0.0, 0.1], [1.0, 1.0], rng=rng, cov=[[1.0, 1.0], [1.0, 1.0]])
    assert p.tolist() == [0.0, 1.0]
    draw = acq.thompson_sample([0.0, 100.0], [1e-6, 1e-6], rng=rng, direction="min")
    assert int(np.argmax(draw)) == 0


class MockSurrogate:
    """A hand-set predictive per method; ``condition`` pins a measured method to its value."""

    metric = "throughput_tok_s"

    def __init__(self, means, stds, direction="max", pinned=None):
        self.means, self.stds, self.direction = dict(means), dict(stds), direction
        self.pinned = dict(pinned or {})

    @property
    def methods(self):
        return sorted(self.means)

    def predict(self, cells):
        mean = [self.pinned.get(m, self.means[m]) for _, m, _ in cells]
        std = [1e-3 if m in self.pinned else self.stds[m] for _, m, _ in cells]
        return Prediction(np.array(mean), np.array(std))

    def condition(self, table):
        obs = table.observations
        pinned = dict(self.pinned)
        for m, v in zip(obs["method"], obs[self.metric]):
            pinned[m] = math.log(v)
        return MockSurrogate(self.means, self.stds, self.direction, pinned)


def test_step_picks_highest_mean_first_then_stops_on_small_gain():
    state = SelectorState(("a", "b", "c"))
    ask = step(state, np.array([1.0, 2.0, 0.5]), np.array([0.1, 0.1, 0.1]), direction="max", rule=StopRule())
    assert ask.method == "b" and ask.reason == "highest predicted value"
    measured = SelectorState(("a", "b", "c"), measured={"b": math.exp(2.0)})
    ask = step(measured, np.array([1.0, 0.5]), np.array([0.1, 0.1]), direction="max", rule=StopRule(min_gain=0.005))
    assert ask.method is None and "expected gain" in ask.reason
    ask = step(SelectorState(("a",), measured={"a": 1.0}), np.zeros(0), np.zeros(0), direction="max", rule=StopRule())
    assert ask.method is None and "every candidate" in ask.reason
    ask = step(SelectorState(("a", "b"), measured={"a": 1.0}), np.array([5.0]), np.array([1.0]), direction="max",
               rule=StopRule(max_benchmarks=1))
    assert ask.method is None and "budget of 1 benchmarks" in ask.reason


def test_cost_aware_and_feasibility_change_the_choice():
    state = SelectorState(("a", "b"), measured={"z": 1.0})
    mean, std = np.array([0.3, 0.35]), np.array([0.2, 0.2])
    assert step(state, mean, std, direction="max", rule=StopRule(), acquisition="ei").method == "b"
    cheap_a = step(state, mean, std, direction="max", rule=StopRule(), acquisition="ei_per_cost", cost=np.array([1.0, 10.0]))
    assert cheap_a.method == "a"
    infeasible_b = step(state, mean, std, direction="max", rule=StopRule(), p_feasible=np.array([1.0, 0.0]))
    assert infeasible_b.method == "a"


def test_selector_ask_tell_best_with_mock():
    mock = MockSurrogate({"a": math.log(10), "b": math.log(12), "c": math.log(8)}, {"a": 0.3, "b": 0.3, "c": 0.05})
    sel = Selector(mock, "t", "h", rule=StopRule(min_gain=0.01))
    assert sel.best().method == "b" and not sel.best().measured
    ask = sel.ask()
    assert ask.method == "b"
    sel.tell("b", status="oom")  # a failure is information: b leaves the candidates
    assert sel.ask().method == "a"
    sel.tell("a", 11.0)
    best = sel.best()
    assert best.method == "a" and best.measured and best.value == 11.0
    # c is predicted 8 ± 5%: far below 11, so one more benchmark is not worth it
    stop = sel.ask()
    assert stop.method is None and "expected gain" in stop.reason
    assert sel.state.num_benchmarks == 2 and sel.state.failed == {"b": "oom"}
    with pytest.raises(ValueError, match="positive value"):
        sel.tell("c", -1.0)


def test_selector_minimises_when_the_metric_does():
    mock = MockSurrogate({"a": math.log(10), "b": math.log(5)}, {"a": 0.1, "b": 0.1}, direction="min")
    sel = Selector(mock, "t", "h")
    assert sel.ask().method == "b"


class TwinMock(MockSurrogate):
    """The mock, plus a task on which ``b+batch`` runs the same computation as ``b``."""

    def same_computation(self, task_id, methods):
        return {m: ("b" if m == "b+batch" else m) for m in methods}


def test_selector_never_benchmarks_the_same_computation_twice():
    means = {"a": math.log(10), "b": math.log(12), "b+batch": math.log(12), "c": math.log(9)}
    stds = {"a": 0.3, "b": 0.3, "b+batch": 0.3, "c": 0.3}
    sel = Selector(TwinMock(means, stds), "t", "h", rule=StopRule(min_gain=0.0))
    assert sel.state.same == {"b+batch": "b"}
    assert sel.ask().method == "b"
    sel.tell("b", 12.0)
    # b+batch is still predicted 12 ± 0.3, but it would only measure b again
    assert "b+batch" not in sel.state.remaining() and sel.ask().method in ("a", "c")
    order = ["b"]
    while (ask := sel.ask()).method is not None:
        sel.tell(ask.method, 9.5)
        order.append(ask.method)
    assert sorted(order) == ["a", "b", "c"] and "every candidate computation" in ask.reason
    # a failed twin fails for both; with skip_repeats=False the twin is a candidate again
    sel = Selector(TwinMock(means, stds), "t", "h", rule=StopRule(min_gain=0.0))
    sel.tell("b+batch", status="unsupported")
    assert "b" not in sel.state.remaining()
    plain = Selector(TwinMock(means, stds), "t", "h", rule=StopRule(min_gain=0.0), skip_repeats=False)
    plain.tell("b", 12.0)
    assert "b+batch" in plain.state.remaining()
