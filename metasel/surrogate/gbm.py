"""A second, simple surrogate: gradient-boosted trees plus a per-context random offset.

In log-metric units, for context c = (task, hardware) and method m::

    y[c, m] = f(x_c, x_m, z(c, m)) + b_c + eps,   b_c ~ N(0, s^2),   eps ~ N(0, sigma^2)

f is an ensemble of scikit-learn ``HistGradientBoostingRegressor`` members over the
encoded context features, method features, pair terms and an indicator of each training
method (one row per cell, so a method never measured is predicted from its features). Each member leaves out one fold of the
training contexts; its errors on that fold are out-of-fold residuals, from which sigma^2
(spread within a context) and s^2 (spread of a context's mean residual) are estimated by
the method of moments. Observing n methods of a context gives b_c's Gaussian posterior in
closed form (shrunk mean residual), so ``condition`` is milliseconds and methods of one
context are correlated through b_c. The predictive std adds the members' disagreement.

It is not the project's main learner; it exists so that the :class:`Surrogate` protocol
has two implementations, both held to one conformance suite, and as a strong, fast
reference. It needs scikit-learn (``metasel[eval]``) to fit and to predict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Iterable

import numpy as np

from metasel.errors import InputDataError, NotFittedError
from metasel.surrogate._common import Catalog, Failures, cells_frame, context_keys, p_fail_cells, seed_of
from metasel.surrogate.base import Posterior
from metasel.surrogate.encoding import FeatureEncoder

if TYPE_CHECKING:  # pragma: no cover
    from metasel.data.table import PerfTable


@dataclass(frozen=True)
class GBMConfig:
    folds: int = 5  # ensemble members; each leaves out one fold of the training contexts
    max_iter: int = 200
    learning_rate: float = 0.05
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 5
    max_features: float = 0.8  # features tried per split (the members' randomness)


@dataclass(frozen=True)
class _State:
    metric: str
    direction: str
    encoder: FeatureEncoder
    train_methods: tuple  # one indicator column each (a method never trained on has none set)
    members: tuple  # fitted regressors
    catalog: Catalog
    evidence: dict  # (task, hw) -> {method: log value}
    noise_var: float  # sigma^2: within-context residual variance
    offset_var: float  # s^2: prior variance of a context's offset
    failures: Failures


class GBMSurrogate:
    """Boosted trees + per-context random offset, for one metric (see the module docs)."""

    def __init__(self, metric: str = "throughput_tok_s", *, config: GBMConfig | None = None,
                 _state: _State | None = None):
        from metasel._schema import METRICS

        if metric not in METRICS:
            raise InputDataError(f"metric: expected one of {list(METRICS)}, got {metric!r}")
        self.metric = metric
        self.config = config or GBMConfig()
        self._state = _state

    def _require(self) -> _State:
        if self._state is None:
            raise NotFittedError("this surrogate is not fitted: call .fit(table, key=...)")
        return self._state

    @property
    def direction(self) -> str:
        return self._require().direction

    @property
    def methods(self) -> list[str]:
        return sorted(self._require().catalog.methods)

    @property
    def uses_landmarks(self) -> bool:
        from metasel.domain.pairs import LANDMARK_TERMS, LANDMARKS, PAIR_TERMS

        enc = self._require().encoder
        return (any(f"f.{name}" in enc.context_scaler.columns for name in LANDMARKS)
                or any(PAIR_TERMS[i] in LANDMARK_TERMS for i in enc.pair_columns))

    # ------------------------------------------------------------------ fitting

    def fit(self, table: "PerfTable", *, key) -> "GBMSurrogate":
        """A new surrogate fitted on ``table`` (unchanged); ``key``: an int seed or a jax key."""
        from metasel.errors import require

        require("sklearn", feature="GBMSurrogate", extra="eval")
        long = table.long(self.metric)
        long = long[long["value"] > 0].reset_index(drop=True)
        if long.empty:
            raise InputDataError(f"{self.metric}: no positive 'ok' observations to fit on")
        catalog = Catalog.of(table)
        ctx_keys = context_keys(long)
        methods = sorted(long["method"].unique())
        encoder = FeatureEncoder(embed_kind="hash", embed_dims=0)
        encoder.fit(catalog.contexts(ctx_keys), catalog.method_list(methods))
        x = _rows(encoder, catalog, long, tuple(methods))
        y = np.log(long["value"].to_numpy(float))
        w = long["weight"].to_numpy(float)  # a cell measured only on a busy machine counts less
        seed = seed_of(key)
        fold_of_ctx = np.random.default_rng(seed).permutation(len(ctx_keys)) % max(1, min(self.config.folds, len(ctx_keys)))
        ci = {k: i for i, k in enumerate(ctx_keys)}
        cell_ctx = np.array([ci[k] for k in zip(long["task_id"], long["hardware_id"])])
        cell_fold = fold_of_ctx[cell_ctx]
        members, oof = [], np.full(len(y), np.nan)
        for k in range(int(fold_of_ctx.max()) + 1):
            train = cell_fold != k if fold_of_ctx.max() > 0 else np.ones(len(y), dtype=bool)
            members.append(self._regressor(seed + k).fit(x[train], y[train], sample_weight=w[train]))
            if fold_of_ctx.max() > 0:
                oof[~train] = members[-1].predict(x[~train])
        noise_var, offset_var = _variance_components(y - oof, cell_ctx)
        evidence: dict = {}
        for t, m, h, v in zip(long["task_id"], long["method"], long["hardware_id"], y):
            evidence.setdefault((t, h), {})[m] = float(v)
        state = _State(self.metric, table.direction(self.metric), encoder, tuple(methods), tuple(members), catalog, evidence,
                       noise_var, offset_var, Failures.fit(table, encoder.contexts, catalog, dim=encoder.context_dim))
        return GBMSurrogate(self.metric, config=self.config, _state=state)

    def _regressor(self, seed: int):
        from sklearn.ensemble import HistGradientBoostingRegressor

        c = self.config
        return HistGradientBoostingRegressor(max_iter=c.max_iter, learning_rate=c.learning_rate,
                                             max_leaf_nodes=c.max_leaf_nodes, min_samples_leaf=c.min_samples_leaf,
                                             max_features=c.max_features, early_stopping=False, random_state=seed)

    # ------------------------------------------------------------------ predicting

    def _member_means(self, frame, catalog: Catalog) -> np.ndarray:
        s = self._require()
        x = _rows(s.encoder, catalog, frame, s.train_methods)
        return np.stack([m.predict(x) for m in s.members])  # (members, cells)

    def predict(self, cells, *, table: "PerfTable | None" = None, joint: bool = False) -> Posterior:
        s = self._require()
        frame = cells_frame(cells)
        catalog = s.catalog.merged(table)
        preds = self._member_means(frame, catalog)
        mean = preds.mean(axis=0)
        spread = preds.var(axis=0) + s.noise_var
        offset_mean, offset_var = self._offsets(frame, catalog)
        keys = list(zip(frame["task_id"], frame["hardware_id"]))
        b_mean = np.array([offset_mean[k] for k in keys])
        b_var = np.array([offset_var[k] for k in keys])
        blocks = ()
        if joint:
            blocks = tuple((idx, np.full((len(idx), len(idx)), offset_var[k]) + np.diag(spread[idx]))
                           for k, idx in _groups(keys).items())
        return Posterior(mean + b_mean, np.sqrt(spread + b_var), blocks)

    def _offsets(self, frame, catalog: Catalog) -> tuple[dict, dict]:
        """Posterior mean and variance of each queried context's offset b_c given its evidence."""
        import pandas as pd

        s = self._require()
        keys = context_keys(frame)
        told = [(t, m, h, v) for t, h in keys for m, v in s.evidence.get((t, h), {}).items()]
        means, variances = {k: 0.0 for k in keys}, {k: s.offset_var for k in keys}
        if not told:
            return means, variances
        told_frame = pd.DataFrame([(t, m, h) for t, m, h, _ in told], columns=["task_id", "method", "hardware_id"])
        resid = np.array([v for *_, v in told]) - self._member_means(told_frame, catalog).mean(axis=0)
        for k, idx in _groups([(t, h) for t, _, h, _ in told]).items():
            n = len(idx)
            shrink = n * s.offset_var / (n * s.offset_var + s.noise_var)
            means[k] = float(shrink * resid[idx].mean())
            variances[k] = float(s.offset_var * s.noise_var / (n * s.offset_var + s.noise_var))
        return means, variances

    def condition(self, observations: "PerfTable") -> "GBMSurrogate":
        s = self._require()
        long = observations.long(self.metric)
        long = long[long["value"] > 0]
        evidence = {k: dict(v) for k, v in s.evidence.items()}
        for t, m, h, v in zip(long["task_id"], long["method"], long["hardware_id"], long["value"]):
            evidence.setdefault((t, h), {})[m] = math.log(v)
        state = replace(s, evidence=evidence, catalog=s.catalog.merged(observations),
                        failures=s.failures.with_failures(observations))
        return GBMSurrogate(self.metric, config=self.config, _state=state)

    def p_fail(self, cells, *, table: "PerfTable | None" = None) -> np.ndarray:
        s = self._require()
        return p_fail_cells(s.failures, cells_frame(cells), s.catalog.merged(table), s.encoder.contexts)

    def same_computation(self, task_id: str, methods: Iterable[str], *, table: "PerfTable | None" = None) -> dict[str, str]:
        return self._require().catalog.merged(table).same_computation(task_id, methods)

    def info(self) -> dict:
        """The fit's figures: members, the within-context noise and the context-offset variances (log units)."""
        s = self._require()
        return {"metric": s.metric, "direction": s.direction, "members": len(s.members), "noise_var": s.noise_var,
                "offset_var": s.offset_var, "methods": len(s.catalog.methods), "tasks": len(s.catalog.tasks)}


