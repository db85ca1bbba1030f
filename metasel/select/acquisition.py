"""Acquisition functions: pure functions of a task's joint predictive over candidate methods.

Everything works on the log of the metric, so an improvement is a relative one
(``exp(gain) - 1``). ``direction`` says whether larger (``max``) or smaller (``min``)
values are better; for ``min`` the functions mirror the predictive.

Two layers, as in BoTorch: math helpers on arrays (``expected_improvement(mean, std, best)``
…), and acquisitions — ``acq(posterior, context) -> scores`` — that the selector calls. An
acquisition is any such callable; :data:`ACQUISITIONS` names the built-in ones and
:func:`resolve` turns a name (``"ei"``, ``"pbest_per_cost"``) into one. Configure with
:func:`functools.partial`, e.g. ``partial(ei, xi=0.01)``. Thompson sampling and P(best)
draw from the joint posterior when it has per-context covariances.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
from scipy.special import ndtr
from scipy.stats import norm

from metasel.errors import InputDataError
from metasel.surrogate.base import Posterior


def _oriented(mean, direction: str):
    if direction not in ("max", "min"):
        raise InputDataError(f"direction: expected 'max' or 'min', got {direction!r}")
    mean = np.asarray(mean, dtype=float)
    return mean if direction == "max" else -mean


# ---------------------------------------------------------------------------- math helpers


def expected_improvement(mean, std, best: float | None, *, direction: str = "max", xi: float = 0.0) -> np.ndarray:
    """E[max(0, y - best - xi)] per candidate (mirrored for ``min``); ``best=None`` → E[y] − min."""
    mu = _oriented(mean, direction)
    sd = np.maximum(np.asarray(std, dtype=float), 1e-12)
    if best is None:
        return mu - mu.min() + sd * norm.pdf(0.0)
    b = best if direction == "max" else -best
    z = (mu - b - xi) / sd
    return (mu - b - xi) * ndtr(z) + sd * norm.pdf(z)


def probability_of_improvement(mean, std, best: float, *, direction: str = "max", xi: float = 0.0) -> np.ndarray:
    mu = _oriented(mean, direction)
    b = best if direction == "max" else -best
    return ndtr((mu - b - xi) / np.maximum(np.asarray(std, dtype=float), 1e-12))


def upper_confidence_bound(mean, std, *, direction: str = "max", beta: float = 2.0) -> np.ndarray:
    """Optimistic value ``mean + sqrt(beta) * std`` (in the better direction)."""
    return _oriented(mean, direction) + math.sqrt(beta) * np.asarray(std, dtype=float)


def draws(mean, std, cov, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """(num_samples, n) draws from N(mean, cov), or independent normals when ``cov`` is None."""
    mean = np.asarray(mean, dtype=float)
    if cov is not None:
        chol = np.linalg.cholesky(np.asarray(cov, dtype=float) + 1e-9 * np.eye(len(mean)))
        return mean + rng.standard_normal((num_samples, len(mean))) @ chol.T
    return mean + rng.standard_normal((num_samples, len(mean))) * np.asarray(std, dtype=float)


def thompson_sample(mean, std, *, rng: np.random.Generator, direction: str = "max", cov=None) -> np.ndarray:
    """One draw from the (joint, when ``cov`` is given) predictive, oriented so larger is better."""
    return _oriented(draws(mean, std, cov, 1, rng)[0], direction)


def probability_best(mean, std, *, rng: np.random.Generator, direction: str = "max", cov=None,
                     num_samples: int = 4000) -> np.ndarray:
    """P(candidate i is the best), by Monte Carlo over the (joint, when ``cov`` is given) predictive."""
    sample = _oriented(draws(mean, std, cov, num_samples, rng), direction)
    winners = np.argmax(sample, axis=1)
    return np.bincount(winners, minlength=len(np.atleast_1d(mean))) / num_samples


def probability_feasible(mean, std, limit: float | None) -> np.ndarray:
    """P(metric <= limit) for a log-metric predictive (memory cap, latency SLO)."""
    mean = np.asarray(mean, dtype=float)
    if limit is None:
        return np.ones_like(mean)
    return ndtr((math.log(limit) - mean) / np.maximum(np.asarray(std, dtype=float), 1e-12))


def per_cost(score, cost) -> np.ndarray:
    """Cost-aware form: score per unit of benchmarking cost (seconds or dollars)."""
    return np.asarray(score, dtype=float) / np.maximum(np.asarray(cost, dtype=float), 1e-9)


# ---------------------------------------------------------------------------- acquisitions


class AcquisitionContext(NamedTuple):
    """What an acquisition knows beyond the posterior of the remaining candidates."""

    direction: str
    best: float | None  # best measured log value so far (None: nothing measured yet)
    p_feasible: np.ndarray  # P(runs and meets the constraints), per candidate
    cost: np.ndarray  # predicted cost of benchmarking each candidate (seconds or dollars)
    rng: np.random.Generator


Acquisition = Callable[[Posterior, AcquisitionContext], np.ndarray]


def ei(post: Posterior, ctx: AcquisitionContext, *, xi: float = 0.0) -> np.ndarray:
    """Expected improvement over the best measured value, times P(feasible)."""
    return expected_improvement(post.mean, post.std, ctx.best, direction=ctx.direction, xi=xi) * ctx.p_feasible


def ucb(post: Posterior, ctx: AcquisitionContext, *, beta: float = 2.0) -> np.ndarray:
    return upper_confidence_bound(post.mean, post.std, direction=ctx.direction, beta=beta) * ctx.p_feasible


def thompson(post: Posterior, ctx: AcquisitionContext) -> np.ndarray:
    """A joint draw of the candidates, penalised by log P(feasible)."""
    return (thompson_sample(post.mean, post.std, rng=ctx.rng, direction=ctx.direction, cov=post.joint_covariance())
            + np.log(np.maximum(ctx.p_feasible, 1e-12)))


def pbest(post: Posterior, ctx: AcquisitionContext) -> np.ndarray:
    """P(the candidate is the best) under the joint posterior, times P(feasible)."""
    return probability_best(post.mean, post.std, rng=ctx.rng, direction=ctx.direction, cov=post.joint_covariance()) * ctx.p_feasible


def cost_aware(acquisition: Acquisition, *, shift: bool = False) -> Acquisition:
    """``acquisition`` per unit of benchmarking cost; ``shift`` first moves its scores to start at 0
    (for scores that can be negative: UCB, Thompson)."""

    def scored(post: Posterior, ctx: AcquisitionContext) -> np.ndarray:
        score = acquisition(post, ctx)
        return per_cost(score - score.min() if shift else score, ctx.cost)

    return scored


ACQUISITIONS: dict[str, Acquisition] = {"ei": ei, "ucb": ucb, "thompson": thompson, "pbest": pbest}
_SIGNED = ("ucb", "thompson")  # scores that can be negative: shifted before dividing by cost


def resolve(acquisition: str | Acquisition) -> Acquisition:
    """An acquisition callable from a name (``ei``, ``ucb``, ``thompson``, ``pbest``, each optionally
    ``_per_cost``) or the callable itself."""
    if callable(acquisition):
        return acquisition
    kind, costly, rest = str(acquisition).partition("_per_cost")
    if kind not in ACQUISITIONS or rest:
        raise InputDataError(f"acquisition: expected one of {sorted(ACQUISITIONS)} (optionally with _per_cost), "
                             f"got {acquisition!r}")
    return cost_aware(ACQUISITIONS[kind], shift=kind in _SIGNED) if costly else ACQUISITIONS[kind]
