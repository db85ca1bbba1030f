"""Acquisition functions: pure functions of a task's predictive over candidate methods.

Everything works on the log of the metric, so an improvement is a relative one
(``exp(gain) - 1``). ``direction`` says whether larger (``max``) or smaller (``min``)
values are better; for ``min`` the functions mirror the predictive. Configure with
:func:`functools.partial`, e.g. ``partial(expected_improvement, xi=0.01)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

_SQRT2 = math.sqrt(2.0)


def _phi(z):
    return np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def _Phi(z):
    from scipy.special import ndtr

    return ndtr(z)


def _oriented(mean, direction: str):
    if direction not in ("max", "min"):
        raise ValueError(f"direction: expected 'max' or 'min', got {direction!r}")
    mean = np.asarray(mean, dtype=float)
    return mean if direction == "max" else -mean


def expected_improvement(mean, std, best: float | None, *, direction: str = "max", xi: float = 0.0) -> np.ndarray:
    """E[max(0, y - best - xi)] per candidate (mirrored for ``min``); ``best=None`` → E[y] − min."""
    mu = _oriented(mean, direction)
    sd = np.maximum(np.asarray(std, dtype=float), 1e-12)
    if best is None:
        return mu - mu.min() + sd * _phi(0.0)
    b = best if direction == "max" else -best
    z = (mu - b - xi) / sd
    return (mu - b - xi) * _Phi(z) + sd * _phi(z)


def probability_of_improvement(mean, std, best: float, *, direction: str = "max", xi: float = 0.0) -> np.ndarray:
    mu = _oriented(mean, direction)
    b = best if direction == "max" else -best
    return _Phi((mu - b - xi) / np.maximum(np.asarray(std, dtype=float), 1e-12))


def upper_confidence_bound(mean, std, *, direction: str = "max", beta: float = 2.0) -> np.ndarray:
    """Optimistic value ``mean + sqrt(beta) * std`` (in the better direction)."""
    return _oriented(mean, direction) + math.sqrt(beta) * np.asarray(std, dtype=float)


def _draws(mean, std, cov, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    mean = np.asarray(mean, dtype=float)
    if cov is not None:
        chol = np.linalg.cholesky(np.asarray(cov, dtype=float) + 1e-9 * np.eye(len(mean)))
        return mean + rng.standard_normal((num_samples, len(mean))) @ chol.T
    return mean + rng.standard_normal((num_samples, len(mean))) * np.asarray(std, dtype=float)


def thompson_sample(mean, std, *, rng: np.random.Generator, direction: str = "max", cov=None) -> np.ndarray:
    """One draw from the (joint, when ``cov`` is given) predictive, oriented so larger is better."""
    return _oriented(_draws(mean, std, cov, 1, rng)[0], direction)


def probability_best(mean, std, *, rng: np.random.Generator, direction: str = "max", cov=None,
                     num_samples: int = 4000) -> np.ndarray:
    """P(candidate i is the best), by Monte Carlo over the (joint) predictive."""
    draws = _oriented(_draws(mean, std, cov, num_samples, rng), direction)
    winners = np.argmax(draws, axis=1)
    return np.bincount(winners, minlength=len(np.atleast_1d(mean))) / num_samples


def probability_feasible(mean, std, limit: float | None) -> np.ndarray:
    """P(metric <= limit) for a log-metric predictive (memory cap, latency SLO)."""
    mean = np.asarray(mean, dtype=float)
    if limit is None:
        return np.ones_like(mean)
    return _Phi((math.log(limit) - mean) / np.maximum(np.asarray(std, dtype=float), 1e-12))


def per_cost(score, cost) -> np.ndarray:
    """Cost-aware form: score per unit of benchmarking cost (seconds or dollars)."""
    return np.asarray(score, dtype=float) / np.maximum(np.asarray(cost, dtype=float), 1e-9)


class Scores(NamedTuple):
    """Per-candidate numbers behind one ``ask``."""

    ei: np.ndarray
    p_best: np.ndarray
    p_feasible: np.ndarray
    acquisition: np.ndarray