def _rows(encoder: FeatureEncoder, catalog: Catalog, frame, train_methods: tuple) -> np.ndarray:
    """One feature row per cell: its context's features, its method's, their pair terms, and which
    training method it is (so methods whose descriptors say nothing are still told apart)."""
    keys = context_keys(frame)
    names = sorted(set(frame["method"]))
    pairs = catalog.contexts(keys)
    xc = encoder.contexts(pairs)
    xm = encoder.methods(catalog.method_list(names))
    xp = encoder.pairs(pairs, catalog.method_list(names))
    ci = {k: i for i, k in enumerate(keys)}
    mi = {m: j for j, m in enumerate(names)}
    r = np.array([ci[k] for k in zip(frame["task_id"], frame["hardware_id"])], dtype=int)
    c = np.array([mi[m] for m in frame["method"]], dtype=int)
    index = {m: j for j, m in enumerate(train_methods)}
    one_hot = np.zeros((len(frame), len(train_methods)), np.float32)
    for i, m in enumerate(frame["method"]):
        if m in index:
            one_hot[i, index[m]] = 1.0
    return np.concatenate([xc[r], xm[c], xp[r, c], one_hot], axis=1)


def _groups(keys: list) -> dict:
    out: dict = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(i)
    return {k: np.asarray(v, dtype=int) for k, v in out.items()}


def _variance_components(resid: np.ndarray, ctx: np.ndarray) -> tuple[float, float]:
    """(within-context variance, between-context offset variance) of out-of-fold residuals, by
    the method of moments; floors keep both positive (NaN residuals — a single fold — give
    the floors' defaults)."""
    ok = np.isfinite(resid)
    if ok.sum() < 3:
        return 0.05, 0.05
    resid, ctx = resid[ok], ctx[ok]
    groups = _groups(list(ctx))
    means = np.array([resid[i].mean() for i in groups.values()])
    sizes = np.array([len(i) for i in groups.values()])
    within_dof = max(int(sizes.sum() - len(sizes)), 1)
    within = float(sum(((resid[i] - resid[i].mean()) ** 2).sum() for i in groups.values()) / within_dof)
    within = max(within, 1e-4)
    between = float(np.var(means) - within * np.mean(1.0 / sizes)) if len(means) > 1 else 0.0
    return within, max(between, 0.1 * within)
