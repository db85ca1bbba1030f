"""Evaluation folds: which (task, hardware) contexts are held out, and the training table without them.

Protocols: leave-one-task-out, leave-one-hardware-out, grouped K-fold by a spec path or a
task feature, and official folds from a ``task,fold[,repetition]`` CSV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metasel.errors import InputDataError


@dataclass(frozen=True)
class Fold:
    name: str
    test_contexts: tuple[tuple[str, str], ...]
    exclude_tasks: tuple[str, ...] = ()  # tasks kept out of training entirely
    exclude_hardware: tuple[str, ...] = ()


def contexts_of(table, metric) -> list[tuple[str, str]]:
    obs = table.observations
    keep = obs[(obs["status"] != "ok") | obs[metric].notna()]
    return list(dict.fromkeys(zip(keep["task_id"], keep["hardware_id"])))


def _by(table, metric, position: int) -> dict[str, list[tuple[str, str]]]:
    groups: dict[str, list[tuple[str, str]]] = {}
    for ctx in contexts_of(table, metric):
        groups.setdefault(ctx[position], []).append(ctx)
    return groups


def leave_one_task_out(table, metric) -> list[Fold]:
    return [Fold(f"task={t}", tuple(c), exclude_tasks=(t,)) for t, c in _by(table, metric, 0).items()]


def leave_one_hardware_out(table, metric) -> list[Fold]:
    return [Fold(f"hardware={h}", tuple(c), exclude_hardware=(h,)) for h, c in _by(table, metric, 1).items()]


def grouped_k_fold(table, metric, column: str, k: int, *, seed: int = 0) -> list[Fold]:
    ctx = contexts_of(table, metric)
    groups = table.task_groups(column)
    names = sorted({groups[t] for t, _ in ctx})
    if len(names) < 2:
        raise InputDataError(f"group:{column}: every task falls in one group ({names[0] if names else 'none'!r}); expected "
                             f"a spec path or task feature whose value differs between tasks (e.g. model.hf_id)")
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    k = min(k, len(names))
    folds = []
    for f in range(k):
        held = set(names[f::k])
        test = tuple(c for c in ctx if groups[c[0]] in held)
        folds.append(Fold(f"{column} fold {f + 1}/{k}", test, exclude_tasks=tuple(sorted({t for t, _ in test}))))
    return folds


def folds_from_csv(table, metric, path) -> list[Fold]:
    from metasel.data.importers import read_text_table

    frame = read_text_table(path, what="folds CSV")
    for col in ("task", "fold"):
        if col not in frame.columns:
            raise InputDataError(f"{path}: header: missing column {col!r}; expected task,fold[,repetition]")
    if frame.empty:
        raise InputDataError(f"{path}: expected at least one task,fold row, got only a header")
    rep = frame["repetition"] if "repetition" in frame.columns else ["1"] * len(frame)
    frame = frame.assign(repetition=list(rep))
    where: dict[tuple[str, str], tuple[str, int]] = {}  # (repetition, task) -> (fold, row)
    for i, (task, fold, r) in enumerate(zip(frame["task"], frame["fold"], frame["repetition"]), start=2):
        if not task.strip():
            raise InputDataError(f"{path}: row {i}, column 'task': expected a task name, got an empty cell")
        for col, label in (("fold", fold), ("repetition", r)):
            if not label.strip().lstrip("-").isdigit():
                raise InputDataError(f"{path}: row {i}, column {col!r}: expected an integer label, got {label[:30]!r}")
        key = (r.strip(), task.strip())
        if key in where and where[key][0] != fold.strip():
            raise InputDataError(f"{path}: row {i}: task {task.strip()[:60]!r} is in fold {fold.strip()} and, at row "
                                 f"{where[key][1]}, in fold {where[key][0]} of repetition {r.strip()}; expected one fold "
                                 f"per task")
        where.setdefault(key, (fold.strip(), i))
    frame = frame.assign(fold=frame["fold"].str.strip().astype(int), repetition=frame["repetition"].str.strip().astype(int))
    ctx = contexts_of(table, metric)
    folds = []
    known = set(table.tasks["task_id"])
    measured = {t for t, _ in ctx}
    for r, sub in frame.groupby("repetition"):
        missing = sorted(measured - set(sub["task"].str.strip()))
        if missing:
            raise InputDataError(f"{path}: repetition {r}: {len(missing)} task(s) of the data are in no fold (e.g. "
                                 f"{missing[0][:60]!r}); expected every task in exactly one fold")
    for (r, f), sub in frame.groupby(["repetition", "fold"], sort=True):
        tasks = set(sub["task"].str.strip())
        unknown = sorted(tasks - known)
        if unknown:
            raise InputDataError(f"{path}: fold {f}: task {unknown[0]!r} is not in the data")
        test = tuple(c for c in ctx if c[0] in tasks)
        folds.append(Fold(f"rep {r} fold {f}", test, exclude_tasks=tuple(sorted(tasks))))
    return folds


def split(table, fold: Fold):
    """The training table of a fold: every observation of its held-out contexts, tasks and hardware removed."""
    obs = table.observations
    drop = obs["task_id"].isin(set(fold.exclude_tasks)) | obs["hardware_id"].isin(set(fold.exclude_hardware))
    test_set = set(fold.test_contexts)
    drop |= np.array([c in test_set for c in zip(obs["task_id"], obs["hardware_id"])], dtype=bool)
    return table.subset(~drop)
