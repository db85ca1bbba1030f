"""What a zero-shot pick maximises: expected value, a risk quantile, P(best) — against hand computations."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from metasel.errors import InputDataError
from metasel.select.choice import Choice, choice_scores, failure_values


def test_expected_par10_prefers_the_method_that_rarely_times_out():
    # a: fast when it finishes (median 10 s) but times out with P 0.5; b: median 100 s, never times out.
    # PAR10 = 10 x 1000 s cutoff. By the median of log runtime a wins; by expected PAR10 b does:
    # E[a] = .5 * 10 * e^(1/2 * .25) + .5 * 10000 ~ 5005.7, E[b] = 100 * e^(.125) ~ 113.3
    mean = np.log([[10.0, 100.0]])
    std = np.full((1, 2), 0.5)
    p = np.array([[0.5, 0.0]])
    s = choice_scores(mean, std, p, direction="min", failure_value=np.array([10000.0, 10000.0]))
    np.testing.assert_allclose(s[0], [-math.log(0.5 * 10 * math.exp(0.125) + 5000), -math.log(100 * math.exp(0.125))])
    assert int(np.argmax(s[0])) == 1


def test_expected_runtime_of_a_finished_run_is_capped_at_the_penalty():
    s = choice_scores(np.log([[500.0]]), np.array([[3.0]]), np.zeros((1, 1)), direction="min",
                      failure_value=np.array([1000.0]))
    assert s[0, 0] == pytest.approx(-math.log(1000.0))


def test_expected_throughput_counts_a_failure_as_zero():
    # a: 100 tok/s but fails with P 0.6 -> 40 * e^(.02); b: 50 tok/s, P 0.1 -> 45 * e^(.02)
    s = choice_scores(np.log([[100.0, 50.0]]), np.full((1, 2), 0.2), np.array([[0.6, 0.1]]), direction="max")
    np.testing.assert_allclose(s[0], np.log([40 * math.exp(0.02), 45 * math.exp(0.02)]))


def test_risk_quantile_hand_computed():
    mean, std = np.log([[100.0, 80.0]]), np.array([[1.0, 0.1]])
    # throughput, q = 0.9: the 10% quantile of the lognormal: exp(mu + s * z_.1)
    s = choice_scores(mean, std, np.zeros((1, 2)), direction="max", choice=Choice("quantile", 0.9))
    np.testing.assert_allclose(s[0], [math.log(100) + norm.ppf(0.1), math.log(80) + 0.1 * norm.ppf(0.1)])
    assert int(np.argmax(s[0])) == 1  # the safe method wins at 90% risk, the wide one by the mean
    by_mean = choice_scores(mean, std, np.zeros((1, 2)), direction="max")
    assert int(np.argmax(by_mean[0])) == 0
    # with a failure probability p the quantile of the mixture: z at (1 - q - p) / (1 - p)
    s = choice_scores(mean, std, np.array([[0.05, 0.2]]), direction="max", choice=Choice("quantile", 0.9))
    assert s[0, 0] == pytest.approx(math.log(100) + norm.ppf(0.05 / 0.95))
    assert s[0, 1] < s[0, 0]  # P(fail) 0.2 > 1 - q: the 10% quantile is a failure: zero throughput, last
    # runtime, q = 0.9: the 90% quantile of the mixture; P(timeout) .2 > .1 -> the penalty
    s = choice_scores(np.log([[10.0, 10.0]]), np.full((1, 2), 0.5), np.array([[0.05, 0.2]]), direction="min",
                      failure_value=np.array([1000.0, 1000.0]), choice=Choice("quantile", 0.9))
    np.testing.assert_allclose(s[0], [-(math.log(10) + 0.5 * norm.ppf(0.9 / 0.95)), -math.log(1000)])


def test_p_best_hand_computed():
    # two methods, independent normals of log value: P(a > b) = Phi((mu_a - mu_b) / sqrt(s_a^2 + s_b^2))
    s = choice_scores(np.array([[1.0, 0.5]]), np.array([[0.3, 0.4]]), np.zeros((1, 2)), direction="max",
                      choice=Choice("p_best"))
    want = norm.cdf(0.5 / 0.5)
    np.testing.assert_allclose(s[0], [want, 1 - want], atol=0.03)
    # failures: a always fails -> b is best whenever it runs; both fail -> they share the win
    s = choice_scores(np.array([[1.0, 0.5]]), np.array([[0.3, 0.4]]), np.array([[1.0, 0.5]]), direction="max",
                      choice=Choice("p_best"))
    np.testing.assert_allclose(s[0], [0.25, 0.75], atol=0.03)
    again = choice_scores(np.array([[1.0, 0.5]]), np.array([[0.3, 0.4]]), np.array([[1.0, 0.5]]), direction="max",
                          choice=Choice("p_best"))
    np.testing.assert_array_equal(s, again)  # a fixed seed


def test_unknown_failure_cost_of_a_runtime_puts_likely_failures_last():
    s = choice_scores(np.log([[1.0, 10.0, 5.0]]), np.full((1, 3), 0.1), np.array([[0.9, 0.0, 0.6]]), direction="min")
    assert list(np.argsort(-s[0])) == [1, 2, 0]


def test_failure_values_from_recorded_penalties():
    pen = -np.log(np.array([[np.nan, 100.0], [50.0, np.nan], [np.nan, 300.0]]))
    np.testing.assert_allclose(failure_values(pen, "min"), [50.0, 200.0])
    np.testing.assert_allclose(failure_values(-np.log(np.array([[np.nan, 100.0]])), "min"), [100.0, 100.0])
    assert np.isnan(failure_values(np.full((2, 2), np.nan), "min")).all()
    np.testing.assert_array_equal(failure_values(np.full((2, 2), np.nan), "max"), [0.0, 0.0])


def test_choice_parse_and_errors():
    assert Choice.parse("quantile:0.8") == Choice("quantile", 0.8)
    assert Choice.parse("p_best") == Choice("p_best")
    for bad in ("median", "quantile:x", "quantile:1.5", "mean:3"):
        with pytest.raises(InputDataError):
            Choice.parse(bad)
