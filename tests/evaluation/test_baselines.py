"""Baselines are real: hand-checked picks on a toy matrix; learned ones beat random on planted structure."""

import numpy as np
import pytest

from metasel.evaluation.baselines import (ALORS, ISAC, KNearest, MetaInfStyle, PairwiseClassification, PerMethodRegression,
                                    Problem, RandomChoice, SingleBest)


def toy(score, x=None, failed=None):
    score = np.asarray(score, dtype=float)
    c, m = score.shape
    return Problem([(f"t{i}", "h") for i in range(c)], [f"m{j}" for j in range(m)], score,
                   np.zeros_like(score, bool) if failed is None else np.asarray(failed),
                   np.full_like(score, np.nan), np.zeros((c, 1)) if x is None else np.asarray(x, float),
                   np.eye(m))


def test_single_best_hand_computed():
    # normalised (minus row best): m0 [0,-1,-3] mean -4/3; m1 [-1,0,0] mean -1/3; m2 [-2,-2,-1] mean -5/3
    p = toy([[3, 2, 1], [1, 2, 0], [0, 3, 2]])
    s = SingleBest().fit(p).scores(toy([[np.nan] * 3]))
    assert int(np.argmax(s[0])) == 1
    np.testing.assert_allclose(s[0], [-4 / 3, -1 / 3, -5 / 3])


def test_single_best_charges_failures():
    # m0 is best where it runs but fails in two of three contexts
    p = toy([[5, 1], [np.nan, 1], [np.nan, 1]], failed=[[0, 0], [1, 0], [1, 0]])
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
                                  lambda: PairwiseClassification(), lambda: MetaInfStyle()])
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
