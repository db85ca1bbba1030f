"""The evaluation harness: every strategy on every fold, same folds and seeds, per-context results.

Nothing from a test fold reaches fitting: each fold fits its own feature encoder (scalers,
embedding PCA) and every strategy on the training contexts alone; the test problem's
table carries descriptors only, and the single best method is chosen on the training
contexts. Anytime curves come from each strategy's benchmark order — for a surrogate, the
one active loop run against the replay backend.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from metasel.evaluation.baselines import ElectStyle, SingleBest, all_baselines
from metasel.evaluation.folds import Fold, contexts_of, split
from metasel.evaluation.metrics import anytime_regret, kendall_tau, ndcg_at, pooled_values, relative_regret, value_of
from metasel.evaluation.problem import Problem, make_problem
from metasel.evaluation.replay import ReplayBackend
from metasel.evaluation.strategies import EnsembleStrategy, Strategy, SurrogateStrategy

FOLD_BATCH = 64  # folds whose fits run together (a strategy with fit_folds fits them as one batch)


@dataclass
class EvalResult:
    protocol: str
    metric: str
    direction: str
    rows: list[dict] = field(default_factory=list)  # one per (fold, context, zero-shot strategy)
    coverage: list[dict] = field(default_factory=list)  # per held-out cell of the first strategy with a posterior
    anytime: dict[str, list[list[float]]] = field(default_factory=dict)  # strategy -> per context regrets k=1..K
    to_oracle: dict[str, list[float]] = field(default_factory=dict)
    traces: list[dict] = field(default_factory=list)  # per (context, strategy): benchmark order and regret@k
    anytime_pooled: dict[str, list[list[float]]] = field(default_factory=dict)  # same, identical computations as one
    to_oracle_pooled: dict[str, list[float]] = field(default_factory=dict)
    pooled_contexts: int = 0  # contexts where some methods run the same computation
    choices: list[dict] = field(default_factory=list)  # per (fold, stacked strategy): the candidate it chose
    seconds: float = 0.0

    def merge(self, other: "EvalResult") -> None:
        """Add another result's folds to this one."""
        self.rows += other.rows
        self.coverage += other.coverage
        self.traces += other.traces
        self.choices += other.choices
        for mine, theirs in ((self.anytime, other.anytime), (self.anytime_pooled, other.anytime_pooled),
                             (self.to_oracle, other.to_oracle), (self.to_oracle_pooled, other.to_oracle_pooled)):
            for name, values in theirs.items():
                mine.setdefault(name, []).extend(values)
        self.pooled_contexts += other.pooled_contexts


def metasel_strategy(metric: str, *, steps: int | None = None, embed: str = "hash", embed_dims: int = 4,
                     members: int = 0, calibrate_by: str = "task", active: bool = True,
                     skip_repeats: bool = True, choice=None, tree_mean: bool | None = None) -> SurrogateStrategy:
    """metasel's Bayesian surrogate as a strategy; ``calibrate_by`` should name what the folds hold out;
    ``choice`` (a :class:`~metasel.select.choice.Choice`) what its zero-shot pick maximises;
    ``tree_mean``: :attr:`TrainConfig.tree_mean` (None: auto, its default)."""
    from metasel.select.choice import Choice
    from metasel.surrogate import BayesianSurrogate, TrainConfig

    config = replace(TrainConfig(), members=members, tree_mean=tree_mean, **({"steps": steps} if steps else {}))
    return SurrogateStrategy(BayesianSurrogate(metric, config=config, embed=embed, embed_dims=embed_dims), name="metasel",
                             fit_kwargs={"calibrate_by": calibrate_by}, active=active, skip_repeats=skip_repeats,
                             choice=choice or Choice())


def ensemble_strategy(metric: str, **metasel_kwargs) -> EnsembleStrategy:
    """metasel's surrogate (its expected value) and the field's strong generic selectors — a
    survival forest, pairwise classification, per-method random forests, SUNNY — as one
    equal-weight rank ensemble (``metasel_ensemble``). Its members are fixed, not tuned."""
    from metasel.evaluation.baselines import PairwiseClassification, PerMethodRegression, Sunny, SurvivalForest

    return EnsembleStrategy([metasel_strategy(metric, **metasel_kwargs), SurvivalForest(), PairwiseClassification(),
                             PerMethodRegression("rf"), Sunny()])


