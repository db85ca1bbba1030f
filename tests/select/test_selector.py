"""Acquisitions and the selector against hand-computed answers, with a mock surrogate."""

import math

import numpy as np
import pytest

from metasel.errors import InputDataError
from metasel.select import acquisition as acq
from metasel.select.selector import Selector, SelectorState, StopRule, step
from metasel.surrogate.base import Posterior
from metasel.testing.mock import MockSurrogate


def P(mean, std, cov=None):
    """A posterior over one context's candidates (joint when ``cov`` is given)."""
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    return Posterior(mean, std, ((np.arange(len(mean)), np.asarray(cov, float)),) if cov is not None else ())


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


def test_step_picks_highest_mean_first_then_stops_on_small_gain():
    state = SelectorState(("a", "b", "c"))
    ask = step(state, P([1.0, 2.0, 0.5], [0.1, 0.1, 0.1]), direction="max", rule=StopRule())
    assert ask.method == "b" and ask.reason == "highest predicted value"
    measured = SelectorState(("a", "b", "c"), measured={"b": math.exp(2.0)})
    ask = step(measured, P([1.0, 0.5], [0.1, 0.1]), direction="max", rule=StopRule(min_gain=0.005))
    assert ask.method is None and "expected gain" in ask.reason
    ask = step(SelectorState(("a",), measured={"a": 1.0}), P([], []), direction="max", rule=StopRule())
    assert ask.method is None and "every candidate" in ask.reason
    ask = step(SelectorState(("a", "b"), measured={"a": 1.0}), P([5.0], [1.0]), direction="max",
               rule=StopRule(max_benchmarks=1))
    assert ask.method is None and "budget of 1 benchmarks" in ask.reason


def test_cost_aware_and_feasibility_change_the_choice():
    state = SelectorState(("a", "b"), measured={"z": 1.0})
    post = P([0.3, 0.35], [0.2, 0.2])
    assert step(state, post, direction="max", rule=StopRule(), acquisition="ei").method == "b"
    cheap_a = step(state, post, direction="max", rule=StopRule(), acquisition="ei_per_cost", cost=np.array([1.0, 10.0]))
    assert cheap_a.method == "a"
    infeasible_b = step(state, post, direction="max", rule=StopRule(), p_feasible=np.array([1.0, 0.0]))
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
    with pytest.raises(InputDataError, match="positive value"):
        sel.tell("c", -1.0)


def test_selector_minimises_when_the_metric_does():
    mock = MockSurrogate({"a": math.log(10), "b": math.log(5)}, {"a": 0.1, "b": 0.1}, direction="min")
    sel = Selector(mock, "t", "h")
    assert sel.ask().method == "b"


def TwinMock(means, stds):
    """The mock, with a task on which ``b+batch`` runs the same computation as ``b``."""
    return MockSurrogate(means, stds, same={"b+batch": "b"})


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


def test_acquisition_registry_and_errors():
    assert acq.resolve("ei") is acq.ei and acq.resolve(acq.pbest) is acq.pbest
    costly = acq.resolve("ucb_per_cost")
    ctx = acq.AcquisitionContext("max", None, np.ones(2), np.array([1.0, 4.0]), np.random.default_rng(0))
    # UCB scores are shifted to start at 0 before dividing by cost: [1 + sqrt(2), 0] / [1, 4]
    np.testing.assert_allclose(costly(P([1.0, 0.0], [1.0, 0.0]), ctx), [1.0 + math.sqrt(2.0), 0.0])
    for bad in ("nope", "ei_per_costly"):
        with pytest.raises(InputDataError, match="acquisition: expected one of"):
            acq.resolve(bad)
    with pytest.raises(InputDataError, match="needs the predicted cost"):
        step(SelectorState(("a",)), P([1.0], [1.0]), direction="max", rule=StopRule(), acquisition="ei_per_cost")
    with pytest.raises(InputDataError, match="acquisition"):
        Selector(MockSurrogate({"a": 0.0}, {"a": 1.0}), "t", "h", acquisition="eei")


def test_a_researchers_own_acquisition_is_used_as_given():
    def lowest_std(post, ctx):
        return -post.std

    sel = Selector(MockSurrogate({"a": 3.0, "b": 1.0}, {"a": 0.5, "b": 0.1}), "t", "h", acquisition=lowest_std)
    assert sel.ask().method == "b"


def test_pbest_and_thompson_use_the_joint_posterior():
    """Two methods with the same marginals: independent, each is best half the time; perfectly
    correlated with a higher mean for b, b always wins. The selector passes the joint through."""
    rng = np.random.default_rng(0)
    ctx = acq.AcquisitionContext("max", None, np.ones(3), np.ones(3), rng)
    mean, std = [0.0, 0.01, -5.0], [1.0, 1.0, 1.0]
    indep = acq.pbest(P(mean, std), ctx)
    assert indep[0] == pytest.approx(0.5, abs=0.03) and indep[1] == pytest.approx(0.5, abs=0.03)
    cov = [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    joint = acq.pbest(P(mean, std, cov), ctx)
    assert joint[1] == 1.0 and joint[0] == 0.0
    draws = [int(np.argmax(acq.thompson(P(mean, std, cov), ctx))) for _ in range(50)]
    assert set(draws) == {1}
    sel = Selector(MockSurrogate({"a": 0.0, "b": 0.01}, {"a": 1.0, "b": 1.0}, correlation=1.0), "t", "h",
                   acquisition="pbest")
    ask = sel.ask()
    assert ask.method == "b" and ask.scores["b"]["p_best"] == 1.0


def test_selector_starts_from_benchmarks_already_made():
    mock = MockSurrogate({"a": math.log(10), "b": math.log(12), "c": math.log(8)}, {"a": 0.3, "b": 0.3, "c": 0.3})
    sel = Selector(mock.condition(_obs("b", 12.0)), "t", "h", measured={"b": 12.0}, failed={"c": "oom"})
    assert sel.state.num_benchmarks == 2 and sel.ask().method == "a"


def _obs(method, value):
    from metasel.data.table import PerfTable

    return PerfTable([{"task_id": "t", "method": method, "hardware_id": "h", "throughput_tok_s": value}], source="test")
