"""The stack chooses its learner by inner cross-validation on the training problem only."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from metasel.cli import main
from metasel.evaluation import folds as ev
from metasel.evaluation.baselines import KNearest, PerMethodRegression, RandomChoice, SingleBest
from metasel.evaluation.harness import evaluate
from metasel.evaluation.report import summarise
from metasel.evaluation.stack import ENSEMBLE, StackedStrategy, inner_folds, inner_loss, sub_problem
from metasel.testing.synthetic import low_rank_table
from tests.evaluation.test_baselines import planted, runtimes, toy


def test_stack_chooses_the_learner_that_picks_best_on_planted_structure():
    train, test = planted(seed=0), planted(n=60, seed=1)
    stack = StackedStrategy([SingleBest(), PerMethodRegression("rf")], ensemble=False).fit(train, seed=0)
    assert stack.chosen == "regression_rf"
    assert stack.inner_scores["regression_rf"] < stack.inner_scores["single_best"]
    oracle = np.nanargmax(test.score, axis=1)
    assert np.mean(np.argmax(stack.scores(test), axis=1) == oracle) >= 0.85


def test_stack_keeps_the_single_best_when_the_others_chase_noise():
    rng = np.random.default_rng(3)
    score = rng.normal(scale=0.05, size=(60, 4))
    score[:, 2] += 1.0  # method 2 is best everywhere; the features are noise
    p = toy(score, x=rng.normal(size=(60, 3)))
    stack = StackedStrategy([RandomChoice(), SingleBest()]).fit(p, seed=0)
    assert stack.chosen == "single_best"
    assert set(stack.inner_scores) == {"random", "single_best", ENSEMBLE}
    assert (np.argmax(stack.scores(toy(score[:5], x=rng.normal(size=(5, 3)))), axis=1) == 2).all()


def test_inner_loss_hand_computed():
    # runtimes with a PAR-style penalty of 40: the loss is the mean value of the picks
    p = runtimes([[1, 5, 3], [np.nan, 2, 8], [4, 4, np.nan]], penalty=40.0)
    sc = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1.0]])  # picks m1 (5), m0 (timeout: 40), m2 (timeout: 40)
    assert inner_loss(p, [(np.array([0, 1, 2]), sc)]) == pytest.approx((5 + 40 + 40) / 3)
    # split over two inner folds: the same rows, the same loss
    assert inner_loss(p, [(np.array([0]), sc[:1]), (np.array([1, 2]), sc[1:])]) == pytest.approx((5 + 40 + 40) / 3)
    # a maximised metric: mean relative regret, 1 - picked / best
    q = toy(np.log([[10.0, 5.0], [2.0, 8.0]]))
    assert inner_loss(q, [(np.array([0, 1]), np.array([[0, 1.0], [0, 1.0]]))]) == pytest.approx((0.5 + 0.0) / 2)


def test_inner_folds_hold_out_whole_groups():
    table, _ = low_rank_table(num_tasks=9, num_methods=3, num_hardware=2, density=1.0, seed=0)
    from metasel.evaluation.harness import fold_problems

    fold = ev.leave_one_task_out(table, "value")[0]
    train, _ = fold_problems(table, "value", fold, embed="hash", embed_dims=0)
    for group, at in (("task", 0), ("hardware", 1)):
        splits = inner_folds(train, 3, group, seed=0)
        held = np.concatenate([te for _, te in splits])
        assert sorted(held) == list(range(len(train.contexts)))  # every context held out once
        for tr, te in splits:
            assert not {train.contexts[i][at] for i in tr} & {train.contexts[i][at] for i in te}
            sub = sub_problem(train, tr)
            # the inner training table holds only its contexts' observations; a held-out part none
            obs = sub.table.observations
            assert set(zip(obs["task_id"], obs["hardware_id"])) <= set(sub.contexts)
            assert len(sub_problem(train, te, test=True).table) == 0
    assert len(inner_folds(train, 3, "hardware", seed=0)) == 2  # two machines: two inner folds
    with pytest.raises(ValueError, match="2 or more"):
        inner_folds(sub_problem(train, np.array([0])), 3, "task")


def test_evaluate_records_what_the_stack_chose_per_fold():
    table, _ = low_rank_table(num_tasks=16, num_methods=5, num_hardware=1, density=1.0, seed=4)
    folds = ev.leave_one_task_out(table, "value")[:3]
    stack = StackedStrategy([SingleBest(), KNearest()], name="stack")
    res = evaluate(table, "value", folds, strategies=[SingleBest(), KNearest(), stack], anytime_k=2)
    assert [c["fold"] for c in res.choices] == [f.name for f in folds]
    for c in res.choices:
        assert c["chosen"] == min(c["inner"], key=c["inner"].get)
    # the stack picks exactly what its chosen member picks, fitted on the same training data
    rows = {(r["fold"], r["strategy"]): r["pick"] for r in res.rows}
    for c in res.choices:
        if c["chosen"] != ENSEMBLE:
            assert rows[(c["fold"], "stack")] == rows[(c["fold"], c["chosen"])]
    assert "regret" in summarise(res)["stack"]


def test_evaluate_cli_stack_on_penalised_runtimes(tmp_path):
    """A feature says which method times out: the stack (metasel among its members) gets near the oracle
    and says what it chose."""
    rng = np.random.default_rng(0)
    lines = ["task,method,value,status"]
    for t in range(60):
        for m, timeout in (("a", t % 2 == 1), ("b", t % 2 == 0), ("c", False)):
            v = 1000.0 if timeout else float(rng.uniform(1, 5) if m != "c" else rng.uniform(40, 60))
            lines.append(f"t{t},{m},{v},{'timeout' if timeout else 'ok'}")
    (tmp_path / "perf.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "f.csv").write_text("task,x\n" + "".join(f"t{t},{t % 2}\n" for t in range(60)))
    (tmp_path / "folds.csv").write_text("task,fold\n" + "".join(f"t{t},{(t // 2) % 3}\n" for t in range(60)))
    out = tmp_path / "res"
    r = CliRunner().invoke(main, ["evaluate", "--data", str(tmp_path / "perf.csv"), "--features", str(tmp_path / "f.csv"),
                                  "--objective", "min", "--protocol", "folds", "--folds", str(tmp_path / "folds.csv"),
                                  "--baselines", "single_best", "--stack", "--steps", "40", "--members", "1",
                                  "--out", str(out)])
    assert r.exit_code == 0, (r.output, r.exception)
    data = json.loads((out / "results.json").read_text())
    assert data["summary"]["metasel_stack"]["gap_closed_mean"] > 0.9
    assert len(data["stack_choices"]) == 3
    assert "metasel_stack chose, by inner cross-validation" in (out / "results.md").read_text()