def stack_strategy(metric: str, **metasel_kwargs):
    """``metasel_stack``: the zero-shot pick of whichever of the ensemble's members (metasel's
    surrogate, the survival forest, pairwise classification, per-method forests, SUNNY), or their
    rank ensemble, picks best by inner cross-validation on the training contexts
    (:class:`~metasel.evaluation.stack.StackedStrategy`; inner folds hold out what
    ``calibrate_by`` names, as the outer folds do). Its candidates are fixed, not tuned."""
    from metasel.evaluation.baselines import PairwiseClassification, PerMethodRegression, Sunny, SurvivalForest
    from metasel.evaluation.stack import StackedStrategy

    group = metasel_kwargs.get("calibrate_by", "task")
    return StackedStrategy([metasel_strategy(metric, **metasel_kwargs), SurvivalForest(), PairwiseClassification(),
                            PerMethodRegression("rf"), Sunny()], group=group)


def default_strategies(metric: str, *, baselines=None, ensemble: bool = False, stack: bool = False,
                       **metasel_kwargs) -> list:
    """The baselines (all by default), metasel, optionally the ensemble and the stack, and the
    ELECT-style order."""
    chosen = all_baselines() if baselines is None else list(baselines)
    extra = [ensemble_strategy(metric, **metasel_kwargs)] if ensemble else []
    extra += [stack_strategy(metric, **metasel_kwargs)] if stack else []
    return [*chosen, metasel_strategy(metric, **metasel_kwargs), *extra, ElectStyle()]


def evaluate(table, metric: str, folds: Sequence[Fold], *, strategies: Sequence[Strategy], embed: str = "hash",
             embed_dims: int = 4, anytime_k: int = 5, seed: int = 0, progress: Callable[[str], None] | None = None,
             jobs: int = 1) -> EvalResult:
    """Run every strategy on every fold with the same seeds; returns per-context results.

    ``embed``/``embed_dims`` set the features the problems give the baselines. Folds are fitted
    in chunks of ``FOLD_BATCH``: a strategy with ``fit_folds`` (metasel's) fits a chunk's folds
    together, each on its own training problem. ``jobs > 1`` spreads the folds over that
    many processes; results do not depend on it.
    """
    t0 = time.monotonic()
    if jobs > 1 and len(folds) > 1:
        result = _evaluate_parallel(table, metric, list(folds), jobs=jobs, progress=progress, strategies=strategies,
                                    embed=embed, embed_dims=embed_dims, anytime_k=anytime_k, seed=seed)
    else:
        result = EvalResult("", metric, table.direction(metric))
        replay = ReplayBackend(table, metric)
        done = 0
        for start in range(0, len(folds), FOLD_BATCH):
            chunk = list(folds[start:start + FOLD_BATCH])
            problems = [fold_problems(table, metric, f, embed=embed, embed_dims=embed_dims) if f.test_contexts else None
                        for f in chunk]
            trains = [p[0] for p in problems if p is not None]
            batched = {}
            for s in strategies:
                if hasattr(s, "fit_folds"):
                    if progress:
                        progress(f"fitting {s.name} on folds {start + 1}-{start + len(chunk)} of {len(folds)} together, "
                                 f"{time.monotonic() - t0:.0f}s")
                    batched[s.name] = iter(s.fit_folds(trains, seed=seed))
            for fold, probs in zip(chunk, problems):
                if probs is not None:
                    fitted = [next(batched[s.name]) if s.name in batched else s.fit(probs[0], seed=seed) for s in strategies]
                    result.merge(_evaluate_fold(table, metric, fold, fitted, replay, probs, anytime_k=anytime_k, seed=seed))
                done += 1
                if progress:
                    progress(f"[{done}/{len(folds)}] {fold.name}: {len(fold.test_contexts)} context(s), "
                             f"{time.monotonic() - t0:.0f}s")
    result.seconds = time.monotonic() - t0
    return result


