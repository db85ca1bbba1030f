"""Inference in plain numpy: tower forward passes and the per-context Gaussian posterior.

A fitted model predicts and conditions without importing jax, so a cold
``metasel suggest`` stays fast. Training (``_train.py``) uses the same formulas in jax.
"""

from __future__ import annotations

import numpy as np


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def mlp(x: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """SiLU MLP; the last layer is linear. ``layers``: [(kernel (din, dout), bias (dout,)), ...]."""
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = silu(h)
    return h


def posterior(mu: np.ndarray, psi: np.ndarray, prior_var: np.ndarray, noise_var: float,
              y: np.ndarray, observed: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian posterior of one context's methods.

    The context's values are ``y = mu + psi @ w + eps`` with ``w ~ N(0, diag(prior_var))``
    and ``eps ~ N(0, noise_var)``. Given measured values ``y`` of the methods ``observed``
    (a method may be measured more than once: its noise is independent each time), returns
    the predictive mean and variance (noise included) of the methods ``query``.

    Args:
        mu: (num_methods,) prior means. psi: (num_methods, rank) loadings.
        prior_var: (rank,). y: (num_observations,) values, one per entry of ``observed``.
        observed, query: integer index arrays into the methods.
    """
    psi_q = psi[query]
    if len(observed) == 0:
        var = (psi_q ** 2) @ prior_var + noise_var
        return mu[query], var
    psi_o = psi[observed]
    precision = np.diag(1.0 / prior_var) + psi_o.T @ psi_o / noise_var
    chol = np.linalg.cholesky(precision)
    resid = np.asarray(y, dtype=float) - mu[observed]
    rhs = psi_o.T @ resid / noise_var
    mean_w = np.linalg.solve(chol.T, np.linalg.solve(chol, rhs))
    half = np.linalg.solve(chol, psi_q.T)  # (rank, q)
    var = np.sum(half ** 2, axis=0) + noise_var
    return mu[query] + psi_q @ mean_w, var


def posterior_cov(psi: np.ndarray, prior_var: np.ndarray, noise_var: float, observed: np.ndarray,
                  query: np.ndarray) -> np.ndarray:
    """Joint predictive covariance (noise included) of one context's methods ``query`` given
    measurements of ``observed`` (same model as :func:`posterior`; its diagonal is that variance).

    Returns:
        (len(query), len(query)).
    """
    psi_q = psi[query]
    noise = noise_var * np.eye(len(query))
    if len(observed) == 0:
        return (psi_q * prior_var) @ psi_q.T + noise
    psi_o = psi[observed]
    precision = np.diag(1.0 / prior_var) + psi_o.T @ psi_o / noise_var
    half = np.linalg.solve(np.linalg.cholesky(precision), psi_q.T)  # (rank, q)
    return half.T @ half + noise
