"""Stacking by inner cross-validation: the zero-shot pick of whichever selector picks best on
the training data.

No single learner is ahead on every performance matrix (on ASlib the survival forest, pairwise
classification, per-method forests and SUNNY each lead somewhere; metasel's surrogate leads
on the inference tables). :class:`StackedStrategy` makes the choice of learner a selection
problem of its own, solved on the training problem only: its contexts are split into ``k``
inner folds by group (tasks, or machines: what the outer folds hold out), every candidate is
fitted on each inner training part and scored on what it picks for the inner held-out
contexts, and the candidate with the best inner score is refitted on the whole training
problem and picks for the test contexts. The candidates are the members and, as one more
candidate, the equal-weight mean of their per-context ranks (the ensemble of
:class:`~metasel.evaluation.strategies.EnsembleStrategy`, computed from the same inner fits).

The inner score is what the evaluation reports first for the data: where every failed cell
of the training problem has a recorded penalty and the metric is minimised (PAR10 runtimes),
the mean value of the picks (ASlib's gap closed is linear in it); otherwise the mean relative
regret of the picks.
"""

from __future__ import annotations

import numpy as np

from metasel.evaluation.metrics import relative_regret, value_of
from metasel.evaluation.problem import Problem
from metasel.evaluation.strategies import EnsembleStrategy, _fresh, row_ranks, score_order

ENSEMBLE = "rank_ensemble"  # the name of the ranks-mean candidate in ``chosen`` and ``inner_scores``


class StackedStrategy:
    """The zero-shot pick of the member (or the rank ensemble of all members) with the best
    inner cross-validated selection on the training problem.

    Args:
        members: unfitted strategies (templates; each inner fold fits copies).
        k: inner folds (groups of the training contexts; fewer when there are fewer groups).
        group: what an inner fold holds out: ``task`` (all contexts of a task; the default),
            ``hardware`` (all contexts of a machine), or a task-group key of
            :meth:`PerfTable.task_groups` (a spec path or feature).
        ensemble: also consider the mean of the members' ranks as a candidate.
        name: the strategy's name in the results.

    After fitting, ``chosen`` names the candidate that picks and ``inner_scores`` holds every
    candidate's inner score (lower is better).
    """

    zero_shot = True

    def __init__(self, members: list, *, k: int = 3, group: str = "task", ensemble: bool = True,
                 name: str = "metasel_stack"):
        if not members:
            raise ValueError("a stack needs at least one member")
        if k < 2:
            raise ValueError(f"a stack needs k >= 2 inner folds, got {k}")
        names = [m.name for m in members]
        if len(set(names)) != len(names) or ENSEMBLE in names:
            raise ValueError(f"stack members need distinct names other than {ENSEMBLE!r}, got {names}")
        self.members, self.k, self.group, self.ensemble, self.name = list(members), k, group, ensemble, name
        self.chosen: str | None = None
        self.inner_scores: dict[str, float] = {}
        self._pick = None  # the fitted strategy that scores and orders
        self._fitted_members: list = []  # the rank ensemble's members, when it is chosen

    def _empty(self) -> "StackedStrategy":
        return StackedStrategy(self.members, k=self.k, group=self.group, ensemble=self.ensemble, name=self.name)

    def fit(self, train: Problem, *, seed: int = 0) -> "StackedStrategy":
        return self.fit_folds([train], seed=seed)[0]

    def fit_folds(self, trains: list[Problem], *, seed: int = 0) -> list["StackedStrategy"]:
        """One fitted stack per training problem; a member with ``fit_folds`` (metasel's surrogate)
        fits all the inner folds of all the problems as one batch."""
        inner = [inner_folds(t, self.k, self.group, seed=seed) for t in trains]
        subs = [(sub_problem(t, tr), sub_problem(t, te, test=True), te) for t, folds in zip(trains, inner) for tr, te in folds]
        owner = [n for n, folds in enumerate(inner) for _ in folds]
        # every member's inner scores of every sub-problem's held-out contexts
        per_member: dict[str, list[np.ndarray]] = {}
        for m in self.members:
            fitted = _fit_all(m, [s[0] for s in subs], seed)
            per_member[m.name] = [f.scores(s[1]) for f, s in zip(fitted, subs)]
        if self.ensemble and len(self.members) > 1:
            per_member[ENSEMBLE] = [_rank_mean([per_member[m.name][q] for m in self.members])
                                    for q in range(len(subs))]
        out = [self._empty() for _ in trains]
        for n, stack in enumerate(out):
            qs = [q for q, o in enumerate(owner) if o == n]
            stack.inner_scores = {name: inner_loss(trains[n], [(subs[q][2], scores[q]) for q in qs])
                                  for name, scores in per_member.items()}
            # the lowest inner loss; ties go to the earlier candidate (the members' order, then the ensemble)
            finite = {k: v for k, v in stack.inner_scores.items() if np.isfinite(v)}
            stack.chosen = min(finite, key=finite.get) if finite else self.members[0].name
        # refit each chosen candidate on its whole training problems (batched per member)
        for m in self.members:
            need = [n for n, s in enumerate(out) if s.chosen in (m.name, ENSEMBLE)]
            fitted = _fit_all(m, [trains[n] for n in need], seed)
            for n, f in zip(need, fitted):
                if out[n].chosen == m.name:
                    out[n]._pick = f
                else:
                    out[n]._fitted_members.append(f)
        for s in out:
            if s.chosen == ENSEMBLE:
                s._pick = EnsembleStrategy(s._fitted_members, name=ENSEMBLE)
        return out

    def scores(self, test: Problem) -> np.ndarray:
        return self._pick.scores(test)

    def order(self, test: Problem, i: int, *, scores: np.ndarray, candidates: np.ndarray, rng, backend) -> list[int]:
        if self.chosen == ENSEMBLE:
            return score_order(scores[i], candidates)
        return self._pick.order(test, i, scores=scores, candidates=candidates, rng=rng, backend=backend)

    def posterior(self, test: Problem):
        return None  # coverage is measured on metasel's own strategy