def fold_problems(table, metric: str, fold: Fold, *, embed: str, embed_dims: int) -> tuple[Problem, Problem]:
    """A fold's training and test problems, their encoder fitted on the training contexts only."""
    from metasel.data.table import descriptor_map
    from metasel.surrogate.encoding import FeatureEncoder

    train = split(table, fold)
    train_ctx = contexts_of(train, metric)
    full_long = table.long(metric)
    test_tasks = {t for t, _ in fold.test_contexts}
    methods = sorted(set(train.long(metric)["method"])
                     | set(full_long.loc[full_long["task_id"].isin(test_tasks), "method"]))
    tasks, hws = descriptor_map(table.tasks, "task_id"), descriptor_map(table.hardware, "hardware_id")
    mdesc = descriptor_map(table.methods, "method")
    enc = FeatureEncoder(embed_kind=embed if embed != "none" else "hash", embed_dims=0 if embed == "none" else embed_dims)
    enc.fit([(tasks[t], hws[h]) for t, h in train_ctx], [mdesc[m] for m in methods])
    return (make_problem(train, metric, train_ctx, methods, enc),
            make_problem(table, metric, list(fold.test_contexts), methods, enc, test=True))


def _evaluate_fold(table, metric: str, fold: Fold, strategies: Sequence[Strategy], replay: ReplayBackend,
                   problems: tuple[Problem, Problem], *, anytime_k: int, seed: int) -> EvalResult:
    """One fold's results; ``strategies`` are already fitted on its training problem."""
    from metasel.data.table import descriptor_map
    from metasel.domain.techniques import same_computation

    result = EvalResult("", metric, table.direction(metric))
    p_train, p_test = problems
    result.choices = [{"fold": fold.name, "strategy": s.name, "chosen": s.chosen, "inner": dict(s.inner_scores)}
                      for s in strategies if getattr(s, "chosen", None) is not None]
    scores = {s.name: s.scores(p_test) for s in strategies}
    sbs = SingleBest().fit(p_train, seed=seed).scores(p_test)
    with_posterior = [s for s in strategies if s.posterior(p_test) is not None]
    post = with_posterior[0].posterior(p_test) if with_posterior else None
    tasks = descriptor_map(table.tasks, "task_id")
    catalog = descriptor_map(table.methods, "method")
    catalog = {m: catalog[m] for m in p_test.methods}
    for i, (t, h) in enumerate(fold.test_contexts):
        true = p_test.score[i]
        cand = p_test.candidates(i)
        if not np.isfinite(true).any() or len(cand) == 0:
            continue
        pooled = pooled_values(true, p_test.methods, same_computation(tasks[t], catalog))
        result.pooled_contexts += int(not np.array_equal(pooled, true, equal_nan=True))
        ctx = _Context(fold.name, i, t, h, true, pooled, cand, int(np.nanargmax(true)), result.direction)
        sbs_pick = int(cand[np.argmax(sbs[i, cand])])
        sbs_regret = relative_regret(true, sbs_pick, p_test, i, result.direction)
        sbs_value = value_of(true, sbs_pick, p_test, i, result.direction)
        for s in strategies:
            if s.zero_shot:
                result.rows.append(_zero_shot_row(ctx, scores[s.name][i], s.name, p_test, sbs_regret, sbs_value))
        if post is not None:
            _add_coverage(result, ctx, post, p_test)
        rng = np.random.default_rng([seed, zlib.crc32(fold.name.encode()), i])  # same order however folds are split
        for s in strategies:
            order = s.order(p_test, i, scores=scores[s.name], candidates=cand, rng=rng, backend=replay)
            _add_anytime(result, ctx, s.name, order, p_test, anytime_k)
    return result


@dataclass(frozen=True)
class _Context:
    fold: str
    i: int
    task_id: str
    hardware_id: str
    true: np.ndarray  # oriented recorded scores of the context's methods (NaN: not measured ok)
    pooled: np.ndarray  # the same with identical computations pooled
    candidates: np.ndarray
    oracle: int
    direction: str


