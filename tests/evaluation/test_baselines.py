"""Baselines are real: hand-checked picks on a toy matrix; learned ones beat random on planted structure."""

import numpy as np
import pytest

from metasel.evaluation.baselines import (ALORS, ISAC, KNearest, MetaInfStyle, PairwiseClassification, PerMethodRegression,
                                    Problem, RandomChoice, SingleBest, Sunny, SurvivalForest)


def toy(score, x=None, failed=None, penalty=None, direction="max"):
    score = np.asarray(score, dtype=float)
    c, m = score.shape
    return Problem([(f"t{i}", "h") for i in range(c)], [f"m{j}" for j in range(m)], score,
                   np.zeros_like(score, bool) if failed is None else np.asarray(failed, bool),
                   np.full_like(score, np.nan) if penalty is None else np.asarray(penalty, float),
                   np.zeros((c, 1)) if x is None else np.asarray(x, float), np.eye(m), direction=direction)


def runtimes(values, penalty=40.0, x=None):
    """A minimised runtime problem: NaN = a timeout charged ``penalty`` (PAR-style)."""
    v = np.asarray(values, dtype=float)
    failed = np.isnan(v)
    return toy(-np.log(v), x=x, failed=failed, penalty=np.where(failed, -np.log(penalty), np.nan), direction="min")


def test_sunny_hand_computed():
    # neighbours of x=0.4 with k=2: contexts 0 and 1. Solved there: m0 2, m1 2, m2 1;
    # total runtime (timeout = 100): m0 20, m1 51, m2 101 -> m0 first (tie on solved broken by time)
    train = runtimes([[10, 1, 1], [10, 50, np.nan], [1, 1, 1], [1, 1, 1]], penalty=100.0, x=[[0.0], [1.0], [10.0], [11.0]])
    s = Sunny(k=2).fit(train).scores(runtimes([[1, 1, 1]], x=[[0.4]]))
    np.testing.assert_allclose(s[0], [2.5, 2 + 0.5 * (2 / 3), 1 + 0.5 * (1 / 3)])


def test_survival_forest_hand_computed():
    # features say nothing and there is no bootstrap: each forest is the Kaplan-Meier curve of its
    # method's runs, timeouts censored at the longest finished run (4); expected PAR-style cost:
    # m0 finishes at 1, 2, 4, 4, 4:          1*.2 + 2*.2 + 4*.6            = 3.0
    # m1 finishes at .5, .5, else times out:  .5*.4 + .6*40                 = 24.2
    # m2 finishes at 3 four times:            3*.8 + .2*40                  = 10.4
    train = runtimes(np.array([[1, .5, 3], [2, .5, 3], [4, np.nan, 3], [4, np.nan, 3], [4, np.nan, np.nan]]))
    forest = SurvivalForest(trees=1, bootstrap=False).fit(train)
    np.testing.assert_allclose(forest.expected_cost(np.zeros((1, 1)))[0], [3.0, 24.2, 10.4])
    assert int(np.argmax(forest.scores(runtimes([[1, 1, 1]]))[0])) == 0


def test_single_best_hand_computed():
    # normalised (minus row best): m0 [0,-1,-3] mean -4/3; m1 [-1,0,0] mean -1/3; m2 [-2,-2,-1] mean -5/3
    p = toy([[3, 2, 1], [1, 2, 0], [0, 3, 2]])
    s = SingleBest().fit(p).scores(toy([[np.nan] * 3]))
    assert int(np.argmax(s[0])) == 1
    np.testing.assert_allclose(s[0], [-4 / 3, -1 / 3, -5 / 3])


def test_single_best_charges_failures():
    # m0 is best where it runs but fails in two of three contexts
    p = toy([[2, 1], [np.nan, 1], [np.nan, 1]], failed=[[0, 0], [1, 0], [1, 0]])
    s = SingleBest().fit(p).scores(toy([[0, 0]]))
    assert int(np.argmax(s[0])) == 1


def planted(n=120, seed=0):
    """Two regimes decided by feature x0: method 0 wins when x0 > 0, method 2 otherwise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=0.3, size=(n, 3))
    x[:, 0] += rng.choice([-2.0, 2.0], size=n)  # two well-separated regimes
    score = rng.normal(scale=0.05, size=(n, 4))
    score[:, 0] += np.where(x[:, 0] > 0, 1.0, -1.0)
    score[:, 2] += np.where(x[:, 0] > 0, -1.0, 1.0)
    score[:, 1] += 0.2
    return toy(score, x)


@pytest.mark.parametrize("make", [lambda: ISAC(), lambda: ALORS(), lambda: ALORS(dcg=True), lambda: KNearest(),
                                  lambda: PerMethodRegression("rf"), lambda: PerMethodRegression("gbm"),
                                  lambda: PairwiseClassification(), lambda: MetaInfStyle(), lambda: Sunny(),
                                  lambda: SurvivalForest(trees=30)])
def test_learned_baselines_beat_random(make):
    train, test = planted(seed=0), planted(n=60, seed=1)
    oracle = np.nanargmax(test.score, axis=1)

    def accuracy(b):
        return float(np.mean(np.argmax(b.fit(train, seed=0).scores(test), axis=1) == oracle))

    acc = accuracy(make())
    rand = accuracy(RandomChoice())
    sbs = accuracy(SingleBest())
    assert acc >= 0.85, acc
    assert acc > rand + 0.3 and acc > sbs + 0.2
