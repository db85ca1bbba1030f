"""Which quantity a zero-shot pick maximises: the expected value, a risk quantile, or P(best).

A surrogate predicts log(metric) of a successful run as a normal (mean, std) and, apart
from it, P(the run fails). What a user pays for is the metric's own value, and a failure
has one too: zero throughput, or a penalised runtime (ASlib's PAR10 charges 10 × the
cutoff). A pick by the median of log runtime ignores the chance of a timeout, which is
exactly what dominates a mean of penalised runtimes; these choices take it into account.

- ``mean`` (default): the expected value, failures included:
  ``(1 - p) * E[value | ok] + p * failure value``, with ``E[value | ok] = exp(mu + s^2/2)``
  (capped at the failure value for a minimised metric: a run that finishes costs less than
  one that does not).
- ``quantile`` (``risk = q``): the value reached with probability ``q`` on the bad side —
  the ``1 - q`` quantile of a throughput, the ``q`` quantile of a runtime or latency —
  under the same mixture of success and failure.
- ``p_best``: P(the method is the best of the context's candidates), by Monte Carlo draws
  from the mixture (a fixed seed: deterministic).

All three return one score per (context, method), higher = better, for (C, M) arrays. For a
minimised metric with no recorded failure value, a failure is worse than any run: the
expected value and quantile order by the successful run and put a likely failure
(P > 0.5) last, as the surrogate strategies always did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from metasel.errors import InputDataError

CHOICES = ("mean", "quantile", "p_best")
_DRAWS = 2000


@dataclass(frozen=True)
class Choice:
    """What a pick maximises: ``by`` in :data:`CHOICES`; ``risk`` is the quantile's probability."""

    by: str = "mean"
    risk: float = 0.9

    def __post_init__(self):
        if self.by not in CHOICES:
            raise InputDataError(f"choice: expected one of {list(CHOICES)}, got {self.by!r}")
        if not 0.0 < self.risk < 1.0:
            raise InputDataError(f"risk: expected a probability strictly between 0 and 1, got {self.risk!r}")

    @classmethod
    def parse(cls, text: str) -> "Choice":
        """``mean``, ``p_best``, ``quantile`` or ``quantile:Q`` (e.g. ``quantile:0.9``)."""
        name, _, q = str(text).partition(":")
        if name == "quantile" and q:
            try:
                return cls("quantile", float(q))
            except ValueError:
                raise InputDataError(f"choice: expected quantile:<probability>, got {text!r}") from None
        if q:
            raise InputDataError(f"choice: expected mean, p_best or quantile[:Q], got {text!r}")
        return cls(name)

    def describe(self) -> str:
        return {"mean": "expected value", "p_best": "P(best)"}.get(self.by, f"{self.risk:g} risk quantile")


def failure_values(penalty: np.ndarray, direction: str) -> np.ndarray:
    """Per method, the value a failure costs, from a training problem's recorded penalties
    ((C, M) oriented log values, NaN where none): their median per method, else over all
    methods; for a maximised metric a failure is worth 0; NaN = none known (a minimised
    metric whose failures recorded no value)."""
    m = penalty.shape[1]
    if direction == "max":
        return np.zeros(m)
    sign = -1.0
    values = np.exp(sign * penalty)  # back to the metric's scale
    out = np.full(m, np.nan)
    overall = float(np.nanmedian(values)) if np.isfinite(values).any() else math.nan
    for j in range(m):
        col = values[:, j]
        out[j] = float(np.nanmedian(col)) if np.isfinite(col).any() else overall
    return out


