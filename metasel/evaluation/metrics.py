"""Per-context metrics of a selection: regret, ranking quality, anytime curves, pooled twins."""

from __future__ import annotations

import math

import numpy as np


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


def relative_regret(true, pick, problem, i, direction) -> float:
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


def value_of(true, pick, problem, i, direction) -> float:
    """The recorded value of a pick on the metric's own scale (a runtime, a throughput): a failed
    pick costs its recorded penalty (PAR10), else 0 for a maximised metric and NaN for a
    minimised one (no value to charge)."""
    sign = 1.0 if direction == "max" else -1.0
    got = true[pick]
    if np.isnan(got):
        got = problem.penalty[i, pick]
        if np.isnan(got):
            return 0.0 if direction == "max" else math.nan
    return float(math.exp(sign * got))


def pooled_values(true: np.ndarray, methods: list[str], same: dict[str, str]) -> np.ndarray:
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


def anytime_regret(true, order, problem, i, direction, k_max) -> list[float]:
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
