"""The Pareto view of ``evaluate``: how much of a held-out context's measured two-metric front
each strategy's predicted front reaches.

For each fold, every strategy is fitted once per metric on the fold's training part (the same
folds, seeds and encoders as the single-metric evaluation) and scores the held-out contexts'
methods on both metrics, from descriptors only. A strategy's **predicted front** is the set of
a context's methods that no other method beats on both predicted scores; metasel's is the
front that ``suggest --pareto`` shows: posterior medians of the methods predicted to run
(P(feasible) ≥ 0.5). It is then scored against what the context measured:

- **hypervolume ratio**: the area the predicted-front methods' *measured* points dominate,
  over the area of the measured front (both in log units, oriented so that larger is better,
  from a reference point 10% of the measured range below the context's worst method on each
  metric). 1 = following the prediction reaches the whole measured front; a predicted-front
  method that failed or was not measured adds nothing.
- **precision**: the share of the predicted front that is on the measured front;
  **recall**: the share of the measured front that the prediction put on its front.

Contexts where fewer than two methods measured both metrics are skipped.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from metasel.evaluation.folds import Fold
from metasel.evaluation.harness import FOLD_BATCH, fold_problems
from metasel.evaluation.strategies import SurrogateStrategy
from metasel.select.front import hypervolume, non_dominated

# baselines whose scores are predicted (normalised) values of the metric, so that a front of two
# of them means something; the others' scores are votes or expected penalties
PARETO_BASELINES = ("random", "single_best", "knn", "regression_rf", "regression_gbm")
REF_MARGIN = 0.1  # the reference point: this share of the measured range below the worst method


@dataclass
class ParetoEval:
    x: str
    y: str
    x_dir: str
    y_dir: str
    rows: list[dict] = field(default_factory=list)  # per (fold, context, strategy)
    panels: list[dict] = field(default_factory=list)  # per context: metasel's predictions and the measurements
    seconds: float = 0.0

    def summary(self) -> dict[str, dict[str, float]]:
        """Per strategy: contexts, mean and median hypervolume ratio, mean precision, recall and front size."""
        out: dict[str, dict[str, float]] = {}
        for name in dict.fromkeys(r["strategy"] for r in self.rows):
            rs = [r for r in self.rows if r["strategy"] == name]
            hv = np.array([r["hv_ratio"] for r in rs])
            out[name] = {"contexts": len(rs), "hv_ratio": float(hv.mean()), "hv_ratio_median": float(np.median(hv)),
                         "precision": float(np.mean([r["precision"] for r in rs])),
                         "recall": float(np.mean([r["recall"] for r in rs])),
                         "front_size": float(np.mean([r["front_size"] for r in rs])),
                         "measured_front_size": float(np.mean([r["measured_front_size"] for r in rs]))}
        return out


def front_scores(measured: dict[str, tuple[float, float]], predicted: dict[str, tuple[float, float]],
                 candidates: Sequence[str]) -> dict[str, float]:
    """Hypervolume ratio, precision and recall of the front of ``predicted`` (oriented scores,
    larger better, per method) against ``measured`` (oriented log values of the methods that
    measured both metrics); ``candidates``: the methods the context ran."""
    names = list(measured)
    mx, my = [measured[m][0] for m in names], [measured[m][1] for m in names]
    true_front = {m for m, on in zip(names, non_dominated(mx, my, x_dir="max", y_dir="max")) if on}
    ref = tuple(min(v) - REF_MARGIN * max(max(v) - min(v), 0.1) for v in (mx, my))
    best = hypervolume(list(zip(mx, my)), ref)
    cand = [m for m in candidates if m in predicted and all(math.isfinite(v) for v in predicted[m])]
    flags = non_dominated([predicted[m][0] for m in cand], [predicted[m][1] for m in cand], x_dir="max", y_dir="max")
    front = [m for m, on in zip(cand, flags) if on]
    hv = hypervolume([measured[m] for m in front if m in measured], ref)
    hits = len(true_front.intersection(front))
    return {"hv_ratio": hv / best if best > 0 else 1.0, "precision": hits / len(front) if front else 0.0,
            "recall": hits / len(true_front), "front_size": len(front), "measured_front_size": len(true_front),
            "front": front, "measured_front": sorted(true_front)}


def evaluate_pareto(table, x: str, y: str, folds: Sequence[Fold], *, make_strategies: Callable[[str], list],
                    embed: str = "hash", embed_dims: int = 4, seed: int = 0,
                    progress: Callable[[str], None] | None = None) -> ParetoEval:
    """Every strategy of ``make_strategies(metric)`` (fresh, unfitted) on every fold, once per metric
    (the second metric's fits with ``seed + 1``, so that a random strategy's two scores are independent)."""
    t0 = time.monotonic()
    result = ParetoEval(x, y, table.direction(x), table.direction(y))
    folds = [f for f in folds if f.test_contexts]
    names = {**_names(table.tasks, "task_id"), **_names(table.hardware, "hardware_id")}
    for start in range(0, len(folds), FOLD_BATCH):
        chunk = folds[start:start + FOLD_BATCH]
        per_metric = {}
        for k_metric, metric in enumerate((x, y)):
            problems = [fold_problems(table, metric, f, embed=embed, embed_dims=embed_dims) for f in chunk]
            fitted = []
            for s in make_strategies(metric):
                if progress:
                    progress(f"pareto: fitting {s.name} for {metric} on folds {start + 1}-{start + len(chunk)} "
                             f"of {len(folds)}, {time.monotonic() - t0:.0f}s")
                if hasattr(s, "fit_folds"):
                    fitted.append(s.fit_folds([p[0] for p in problems], seed=seed + k_metric))
                else:  # a baseline fits in place: one copy per fold
                    fitted.append([copy.copy(s).fit(p[0], seed=seed + k_metric) for p in problems])
            per_metric[metric] = (problems, fitted)
        for k, fold in enumerate(chunk):
            _score_fold(result, fold, names, {m: (per_metric[m][0][k][1], [f[k] for f in per_metric[m][1]]) for m in (x, y)})
    result.seconds = time.monotonic() - t0
    return result


def _oriented(strategy, test) -> tuple[np.ndarray, dict | None]:
    """(contexts, methods) oriented predictions; metasel's are posterior medians of the methods
    predicted to run, with its log medians and 90% intervals for the plots."""
    if isinstance(strategy, SurrogateStrategy):
        post, p_fail = strategy._predict(test)  # its cached prediction of every cell (the one scores() uses)
        shape = (len(test.contexts), len(test.methods))
        p_fail = np.asarray(p_fail).reshape(shape)
        mean = np.asarray(post.mean).reshape(shape)
        lo, hi = (np.asarray(v).reshape(shape) for v in post.interval(0.9))
        sign = 1.0 if test.direction == "max" else -1.0
        return np.where(p_fail < 0.5, sign * mean, -np.inf), {"mean": mean, "low": lo, "high": hi}
    return np.asarray(strategy.scores(test), dtype=float), None


def _names(frame, key: str) -> dict[str, str]:
    if frame is None or "name" not in getattr(frame, "columns", ()):
        return {}
    return {str(k): str(v) for k, v in zip(frame[key], frame["name"]) if isinstance(v, str) and v}


def _score_fold(result: ParetoEval, fold: Fold, names: dict[str, str], parts: dict) -> None:
    (tx, fx), (ty, fy) = parts[result.x], parts[result.y]
    preds = {s.name: (_oriented(s, tx), _oriented(s2, ty)) for s, s2 in zip(fx, fy)}
    cx, cy = {m: j for j, m in enumerate(tx.methods)}, {m: j for j, m in enumerate(ty.methods)}
    common = [m for m in tx.methods if m in cy]
    for i, (t, h) in enumerate(tx.contexts):
        if (t, h) != ty.contexts[i]:
            raise AssertionError("the two metrics' test problems list contexts in different orders")
        measured = {m: (tx.score[i, cx[m]], ty.score[i, cy[m]]) for m in common
                    if np.isfinite(tx.score[i, cx[m]]) and np.isfinite(ty.score[i, cy[m]])}
        if len(measured) < 2:
            continue
        ran = set(tx.methods[j] for j in tx.candidates(i)) | set(ty.methods[j] for j in ty.candidates(i))
        candidates = [m for m in common if m in ran]
        for name, ((sx, ex), (sy, ey)) in preds.items():
            predicted = {m: (float(sx[i, cx[m]]), float(sy[i, cy[m]])) for m in candidates}
            scores = front_scores(measured, predicted, candidates)
            result.rows.append({"fold": fold.name, "task_id": t, "hardware_id": h, "strategy": name, **scores})
            if ex is not None and ey is not None:
                result.panels.append({
                    "task": names.get(t, t), "hardware": names.get(h, h), "hv_ratio": scores["hv_ratio"],
                    "front": scores["front"], "measured_front": scores["measured_front"],
                    "measured": {m: (math.exp(tx.score[i, cx[m]] * (1 if result.x_dir == "max" else -1)),
                                     math.exp(ty.score[i, cy[m]] * (1 if result.y_dir == "max" else -1)))
                                 for m in measured},
                    "predicted": {m: tuple((math.exp(e["mean"][i, c]), math.exp(e["low"][i, c]), math.exp(e["high"][i, c]))
                                           for e, c in ((ex, cx[m]), (ey, cy[m]))) for m in scores["front"]}})


def markdown(pe: ParetoEval, *, command: str | None = None) -> str:
    s = pe.summary()
    lines = [f"\n## Pareto front: {pe.x} ({pe.x_dir}) against {pe.y} ({pe.y_dir})\n",
             "Each strategy's predicted front on each held-out context (fitted per metric on the training folds), "
             "scored against the context's measured front: hypervolume ratio (1 = it reaches the whole measured "
             "front), precision and recall of its front methods. metasel's front is `suggest --pareto`'s "
             "(posterior medians of the methods predicted to run).\n",
             "| strategy | contexts | hypervolume ratio (mean) | (median) | precision | recall | front size |",
             "|---|---|---|---|---|---|---|"]
    for name, e in sorted(s.items(), key=lambda kv: -kv[1]["hv_ratio"]):
        lines.append(f"| {name} | {e['contexts']} | {e['hv_ratio']:.3f} | {e['hv_ratio_median']:.3f} | "
                     f"{e['precision']:.2f} | {e['recall']:.2f} | {e['front_size']:.1f} |")
    if s:
        lines.append(f"\nThe measured fronts have {next(iter(s.values()))['measured_front_size']:.1f} methods on average; "
                     f"{len(pe.panels)} contexts plotted in pareto-*.png.")
    return "\n".join(lines) + "\n"


def write_pareto(pe: ParetoEval, out_dir, *, title: str) -> list[str]:
    """Append the Pareto section to results.md, add it to results.json, draw pareto-N.png; returns the PNG names."""
    import json
    from pathlib import Path

    from metasel.plots import plot_pareto_panels

    out = Path(out_dir)
    md_path, js_path = out / "results.md", out / "results.json"
    md_path.write_text((md_path.read_text() if md_path.exists() else f"# {title}\n") + markdown(pe))
    data = json.loads(js_path.read_text()) if js_path.exists() else {"title": title}
    data["pareto"] = {"x": pe.x, "y": pe.y, "summary": pe.summary(), "per_context": pe.rows, "seconds": pe.seconds}
    js_path.write_text(json.dumps(data, separators=(",", ":"), default=float))
    names = []
    per_page = 12
    for page, start in enumerate(range(0, len(pe.panels), per_page), 1):
        name = f"pareto-{page}.png"
        plot_pareto_panels(pe.panels[start:start + per_page], pe.x, pe.y, str(out / name),
                           title=f"{title}: predicted (metasel) and measured fronts")
        names.append(name)
    return names
