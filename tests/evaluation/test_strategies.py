"""Every baseline and both surrogates pass the strategy conformance suite and beat random on planted clusters."""

import numpy as np
import pytest

from metasel.evaluation import baselines as bl
from metasel.evaluation.folds import leave_one_task_out
from metasel.evaluation.harness import fold_problems
from metasel.evaluation.replay import ReplayBackend
from metasel.evaluation.strategies import EnsembleStrategy, SurrogateStrategy, row_ranks
from metasel.surrogate import BayesianSurrogate, GBMSurrogate, TrainConfig
from metasel.testing.conformance import check_strategy, mean_zero_shot_regret
from metasel.testing.synthetic import planted_clusters


@pytest.fixture(scope="module")
def problems():
    """Train on 48 planted-cluster tasks, test on 12 (a grouped split of the LOTO folds)."""
    from metasel.evaluation.folds import Fold

    table = planted_clusters(num_tasks=60, seed=0)
    test_tasks = [f"t{t:03d}" for t in range(48, 60)]
    fold = Fold("last 12", tuple((t, "any") for t in test_tasks), exclude_tasks=tuple(test_tasks))
    train, test = fold_problems(table, "value", fold, embed="hash", embed_dims=4)  # the CLI default
    return table, train, test


STRATEGIES = {
    **{b.name: (lambda b=b: b) for b in bl.all_baselines()},
    "elect": lambda: bl.ElectStyle(),
    "gbm_surrogate": lambda: SurrogateStrategy(GBMSurrogate("value"), name="gbm_surrogate"),
    "metasel": lambda: SurrogateStrategy(BayesianSurrogate("value", config=TrainConfig(steps=150, members=1), embed="none"),
                                         fit_kwargs={"calibrate": False}),
    "metasel_ensemble": lambda: EnsembleStrategy([
        SurrogateStrategy(BayesianSurrogate("value", config=TrainConfig(steps=150, members=1), embed="none"),
                          fit_kwargs={"calibrate": False}),
        bl.SurvivalForest(trees=20), bl.PairwiseClassification(), bl.PerMethodRegression("rf"), bl.Sunny()]),
}


class _Fixed(bl.Baseline):
    """Scores given by hand."""

    def __init__(self, s):
        self.s = np.asarray(s, float)

    def fit(self, train, *, seed=0):
        return self

    def scores(self, test):
        return self.s


def test_ensemble_is_the_mean_of_its_members_ranks(problems):
    _, train, test = problems
    a = [[3.0, 1.0, 2.0, -np.inf]]  # ranks 1, 1/3, 2/3, 0
    b = [[0.0, 5.0, 5.0, 1.0]]  # ranks 0, 5/6, 5/6, 1/3 (ties share the mean rank)
    np.testing.assert_allclose(row_ranks(np.array(a)), [[1, 1 / 3, 2 / 3, 0]])
    ens = EnsembleStrategy([_Fixed(a), _Fixed(b)]).fit(train)
    s = ens.scores(test)
    np.testing.assert_allclose(s, [[0.5, 7 / 12, 0.75, 1 / 6]], atol=1e-5)
    assert int(np.argmax(s[0])) == 2
    # ties of the mean rank go to the first member's better method
    tied = EnsembleStrategy([_Fixed([[2.0, 1.0]]), _Fixed([[1.0, 2.0]])]).fit(train).scores(test)
    assert tied[0, 0] > tied[0, 1]
    folds = EnsembleStrategy([_Fixed(a), bl.SingleBest()]).fit_folds([train, train])
    assert len(folds) == 2 and folds[0].members[1] is not folds[1].members[1]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_conformance_and_planted_clusters(problems, name):
    table, train, test = problems
    strategy = STRATEGIES[name]()
    scores = check_strategy(strategy, train, test, backend=ReplayBackend(table, "value"))
    regret = mean_zero_shot_regret(scores, test)
    random = mean_zero_shot_regret(bl.RandomChoice().fit(train, seed=0).scores(test), test)
    if name == "random":
        return
    if name == "single_best":  # right for one cluster of two: better than random, far from the oracle
        assert regret < random and regret > 0.3
    else:  # features tell the clusters apart: close to the oracle
        assert regret < 0.1 and regret < random / 3, (regret, random)


def test_loto_folds_of_the_planted_matrix_cover_every_task_once():
    table = planted_clusters(num_tasks=12)
    folds = leave_one_task_out(table, "value")
    assert sorted(t for f in folds for t, _ in f.test_contexts) == sorted(table.tasks["task_id"])
    assert np.all([len(f.test_contexts) == 1 for f in folds])
