"""Evaluation: folds, problems, metrics, baselines, strategies, the harness, replay and reports.

``evaluate(table, metric, folds, strategies=default_strategies(metric))`` runs every strategy
on the same folds and seeds; ``report.write_report`` writes the tables and plots.
"""

from metasel.evaluation.baselines import Baseline, ElectStyle, all_baselines
from metasel.evaluation.folds import (Fold, folds_from_csv, grouped_k_fold, leave_one_hardware_out,
                                      leave_one_task_out, split)
from metasel.evaluation.harness import EvalResult, default_strategies, evaluate, metasel_strategy
from metasel.evaluation.problem import Problem, make_problem
from metasel.evaluation.replay import ReplayBackend
from metasel.evaluation.strategies import Strategy, SurrogateStrategy

__all__ = ["Baseline", "ElectStyle", "EvalResult", "Fold", "Problem", "ReplayBackend", "Strategy", "SurrogateStrategy",
           "all_baselines", "default_strategies", "evaluate", "folds_from_csv", "grouped_k_fold",
           "leave_one_hardware_out", "leave_one_task_out", "make_problem", "metasel_strategy", "split"]
