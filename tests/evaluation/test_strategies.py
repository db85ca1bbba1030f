"""Every baseline and both surrogates pass the strategy conformance suite and beat random on planted clusters."""

import numpy as np
import pytest

from metasel.evaluation import baselines as bl
from metasel.evaluation.folds import leave_one_task_out
from metasel.evaluation.harness import fold_problems
from metasel.evaluation.replay import ReplayBackend
from metasel.evaluation.strategies import SurrogateStrategy
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
}


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
