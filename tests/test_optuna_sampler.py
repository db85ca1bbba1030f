"""metasel.integrations.optuna.MetaselSampler with real Optuna studies."""

import math

import numpy as np
import optuna
import pytest

from metasel.errors import InputDataError
from metasel.integrations.optuna import MetaselSampler
from metasel.testing.mock import MockSurrogate

optuna.logging.set_verbosity(optuna.logging.WARNING)

MEANS = {"a": math.log(100.0), "b": math.log(90.0), "c": math.log(10.0)}
STDS = {"a": 0.05, "b": 0.05, "c": 0.05}


def _study(sampler, direction="maximize"):
    return optuna.create_study(direction=direction, sampler=sampler)


def test_first_trial_is_the_predicted_best_and_no_method_repeats():
    sampler = MetaselSampler(MockSurrogate(MEANS, STDS), "t", "h")
    truth = {"a": 60.0, "b": 95.0, "c": 12.0}
    study = _study(sampler)
    study.optimize(lambda t: truth[t.suggest_categorical("method", ["a", "b", "c"])], n_trials=3)
    order = [t.params["method"] for t in study.trials]
    assert order[0] == "a"  # highest predicted
    assert sorted(order) == ["a", "b", "c"]
    assert study.best_params["method"] == "b"


def test_a_failed_trial_removes_its_method():
    sampler = MetaselSampler(MockSurrogate(MEANS, STDS), "t", "h")
    study = _study(sampler)

    def objective(trial):
        m = trial.suggest_categorical("method", ["a", "b", "c"])
        if m == "a":
            raise RuntimeError("out of memory")
        return {"b": 80.0, "c": 5.0}[m]

    study.optimize(objective, n_trials=2, catch=(RuntimeError,))
    assert [t.params["method"] for t in study.trials] == ["a", "b"]
    assert sampler.next_method(study, ["a", "b", "c"]) == "c"


def test_other_parameters_go_to_the_independent_sampler():
    sampler = MetaselSampler(MockSurrogate(MEANS, STDS), "t", "h", seed=3)
    study = _study(sampler)
    study.optimize(lambda t: t.suggest_int("max_num_seqs", 1, 64) * {"a": 1.0, "b": 1.0, "c": 1.0}[
        t.suggest_categorical("method", ["a", "b", "c"])], n_trials=3)
    seqs = [t.params["max_num_seqs"] for t in study.trials]
    assert all(1 <= s <= 64 for s in seqs) and len(set(seqs)) > 1
    # choices the model does not know: proposed only when no known one is left
    study2 = _study(MetaselSampler(MockSurrogate(MEANS, STDS), "t", "h"))
    study2.optimize(lambda t: 1.0 + len(t.suggest_categorical("method", ["zzz", "a"])), n_trials=2)
    assert [t.params["method"] for t in study2.trials][0] == "a"


def test_direction_must_match_the_metric():
    sampler = MetaselSampler(MockSurrogate(MEANS, STDS), "t", "h")
    study = _study(sampler, direction="minimize")
    with pytest.raises(InputDataError, match="better when maximised"):
        study.optimize(lambda t: 1.0 + len(t.suggest_categorical("method", ["a", "b"])), n_trials=1)


def _descriptors(table, task, hw):
    import json

    from metasel.app.descriptors import descriptor_table

    t = table.tasks.set_index("task_id").loc[task]
    h = table.hardware.set_index("hardware_id").loc[hw]
    return descriptor_table({"task_id": task, "name": t["name"], "spec": json.loads(t["spec"]),
                             "features": json.loads(t["features"])},
                            {"hardware_id": hw, "name": h["name"], "specs": json.loads(h["specs"])})


def _trials_to_oracle(study_order, values):
    best = max(values.values())
    return next(i + 1 for i, m in enumerate(study_order) if values[m] >= best)


@pytest.mark.slow
def test_on_a_planted_matrix_it_reaches_the_oracle_sooner_than_random_and_tpe():
    from metasel.evaluation.folds import leave_one_task_out, split
    from metasel.surrogate.gbm import GBMConfig, GBMSurrogate
    from metasel.testing.synthetic import low_rank_table

    table, truth = low_rank_table(num_tasks=24, num_methods=8, num_hardware=1, density=1.0, noise=0.02, seed=5)
    folds = leave_one_task_out(table, "value")[:5]
    results = {"metasel": [], "random": [], "tpe": []}
    for fold in folds:
        (task, hw), = fold.test_contexts
        model = GBMSurrogate("value", config=GBMConfig(folds=2, max_iter=50)).fit(split(table, fold), key=0)
        cell = truth[(truth["task_id"] == task) & (truth["hardware_id"] == hw)]
        values = dict(zip(cell["method"], np.exp(cell["log_value"])))
        methods = sorted(values)
        described = _descriptors(table, task, hw)  # the held-out task as a new user describes it: no observation
        for name, make in (("metasel", lambda s: MetaselSampler(model, task, hw, table=described, seed=s)),
                           ("random", lambda s: optuna.samplers.RandomSampler(seed=s)),
                           ("tpe", lambda s: optuna.samplers.TPESampler(seed=s, n_startup_trials=3))):
            for s in range(3 if name != "metasel" else 1):
                study = _study(make(s))
                best = max(values.values())

                def objective(trial):  # Random and TPE may propose a method again: it costs a trial all the same
                    v = values[trial.suggest_categorical("method", methods)]
                    if v >= best:
                        trial.study.stop()
                    return v

                study.optimize(objective, n_trials=24)
                order = [t.params["method"] for t in study.trials]
                results[name].append(_trials_to_oracle(order, values))
    mean = {k: float(np.mean(v)) for k, v in results.items()}
    assert mean["metasel"] < mean["random"] and mean["metasel"] < mean["tpe"], mean