def choice_scores(mean: np.ndarray, std: np.ndarray, p_fail: np.ndarray, *, direction: str,
                  failure_value: np.ndarray | None = None, choice: Choice = Choice(), seed: int = 0) -> np.ndarray:
    """(C, M) scores, higher = better, of predictive log-normal runs (``mean``, ``std`` of log
    value) that fail with ``p_fail``; ``failure_value`` (M,) or (C, M) is what a failure costs
    on the metric's scale (0 for a maximised metric; NaN: unknown). See the module docs."""
    from scipy.special import ndtri

    if direction not in ("max", "min"):
        raise InputDataError(f"direction: expected 'max' or 'min', got {direction!r}")
    mean, std = np.asarray(mean, float), np.maximum(np.asarray(std, float), 1e-9)
    p = np.clip(np.asarray(p_fail, float), 0.0, 1.0)
    if direction == "max":  # a failure is worth nothing, whatever failure_value says
        fail = np.zeros(mean.shape)
    else:
        fail = np.broadcast_to(np.asarray(np.nan if failure_value is None else failure_value, float), mean.shape)
    known = np.isfinite(fail)
    if choice.by == "p_best":
        return _p_best(mean, std, p, fail, direction, seed)
    cap = np.where(known, fail, np.inf)  # a minimised run that finishes costs less than a failure
    if choice.by == "mean":
        ok_value = np.exp(np.minimum(mean + 0.5 * std ** 2, 700.0))  # exp(700) already exceeds any cap
        if direction == "min":
            ok_value = np.minimum(ok_value, cap)
        value = np.where(known, (1.0 - p) * ok_value + p * np.where(known, fail, 0.0), ok_value)
    else:
        q = choice.risk
        with np.errstate(divide="ignore", invalid="ignore"):
            if direction == "max":  # the 1 - q quantile of (0 w.p. p, lognormal w.p. 1 - p)
                z = ndtri(np.clip((1.0 - q - p) / (1.0 - p), 1e-12, 1.0 - 1e-12))
                value = np.where(p >= 1.0 - q, 0.0, np.exp(mean + std * z))
            else:  # the q quantile of (failure value w.p. p, lognormal w.p. 1 - p)
                z = ndtri(np.clip(q / (1.0 - p), 1e-12, 1.0 - 1e-12))
                value = np.where(q >= 1.0 - p, cap, np.minimum(np.exp(mean + std * z), cap))
    return _oriented_log(value, p, known, direction)


def _oriented_log(value: np.ndarray, p: np.ndarray, known: np.ndarray, direction: str) -> np.ndarray:
    """Scores in oriented log units; an unknown cost of failure puts likely failures last."""
    with np.errstate(divide="ignore"):
        s = np.log(np.maximum(value, 1e-300)) * (1.0 if direction == "max" else -1.0)
    s = np.where(np.isfinite(s), s, np.nan)
    floor = (np.nanmin(s) if np.isfinite(s).any() else 0.0) - 1.0
    s = np.where(np.isnan(s), floor - p, s)  # zero throughput / infinite runtime: last, likeliest failures lowest
    if direction == "min":
        s = np.where(~known & (p > 0.5), floor - p, s)
    return s


def _p_best(mean, std, p, fail, direction, seed) -> np.ndarray:
    """P(best) per cell of each context (row), from independent draws of the success/failure mixture."""
    rng = np.random.default_rng(seed)
    c, m = mean.shape
    out = np.zeros((c, m))
    sign = 1.0 if direction == "max" else -1.0
    worst = -np.inf
    chunk = max(1, 4_000_000 // (_DRAWS * max(m, 1)))  # contexts per batch of draws (~100 MB)
    for start in range(0, c, chunk):
        sl = slice(start, min(c, start + chunk))
        n = sl.stop - sl.start
        logv = mean[sl] + std[sl] * rng.standard_normal((_DRAWS, n, m))
        failed = rng.random((_DRAWS, n, m)) < p[sl]
        with np.errstate(divide="ignore"):
            fail_score = np.where(np.isfinite(fail[sl]), sign * np.log(np.maximum(fail[sl], 1e-300)), worst)
        score = np.where(failed, fail_score, sign * logv)
        best = score.max(axis=2, keepdims=True)
        win = (score == best).astype(float)
        out[sl] = (win / win.sum(axis=2, keepdims=True)).mean(axis=0)  # ties (all failed) share the win
    return out