def _zero_shot_row(ctx: _Context, sc: np.ndarray, name: str, p_test: Problem, sbs_regret: float,
                   sbs_value: float) -> dict:
    pick = int(ctx.candidates[np.argmax(sc[ctx.candidates])])
    methods, true = p_test.methods, ctx.true
    return {
        "value": value_of(true, pick, p_test, ctx.i, ctx.direction), "sbs_value": sbs_value,
        "oracle_value": value_of(true, ctx.oracle, p_test, ctx.i, ctx.direction),
        "fold": ctx.fold, "task_id": ctx.task_id, "hardware_id": ctx.hardware_id, "strategy": name, "pick": methods[pick],
        "oracle": methods[ctx.oracle], "top1": float(pick == ctx.oracle or true[pick] == true[ctx.oracle]),
        "regret": relative_regret(true, pick, p_test, ctx.i, ctx.direction), "sbs_regret": sbs_regret,
        "ndcg3": ndcg_at(true, sc, 3), "tau": kendall_tau(true, sc),
        "top1_pooled": float(ctx.pooled[pick] == np.nanmax(ctx.pooled)),
        "regret_pooled": relative_regret(ctx.pooled, pick, p_test, ctx.i, ctx.direction),
    }


def _add_coverage(result: EvalResult, ctx: _Context, post, p_test: Problem) -> None:
    """Standardised errors of the posterior on the context's measured cells, and whether its
    50% and 90% intervals (``Posterior.interval``: calibrated widths where it has them) hold them."""
    sign = 1.0 if ctx.direction == "max" else -1.0
    num_methods = len(p_test.methods)
    (lo50, hi50), (lo90, hi90) = post.interval(0.5), post.interval(0.9)
    for j in np.flatnonzero(~np.isnan(ctx.true)):
        k = ctx.i * num_methods + j
        y = sign * ctx.true[j]
        result.coverage.append({"fold": ctx.fold, "task_id": ctx.task_id, "hardware_id": ctx.hardware_id,
                                "method": p_test.methods[j], "z": float(abs(y - post.mean[k]) / post.std[k]),
                                "err": float(post.mean[k] - y), "in50": bool(lo50[k] <= y <= hi50[k]),
                                "in90": bool(lo90[k] <= y <= hi90[k])})


def _add_anytime(result: EvalResult, ctx: _Context, name: str, order: list[int], p_test: Problem, anytime_k: int) -> None:
    curve = anytime_regret(ctx.true, order, p_test, ctx.i, ctx.direction, anytime_k)
    curve_pooled = anytime_regret(ctx.pooled, order, p_test, ctx.i, ctx.direction, anytime_k)
    hit = next((k + 1 for k, j in enumerate(order) if ctx.true[j] == ctx.true[ctx.oracle]), len(order))
    hit_pooled = next((k + 1 for k, j in enumerate(order) if ctx.pooled[j] == np.nanmax(ctx.pooled)), len(order))
    result.anytime.setdefault(name, []).append(curve)
    result.anytime_pooled.setdefault(name, []).append(curve_pooled)
    result.to_oracle.setdefault(name, []).append(float(hit))
    result.to_oracle_pooled.setdefault(name, []).append(float(hit_pooled))
    result.traces.append({"fold": ctx.fold, "task_id": ctx.task_id, "hardware_id": ctx.hardware_id, "strategy": name,
                          "order": [p_test.methods[j] for j in order[:anytime_k]], "regret_at": curve,
                          "regret_pooled_at": curve_pooled, "to_oracle": float(hit)})


def _evaluate_chunk(args):
    table, metric, folds, kwargs = args
    return evaluate(table, metric, folds, **kwargs)


def _evaluate_parallel(table, metric, folds, *, jobs, progress, **kwargs) -> EvalResult:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    t0 = time.monotonic()
    chunks = [folds[i::jobs] for i in range(jobs)]
    parts: dict[int, EvalResult] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_evaluate_chunk, (table, metric, chunk, kwargs)): k for k, chunk in enumerate(chunks) if chunk}
        for fut in as_completed(futures):
            parts[futures[fut]] = fut.result()
            if progress:
                progress(f"worker {futures[fut] + 1}/{jobs} done: {len(chunks[futures[fut]])} folds, {time.monotonic() - t0:.0f}s")
    order = {f.name: i for i, f in enumerate(folds)}
    merged = EvalResult("", metric, table.direction(metric))
    for k in sorted(parts):
        merged.merge(parts[k])
    merged.rows.sort(key=lambda r: order[r["fold"]])
    merged.traces.sort(key=lambda r: order[r["fold"]])
    merged.choices.sort(key=lambda r: order[r["fold"]])
    return merged