def _fit_all(member, trains: list[Problem], seed: int) -> list:
    if not trains:
        return []
    if hasattr(member, "fit_folds"):
        return _fresh(member).fit_folds(trains, seed=seed)
    return [_fresh(member).fit(t, seed=seed) for t in trains]


def _rank_mean(per: list[np.ndarray]) -> np.ndarray:
    first = np.where(np.isfinite(per[0]), per[0], np.nan)
    spread = np.nanmax(np.abs(first)) if np.isfinite(first).any() else 1.0
    tie = np.nan_to_num(first / (spread or 1.0), nan=-1.0) * 1e-6  # as EnsembleStrategy: the first breaks ties
    return np.mean([row_ranks(s) for s in per], axis=0) + tie


def _groups(train: Problem, group: str) -> list[str]:
    if group == "task":
        return [t for t, _ in train.contexts]
    if group == "hardware":
        return [h for _, h in train.contexts]
    mapping = train.table.task_groups(group)
    return [mapping.get(t, t) for t, _ in train.contexts]


def inner_folds(train: Problem, k: int, group: str, *, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (training rows, held-out rows) splits of the problem's contexts, whole groups held out
    together, groups shuffled by ``seed`` and dealt round-robin (fewer folds with fewer groups)."""
    groups = _groups(train, group)
    uniq = sorted(set(groups))
    if len(uniq) < 2:
        raise ValueError(f"inner folds: the training problem has {len(uniq)} {group} group(s); a stack needs 2 or more")
    rng = np.random.default_rng([seed, 7919])
    perm = [uniq[i] for i in rng.permutation(len(uniq))]
    fold_of = {g: i % min(k, len(uniq)) for i, g in enumerate(perm)}
    labels = np.array([fold_of[g] for g in groups])
    return [(np.flatnonzero(labels != f), np.flatnonzero(labels == f)) for f in range(min(k, len(uniq)))]


def sub_problem(train: Problem, rows: np.ndarray, *, test: bool = False) -> Problem:
    """The problem restricted to ``rows``; its table keeps those contexts' observations (for a
    training part) or none (``test``: descriptors only, as every test problem)."""
    from dataclasses import replace

    contexts = [train.contexts[i] for i in rows]
    table = train.table
    if table is not None:
        if test:
            table = table.subset(np.zeros(len(table), dtype=bool))
        else:
            keep = set(contexts)
            obs = table.observations
            table = table.subset(np.array([c in keep for c in zip(obs["task_id"], obs["hardware_id"])], dtype=bool))
    text = train.text[rows] if train.text is not None else None
    return replace(train, contexts=contexts, score=train.score[rows], failed=train.failed[rows],
                   penalty=train.penalty[rows], x=train.x[rows], text=text, table=table)


def inner_loss(train: Problem, held: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Lower is better: over every held-out row, the mean value of the pick where the problem is a
    minimised one with a penalty for every failure (PAR10), else the mean relative regret.
    ``held``: (rows of ``train``, the candidate's scores of those rows) per inner fold."""
    by_value = train.direction == "min" and bool(np.isfinite(train.penalty[train.failed]).all())
    losses = []
    for rows, sc in held:
        for r, i in enumerate(rows):
            true = train.score[i]
            cand = train.candidates(i)
            if len(cand) == 0 or not np.isfinite(true).any():
                continue
            pick = int(cand[np.argmax(sc[r, cand])])
            if by_value:
                losses.append(value_of(true, pick, train, i, train.direction))
            else:
                losses.append(relative_regret(true, pick, train, i, train.direction))
    return float(np.mean(losses)) if losses else float("nan")
