"""The evaluation harness: protocols, metrics, and the comparison of metasel with baselines.

Nothing from a test fold reaches fitting: each fold fits its own feature encoder
(scalers, embedding PCA), its baselines and its surrogate on the training contexts
alone, and the single best method is chosen on the training contexts.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from metasel.errors import InputDataError
from metasel.meta.baselines import Baseline, KNearest, Problem, SingleBest, all_baselines


# ---------------------------------------------------------------------------- folds


@dataclass(frozen=True)
class Fold:
    name: str
    test_contexts: tuple[tuple[str, str], ...]
    exclude_tasks: tuple[str, ...] = ()  # tasks kept out of training entirely
    exclude_hardware: tuple[str, ...] = ()


def _contexts(table, metric) -> list[tuple[str, str]]:
    obs = table.observations
    keep = obs[(obs["status"] != "ok") | obs[metric].notna()]
    return list(dict.fromkeys(zip(keep["task_id"], keep["hardware_id"])))


def _by(table, metric, position: int) -> dict[str, list[tuple[str, str]]]:
    groups: dict[str, list[tuple[str, str]]] = {}
    for ctx in _contexts(table, metric):
        groups.setdefault(ctx[position], []).append(ctx)
    return groups


def leave_one_task_out(table, metric) -> list[Fold]:
    return [Fold(f"task={t}", tuple(c), exclude_tasks=(t,)) for t, c in _by(table, metric, 0).items()]


def leave_one_hardware_out(table, metric) -> list[Fold]:
    return [Fold(f"hardware={h}", tuple(c), exclude_hardware=(h,)) for h, c in _by(table, metric, 1).items()]


def group_key(table, column: str) -> dict[str, str]:
    """task_id → group (``PerfTable.task_groups``)."""
    return table.task_groups(column)


def grouped_k_fold(table, metric, column: str, k: int, *, seed: int = 0) -> list[Fold]:
    ctx = _contexts(table, metric)
    groups = group_key(table, column)
    names = sorted({groups[t] for t, _ in ctx})
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
    from metasel.importers import read_text_table

    frame = read_text_table(path, what="folds CSV")
    for col in ("task", "fold"):
        if col not in frame.columns:
            raise InputDataError(f"{path}: header: missing column {col!r}; expected task,fold[,repetition]")
    rep = frame["repetition"] if "repetition" in frame.columns else ["1"] * len(frame)
    ctx = _contexts(table, metric)
    folds = []
    known = set(table.tasks["task_id"])
    for (r, f), sub in frame.assign(repetition=list(rep)).groupby(["repetition", "fold"], sort=True):
        tasks = set(sub["task"].str.strip())
        unknown = sorted(tasks - known)
        if unknown:
            raise InputDataError(f"{path}: fold {f}: task {unknown[0]!r} is not in the data")
        test = tuple(c for c in ctx if c[0] in tasks)
        folds.append(Fold(f"rep {r} fold {f}", test, exclude_tasks=tuple(sorted(tasks))))
    return folds


# ---------------------------------------------------------------------------- problems


def split(table, fold: Fold):
    obs = table.observations
    drop = obs["task_id"].isin(set(fold.exclude_tasks)) | obs["hardware_id"].isin(set(fold.exclude_hardware))
    test_set = set(fold.test_contexts)
    drop |= np.array([c in test_set for c in zip(obs["task_id"], obs["hardware_id"])], dtype=bool)
    return table.with_observations(obs[~drop].reset_index(drop=True))


def make_problem(table, metric: str, contexts, methods: list[str], encoder) -> Problem:
    from metasel.surrogate.model import _descriptor_map

    direction = table.direction(metric)
    sign = 1.0 if direction == "max" else -1.0
    tasks = _descriptor_map(table.tasks, "task_id")
    hws = _descriptor_map(table.hardware, "hardware_id")
    mdesc = _descriptor_map(table.methods, "method")
    ci = {c: i for i, c in enumerate(contexts)}
    mi = {m: j for j, m in enumerate(methods)}
    score = np.full((len(contexts), len(methods)), np.nan)
    failed = np.zeros_like(score, dtype=bool)
    penalty = np.full_like(score, np.nan)
    long = table.long(metric)
    for t, m, h, v in long[["task_id", "method", "hardware_id", "value"]].itertuples(index=False):
        if (t, h) in ci and m in mi and v > 0:
            score[ci[(t, h)], mi[m]] = sign * math.log(v)
    obs = table.observations
    for t, m, h, v in obs.loc[obs["status"] != "ok", ["task_id", "method", "hardware_id", metric]].itertuples(index=False):
        if (t, h) in ci and m in mi and np.isnan(score[ci[(t, h)], mi[m]]):
            failed[ci[(t, h)], mi[m]] = True
            if v == v and v > 0:
                penalty[ci[(t, h)], mi[m]] = sign * math.log(v)
    x = encoder.contexts([(tasks[t], hws[h]) for t, h in contexts])
    mx = encoder.methods([mdesc[m] for m in methods])
    e = encoder.embed_dims
    text = x[:, -2 * e:] if e and encoder.pca_task is not None and encoder.pca_task.components.shape[0] else None
    mtext = mx[:, -e:] if e and encoder.pca_method is not None and encoder.pca_method.components.shape[0] else None
    return Problem(list(contexts), list(methods), score, failed, penalty, x, mx, text, mtext)


# ---------------------------------------------------------------------------- metrics


def ndcg_at(true_row: np.ndarray, pred_row: np.ndarray, k: int) -> float:
    ok = ~np.isnan(true_row)
    if ok.sum() < 2:
        return math.nan
    t, p = true_row[ok], pred_row[ok]
    gain = np.exp(t - t.max())
    order = np.argsort(-p, kind="stable")[:k]
    ideal = np.sort(gain)[::-1][:k]
    disc = 1.0 / np.log2(np.arange(2, len(order) + 2))
    return float((gain[order] * disc).sum() / (ideal * disc[: len(ideal)]).sum())


def kendall_tau(true_row: np.ndarray, pred_row: np.ndarray) -> float:
    from scipy.stats import kendalltau

    ok = ~np.isnan(true_row) & np.isfinite(pred_row)
    if ok.sum() < 2 or np.ptp(true_row[ok]) == 0 or np.ptp(pred_row[ok]) == 0:
        return math.nan
    return float(kendalltau(true_row[ok], pred_row[ok]).statistic)


# ---------------------------------------------------------------------------- the run


class MetaselScorer:
    """The surrogate as a selector: zero-shot oriented predicted means, plus intervals."""

    name = "metasel"

    def __init__(self, metric: str, *, steps: int = 1500, embed: str = "hash", embed_dims: int = 4, seed: int = 0,
                 members: int = 0, calibrate_by: str = "task"):
        self.metric, self.steps, self.embed, self.embed_dims, self.seed = metric, steps, embed, embed_dims, seed
        self.members, self.calibrate_by = members, calibrate_by

    def fit(self, train_table):
        from dataclasses import replace

        from metasel.surrogate import Surrogate, TrainConfig

        self.model = Surrogate(self.metric, config=replace(TrainConfig(), steps=self.steps, members=self.members), embed=self.embed,
                               embed_dims=self.embed_dims).fit(train_table, key=self.seed, calibrate_by=self.calibrate_by)
        return self


@dataclass
class EvalResult:
    protocol: str
    metric: str
    direction: str
    rows: list[dict] = field(default_factory=list)  # one per (fold, context, strategy)
    coverage: list[dict] = field(default_factory=list)
    anytime: dict[str, list[list[float]]] = field(default_factory=dict)  # strategy -> per context regrets k=1..K
    to_oracle: dict[str, list[float]] = field(default_factory=dict)
    traces: list[dict] = field(default_factory=list)  # per (context, strategy): benchmark order and regret@k
    anytime_pooled: dict[str, list[list[float]]] = field(default_factory=dict)  # same, identical computations as one
    to_oracle_pooled: dict[str, list[float]] = field(default_factory=dict)
    pooled_contexts: int = 0  # contexts where some methods run the same computation
    seconds: float = 0.0


def evaluate(table, metric: str, folds: list[Fold], *, baselines: list[Baseline] | None = None, steps: int = 1500,
             embed: str = "hash", embed_dims: int = 4, members: int = 0, calibrate_by: str = "task", anytime_k: int = 5, seed: int = 0,
             progress: Callable[[str], None] | None = None, active: bool = True, jobs: int = 1,
             skip_repeats: bool = True) -> EvalResult:
    """Run every strategy on every fold with the same seeds; returns per-context results.

    ``jobs > 1`` spreads the folds over that many processes; results do not depend on it.
    ``calibrate_by`` is what metasel's calibration inner fit leaves out; set it to what the
    folds hold out (``task``, ``hardware`` or the grouping column) — training data only.
    ``skip_repeats``: metasel's loop skips methods that run a computation it has measured.
    """
    if jobs > 1 and len(folds) > 1:
        return _evaluate_parallel(table, metric, folds, jobs=jobs, baselines=baselines, steps=steps, embed=embed,
                                  embed_dims=embed_dims, members=members, calibrate_by=calibrate_by, anytime_k=anytime_k, seed=seed, progress=progress, active=active,
                                  skip_repeats=skip_repeats)
    from metasel.meta.features import FeatureEncoder, same_computation
    from metasel.meta.replay import ReplayBackend
    from metasel.meta.selector import Selector, StopRule

    direction = table.direction(metric)
    baselines = all_baselines() if baselines is None else baselines
    result = EvalResult("", metric, direction)
    replay = ReplayBackend(table, metric)
    t0 = time.monotonic()
    from metasel.surrogate.model import _descriptor_map

    tasks = _descriptor_map(table.tasks, "task_id")
    hws = _descriptor_map(table.hardware, "hardware_id")
    mdesc = _descriptor_map(table.methods, "method")
    full_long = table.long(metric)
    for n, fold in enumerate(folds, 1):
        if not fold.test_contexts:
            continue
        train = split(table, fold)
        train_ctx = _contexts(train, metric)
        test_tasks = {t for t, _ in fold.test_contexts}
        methods = sorted(set(train.long(metric)["method"])
                         | set(full_long.loc[full_long["task_id"].isin(test_tasks), "method"]))
        enc = FeatureEncoder(embed_kind=embed if embed != "none" else "hash", embed_dims=0 if embed == "none" else embed_dims)
        catalog = {m: mdesc[m] for m in methods}
        enc.fit([(tasks[t], hws[h]) for t, h in train_ctx], list(catalog.values()))
        p_train = make_problem(train, metric, train_ctx, methods, enc)
        p_test = make_problem(table, metric, list(fold.test_contexts), methods, enc)
        strategies: dict[str, np.ndarray] = {}
        for b in baselines:
            strategies[b.name] = b.fit(p_train, seed=seed).scores(p_test)
        sbs = SingleBest().fit(p_train, seed=seed).scores(p_test)
        ms = MetaselScorer(metric, steps=steps, embed=embed, embed_dims=embed_dims, seed=seed, members=members,
                           calibrate_by=calibrate_by).fit(train)
        cells = [(t, m, h) for t, h in fold.test_contexts for m in methods]
        pred = ms.model.predict(cells, table=table)
        sign = 1.0 if direction == "max" else -1.0
        zero = (sign * pred.mean).reshape(len(fold.test_contexts), len(methods))
        # methods the failure model expects to fail (oom, unsupported) go last, likeliest failures lowest
        p_fail = ms.model.p_fail(cells, table=table).reshape(zero.shape)
        strategies["metasel"] = np.where(p_fail > 0.5, np.nanmin(zero) - 1.0 - p_fail, zero)
        mean = pred.mean.reshape(len(fold.test_contexts), len(methods))
        std = pred.std.reshape(len(fold.test_contexts), len(methods))
        for i, (t, h) in enumerate(fold.test_contexts):
            true = p_test.score[i]
            cand = p_test.candidates(i)
            if not np.isfinite(true).any() or len(cand) == 0:
                continue
            pooled = _pooled(true, methods, same_computation(tasks[t], catalog))
            result.pooled_contexts += int(not np.array_equal(pooled, true, equal_nan=True))
            oracle = int(np.nanargmax(true))
            sbs_pick = int(cand[np.argmax(sbs[i, cand])])
            sbs_regret = _rel_regret(true, sbs_pick, p_test, i, direction)
            for name, sc in strategies.items():
                pick = int(cand[np.argmax(sc[i, cand])])
                result.rows.append({
                    "fold": fold.name, "task_id": t, "hardware_id": h, "strategy": name, "pick": methods[pick],
                    "oracle": methods[oracle], "top1": float(pick == oracle or true[pick] == true[oracle]),
                    "regret": _rel_regret(true, pick, p_test, i, direction), "sbs_regret": sbs_regret,
                    "ndcg3": ndcg_at(true, sc[i], 3), "tau": kendall_tau(true, sc[i]),
                    "top1_pooled": float(pooled[pick] == np.nanmax(pooled)),
                    "regret_pooled": _rel_regret(pooled, pick, p_test, i, direction),
                })
            for j in np.flatnonzero(~np.isnan(true)):
                y = sign * true[j]
                z = abs(y - mean[i, j]) / std[i, j]
                result.coverage.append({"fold": fold.name, "task_id": t, "hardware_id": h, "method": methods[j],
                                        "z": float(z), "err": float(mean[i, j] - y)})
            # anytime: benchmark in each strategy's order (metasel: the active loop)
            orders = {name: [int(j) for j in cand[np.argsort(-sc[i, cand], kind="stable")]] for name, sc in strategies.items()
                      if name not in ("random", "metasel")}
            rng = np.random.default_rng([seed, zlib.crc32(fold.name.encode()), i])  # same order however folds are split
            orders["random"] = [int(j) for j in rng.permutation(cand)]
            knn = KNearest(k=1).fit(p_train).scores(p_test)[i]
            orders["elect"] = [int(j) for j in cand[np.argsort(-knn[cand], kind="stable")]]
            if active:
                # descriptors of the held-out context only: none of its observations
                fresh = ms.model.forget([t]).condition(
                    table.filter(tasks=[t], hardware=[h]).with_observations(table.observations.iloc[0:0]))
                sel = Selector(fresh, t, h, candidates=[methods[j] for j in cand], rule=StopRule(min_gain=0.0), key=seed,
                               skip_repeats=skip_repeats)
                order = []
                while True:
                    ask = sel.ask()
                    if ask.method is None:
                        break
                    meas = replay.measure(t, ask.method, h)
                    sel.tell(ask.method, meas.value, status=meas.status)
                    order.append(methods.index(ask.method))
                orders["metasel"] = order
            for name, order in orders.items():
                curve = _anytime(true, order, p_test, i, direction, anytime_k)
                result.anytime.setdefault(name, []).append(curve)
                curve_pooled = _anytime(pooled, order, p_test, i, direction, anytime_k)
                result.anytime_pooled.setdefault(name, []).append(curve_pooled)
                hit = next((k + 1 for k, j in enumerate(order) if true[j] == true[oracle]), len(order))
                result.to_oracle.setdefault(name, []).append(float(hit))
                hit_pooled = next((k + 1 for k, j in enumerate(order) if pooled[j] == np.nanmax(pooled)), len(order))
                result.to_oracle_pooled.setdefault(name, []).append(float(hit_pooled))
                result.traces.append({"fold": fold.name, "task_id": t, "hardware_id": h, "strategy": name,
                                      "order": [methods[j] for j in order[:anytime_k]], "regret_at": curve,
                                      "regret_pooled_at": curve_pooled,
                                      "to_oracle": float(hit)})
        if progress:
            progress(f"[{n}/{len(folds)}] {fold.name}: {len(fold.test_contexts)} context(s), {time.monotonic() - t0:.0f}s")
    result.seconds = time.monotonic() - t0
    return result


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
        r = parts[k]
        merged.rows += r.rows
        merged.coverage += r.coverage
        merged.traces += r.traces
        for name, curves in r.anytime.items():
            merged.anytime.setdefault(name, []).extend(curves)
        for name, curves in r.anytime_pooled.items():
            merged.anytime_pooled.setdefault(name, []).extend(curves)
        for name, hits in r.to_oracle_pooled.items():
            merged.to_oracle_pooled.setdefault(name, []).extend(hits)
        merged.pooled_contexts += r.pooled_contexts
        for name, hits in r.to_oracle.items():
            merged.to_oracle.setdefault(name, []).extend(hits)
    merged.rows.sort(key=lambda r: order[r["fold"]])
    merged.traces.sort(key=lambda r: order[r["fold"]])
    merged.seconds = time.monotonic() - t0
    return merged


def _rel_regret(true, pick, problem, i, direction) -> float:
    """Relative regret on the metric's own scale: (P_o − P_s)/P_o for max, (P_s − P_o)/P_o for min.
    A failed pick costs its recorded penalty (PAR-style) when the data has one, else regret 1 (max) / 9 (min, PAR10)."""
    best = np.nanmax(true)
    got = true[pick]
    if np.isnan(got):
        pen = problem.penalty[i, pick]
        if np.isnan(pen):
            return 1.0 if direction == "max" else 9.0
        got = pen
    if direction == "max":
        return float(1.0 - math.exp(got - best))
    return float(math.exp(best - got) - 1.0)


def _pooled(true: np.ndarray, methods: list[str], same: dict[str, str]) -> np.ndarray:
    """A context's recorded values with methods that run the same computation pooled: each
    measured method takes the mean (of the log values) of its measured twins, so which twin
    happened to be recorded fastest no longer counts. Unmeasured or failed cells stay NaN."""
    out = true.copy()
    rep = np.array([same.get(m, m) for m in methods])
    for r in set(rep[rep != np.array(methods)]):
        members = np.flatnonzero((rep == r) & ~np.isnan(true))
        if len(members) > 1:
            out[members] = true[members].mean()
    return out


def _anytime(true, order, problem, i, direction, k_max) -> list[float]:
    best = -math.inf
    out = []
    for k in range(k_max):
        if k < len(order) and not np.isnan(true[order[k]]):
            best = max(best, true[order[k]])
        if best == -math.inf:
            out.append(1.0 if direction == "max" else 9.0)
        else:
            out.append(float(1.0 - math.exp(best - np.nanmax(true))) if direction == "max"
                       else float(math.exp(np.nanmax(true) - best) - 1.0))
    return out


# ---------------------------------------------------------------------------- reporting


def summarise(result: EvalResult) -> dict[str, dict[str, float]]:
    """Per strategy: mean ± std over folds of each metric, gap closed, coverage, Wilcoxon p."""
    import pandas as pd
    from scipy.stats import wilcoxon

    rows = pd.DataFrame(result.rows)
    out: dict[str, dict[str, float]] = {}
    by_context = rows.set_index(["fold", "task_id", "hardware_id"])

    def paired_p(name: str, col: str) -> float:
        """Wilcoxon p of metasel against ``name`` on ``col``, paired by context."""
        a, b = (by_context.loc[by_context.strategy == n, col] for n in ("metasel", name))
        a, b = a.align(b, join="inner")
        return float(wilcoxon(a, b, zero_method="zsplit").pvalue) if (a != b).any() else 1.0

    for name, sub in rows.groupby("strategy", sort=False):
        per_fold = sub.groupby("fold")[["top1", "regret", "ndcg3", "tau"]].mean()
        entry = {}
        for col in ("top1", "regret", "ndcg3", "tau"):
            entry[col] = float(sub[col].mean())
            entry[f"{col}_fold_std"] = float(per_fold[col].std(ddof=0)) if len(per_fold) > 1 else 0.0
        r_sbs = sub["sbs_regret"].mean()
        entry["gap_closed"] = float((r_sbs - sub["regret"].mean()) / r_sbs) if r_sbs > 0 else math.nan
        if name != "metasel":
            entry["wilcoxon_p"] = paired_p(name, "regret")
        curves = result.anytime.get(name)
        if curves:
            arr = np.asarray(curves)
            for k in range(arr.shape[1]):
                entry[f"regret@{k + 1}"] = float(arr[:, k].mean())
        if result.pooled_contexts and "regret_pooled" in sub:
            entry["top1_pooled"], entry["regret_pooled"] = float(sub["top1_pooled"].mean()), float(sub["regret_pooled"].mean())
            if name != "metasel":
                entry["wilcoxon_p_pooled"] = paired_p(name, "regret_pooled")
        if name in result.to_oracle:
            entry["to_oracle"] = float(np.mean(result.to_oracle[name]))
        out[name] = entry
    for name in ("random", "elect"):
        if name in result.anytime and name not in out:
            arr = np.asarray(result.anytime[name])
            out[name] = {f"regret@{k + 1}": float(arr[:, k].mean()) for k in range(arr.shape[1])}
            out[name]["to_oracle"] = float(np.mean(result.to_oracle[name]))
    if result.pooled_contexts:
        for name, curves in result.anytime_pooled.items():
            arr = np.asarray(curves)
            out.setdefault(name, {}).update({f"regret_pooled@{k + 1}": float(arr[:, k].mean()) for k in range(arr.shape[1])})
            if result.to_oracle_pooled.get(name):
                out[name]["to_oracle_pooled"] = float(np.mean(result.to_oracle_pooled[name]))
            out[name]["pooled_contexts"] = result.pooled_contexts
    if result.coverage:
        z = np.array([c["z"] for c in result.coverage])
        err = np.array([c["err"] for c in result.coverage])
        out["metasel"]["coverage50"] = float(np.mean(z < 0.6745))
        out["metasel"]["coverage90"] = float(np.mean(z < 1.6449))
        out["metasel"]["log_rmse"] = float(np.sqrt(np.mean(err ** 2)))
    return out


def markdown(summary: dict[str, dict[str, float]], *, title: str, anytime_k: int = 5) -> str:
    def f(v, pct=False):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return f"{v:.1%}" if pct else f"{v:.3f}"

    lines = [f"### {title}", "",
             "| strategy | top-1 | rel. regret | gap closed | NDCG@3 | Kendall τ | Wilcoxon p (vs metasel) | "
             + " | ".join(f"regret@{k}" for k in range(1, anytime_k + 1)) + " | benchmarks to oracle |",
             "|---|---|---|---|---|---|---|" + "---|" * anytime_k + "---|"]
    order = ["metasel"] + [k for k in summary if k != "metasel"]
    for name in order:
        s = summary[name]
        top1 = f"{f(s.get('top1'))} ± {f(s.get('top1_fold_std'))}" if "top1" in s else "-"
        reg = f"{f(s.get('regret'), True)} ± {f(s.get('regret_fold_std'), True)}" if "regret" in s else "-"
        lines.append(f"| {name} | {top1} | {reg} | {f(s.get('gap_closed'))} | {f(s.get('ndcg3'))} | {f(s.get('tau'))} | "
                     f"{f(s.get('wilcoxon_p'))} | " + " | ".join(f(s.get(f'regret@{k}'), True) for k in range(1, anytime_k + 1))
                     + f" | {f(s.get('to_oracle'))} |")
    ms = summary.get("metasel", {})
    if "regret_pooled" in ms:
        lines += ["", f"Identical computations as one ({ms['pooled_contexts']:.0f} contexts have methods that run the same "
                      "computation — static batching of one request, a prefix cache with no shared prefix; there each "
                      "measured twin counts with the mean of the twins' recorded values, so which twin was recorded "
                      "fastest by chance no longer decides the oracle):", "",
                  "| strategy | top-1 | rel. regret | Wilcoxon p (vs metasel) | "
                  + " | ".join(f"regret@{k}" for k in range(1, anytime_k + 1))
                  + " | benchmarks to oracle |", "|---|---|---|---|" + "---|" * anytime_k + "---|"]
        for name in order:
            s = summary[name]
            if not any(k.startswith("regret_pooled") for k in s):
                continue
            lines.append(f"| {name} | {f(s.get('top1_pooled'))} | {f(s.get('regret_pooled'), True)} | "
                         f"{f(s.get('wilcoxon_p_pooled'))} | "
                         + " | ".join(f(s.get(f'regret_pooled@{k}'), True) for k in range(1, anytime_k + 1))
                         + f" | {f(s.get('to_oracle_pooled'))} |")
    if "coverage90" in ms:
        lines += ["", f"metasel held-out cells: log-RMSE {ms['log_rmse']:.3f}, 50% interval coverage "
                      f"{ms['coverage50']:.1%}, 90% interval coverage {ms['coverage90']:.1%}."]
    return "\n".join(lines) + "\n"


def write_report(result: EvalResult, out_dir: str | Path, *, title: str, anytime_k: int = 5) -> dict:
    from metasel.meta.plots import plot_curve

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(result)
    md = markdown(summary, title=title, anytime_k=anytime_k)
    md += f"\n{len({(r['task_id'], r['hardware_id']) for r in result.rows})} held-out (task, hardware) contexts; " \
          f"evaluation took {result.seconds:.0f}s.\n"
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps({"title": title, "metric": result.metric, "direction": result.direction,
                                                  "summary": summary, "per_context": result.rows,
                                                  "anytime_per_context": result.traces,
                                                  "seconds": result.seconds}, separators=(",", ":"), default=float))
    curves = {name: np.asarray(c).mean(axis=0).tolist() for name, c in result.anytime.items()}
    plot_curve(curves, f"{title}: anytime regret", "mean relative regret", str(out / "anytime.png"))
    import pandas as pd

    rows = pd.DataFrame(result.rows)
    per_task = rows.groupby(["strategy", "task_id"])["regret"].mean().unstack(0)
    keep = [c for c in ("metasel", "single_best", "knn", "regression_rf") if c in per_task]
    _plot_per_task(per_task[keep], out / "per_task_regret.png", title)
    return summary


def _plot_per_task(frame, path, title):
    from metasel.meta.plots import _plt

    plt = _plt()
    frame = frame.sort_values(frame.columns[0])
    fig, ax = plt.subplots(figsize=(8, 4))
    for col in frame.columns:
        ax.plot(range(len(frame)), frame[col].to_numpy(), marker=".", linestyle="none", label=col)
    ax.set_xlabel("held-out task (sorted by metasel regret)")
    ax.set_ylabel("relative regret")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_title(f"{title}: per-task regret", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
