"""The Bayesian matrix-completion surrogate.

``Surrogate.fit(table, key=...)`` learns, for one metric, a predictive distribution of
its log for every (task, method, hardware) cell — seen or not — from side information
(features and text embeddings of tasks, hardware and methods) and collaborative
structure (contexts that behaved alike on the methods they share behave alike on the
rest). See ``_train.py`` for the model. A fitted surrogate:

- ``predict(cells)`` → :class:`Prediction` (mean and std of the natural log of the metric),
  the posterior given every observation it holds for the cell's (task, hardware);
- ``condition(observations)`` → a new surrogate that also holds these observations; no
  refit, closed form, milliseconds;
- ``save(path)`` / ``Surrogate.load(path)``: a versioned file that reloads to identical
  predictions in a fresh process, without jax.

Fitting needs jax, flax, numpyro and optax; predicting and conditioning need numpy only.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

import numpy as np

from metasel.errors import InputDataError, NotFittedError
from metasel.meta.features import FeatureEncoder
from metasel.surrogate import _numpy
from metasel.surrogate._train import TrainConfig

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from metasel.table import PerfTable

FORMAT = "metasel-model"
FORMAT_VERSION = 5  # 2: an ensemble of members, pair terms, per-context noise; 3: pair slopes; 4: same computations; 5: landmark pair terms
OLDEST_READABLE = 2  # a format-2 file is a model without pair slopes; formats 2-3 were fitted without same_computation
AUTO_ENSEMBLE_MAX_CELLS = 3000  # members=0 (auto): 3 fits up to this many training cells, 1 above


class Prediction(NamedTuple):
    """Predictive distribution of log(metric) per cell: ``mean`` and ``std``, shape (num_cells,)."""

    mean: np.ndarray
    std: np.ndarray

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Central interval of log(metric) with probability ``level``."""
        from statistics import NormalDist

        z = NormalDist().inv_cdf(0.5 + level / 2.0)
        return self.mean - z * self.std, self.mean + z * self.std

    def median(self) -> np.ndarray:
        """The predictive median on the metric's own scale."""
        return np.exp(self.mean)


def _cells_frame(cells) -> "pd.DataFrame":
    import pandas as pd

    if isinstance(cells, pd.DataFrame):
        frame = cells
    else:
        frame = pd.DataFrame(list(cells), columns=["task_id", "method", "hardware_id"])
    missing = [c for c in ("task_id", "method", "hardware_id") if c not in frame.columns]
    if missing:
        raise InputDataError(f"cells: missing column {missing[0]!r}; expected task_id, method, hardware_id")
    return frame[["task_id", "method", "hardware_id"]].astype(str).reset_index(drop=True)


@dataclass
class _Member:
    """One MAP fit: tower layers, free method embeddings, noise and bias scales, pair weights."""

    ctx_layers: list
    mth_layers: list
    emb: np.ndarray  # (num_train_methods, width)
    noise: float
    s_bias: float
    beta: np.ndarray  # weights of the encoder's pair terms
    tau: np.ndarray = field(default_factory=lambda: np.zeros(0))  # std of each context's own pair slopes (none: empty)

    @classmethod
    def from_params(cls, params: dict) -> "_Member":
        return cls(params["ctx_layers"], params["mth_layers"], params["emb"], params["noise"], params["s_bias"],
                   params["beta"], params.get("tau", np.zeros(0)))


@dataclass
class _Failures:
    """P(a method's benchmark fails: ``oom``, ``unsupported``, ...) given the context's encoded
    features: one L2-regularised logistic regression per method, fitted on the contexts where
    the method was attempted (numpy Newton steps; a method that never failed, or always did,
    gets its smoothed rate)."""

    methods: list[str]
    weights: np.ndarray  # (methods, 1 + context_dim): bias, then feature weights
    overall: float  # smoothed failure rate over every attempted cell (methods never attempted)

    def p_fail(self, xq: np.ndarray, names: list[str]) -> np.ndarray:
        """(queries, len(names)) probabilities of failure."""
        out = np.full((len(xq), len(names)), self.overall)
        index = {m: j for j, m in enumerate(self.methods)}
        xb = np.concatenate([np.ones((len(xq), 1)), xq], axis=1)
        for i, m in enumerate(names):
            j = index.get(m)
            if j is not None:
                out[:, i] = _sigmoid(xb @ self.weights[j])
        return out

    @classmethod
    def fit(cls, x: np.ndarray, methods: list[str], attempted: np.ndarray, failed: np.ndarray,
            l2: float = 1.0) -> "_Failures":
        overall = float((failed.sum() + 0.5) / (attempted.sum() + 1.0))
        weights = np.zeros((len(methods), 1 + x.shape[1]))
        for j in range(len(methods)):
            rows = np.flatnonzero(attempted[:, j])
            y = failed[rows, j].astype(float)
            rate = (y.sum() + overall) / (len(y) + 1.0)
            weights[j, 0] = math.log(rate / (1.0 - rate))
            if 0 < y.sum() < len(y):
                weights[j] = _logistic(x[rows], y, weights[j], l2)
        return cls(methods, weights, overall)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _logistic(x: np.ndarray, y: np.ndarray, w0: np.ndarray, l2: float, iters: int = 50) -> np.ndarray:
    """L2-regularised logistic regression (the bias unpenalised) by Newton's method."""
    xb = np.concatenate([np.ones((len(x), 1)), x], axis=1)
    pen = np.full(xb.shape[1], l2)
    pen[0] = 1e-6
    w = w0.copy()
    for _ in range(iters):
        p = _sigmoid(xb @ w)
        grad = xb.T @ (p - y) + pen * w
        hess = (xb * (p * (1.0 - p))[:, None]).T @ xb + np.diag(pen)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


@dataclass
class _State:
    metric: str
    direction: str
    config: TrainConfig
    encoder: FeatureEncoder
    members: list  # of _Member: the ensemble; predictions are their equal-weight mixture
    y_mean: float
    y_std: float
    train_methods: list[str]
    tasks: dict[str, dict]
    hardware: dict[str, dict]
    methods: dict[str, dict]
    evidence: dict[tuple[str, str], dict[str, float]]  # (task, hw) -> method -> standardised y
    data_hash: str
    losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fit_info: dict = field(default_factory=dict)
    calib_zero: float = 1.0  # std inflation for contexts with no observation (zero-shot)
    calib_cond: float = 1.0  # std inflation for new contexts with observations (conditioned)
    calib_seen: float = 1.0  # std inflation for contexts the model was trained on
    train_contexts: frozenset = frozenset()
    failures: "_Failures | None" = None  # where methods failed in training (for p_fail)
    failed_cells: dict = field(default_factory=dict)  # (task, hw) -> {method: status} recorded failures


class Surrogate:
    """Bayesian matrix-completion surrogate for one metric.

    Args:
        metric: the metric to model (its log is the target).
        config: tower widths, latent rank, training steps.
        embed: text embeddings: ``hash`` (hashed bag of words; the default, because a
            model fitted with MiniLM needs torch + sentence-transformers to embed every new
            task, which makes a cold ``suggest`` ~6 s instead of ~0.7 s), ``minilm``
            (all-MiniLM-L6-v2 from the offline package), ``auto`` (MiniLM when installed)
            or ``none``.
        embed_dims: PCA dimensions kept per embedded description.
    """

    def __init__(self, metric: str = "throughput_tok_s", *, config: TrainConfig | None = None,
                 embed: str = "hash", embed_dims: int = 4, _state: _State | None = None):
        from metasel._schema import METRICS

        if metric not in METRICS:
            raise InputDataError(f"metric: expected one of {list(METRICS)}, got {metric!r}")
        if embed not in ("auto", "minilm", "hash", "none"):
            raise InputDataError(f"embed: expected 'auto', 'minilm', 'hash' or 'none', got {embed!r}")
        self.metric = metric
        self.config = config or TrainConfig()
        self.embed = embed
        self.embed_dims = 0 if embed == "none" else int(embed_dims)
        self._state = _state

    # ------------------------------------------------------------------ fitting

    @property
    def is_fitted(self) -> bool:
        return self._state is not None

    def _require(self) -> _State:
        if self._state is None:
            raise NotFittedError("this surrogate is not fitted: call .fit(table, key=...) or Surrogate.load(path)")
        return self._state

    def fit(self, table: "PerfTable", *, key, calibrate: bool = True, calibrate_by: str = "task") -> "Surrogate":
        """Fit on a performance table; returns a new, fitted surrogate (``table`` is not changed).

        With ``calibrate``, the predictive std is then calibrated on the training data
        alone: a second fit leaves out a fifth of the training tasks, and the spread of its
        errors on them (zero-shot, and after seeing half of each context's cells) sets
        one inflation factor for each of the two cases.

        Args:
            table: observations; ``ok`` rows with the metric are the training targets.
            key: a ``jax.random`` key (or an int seed).
            calibrate_by: what the inner fit leaves out — ``task`` (new workloads on known
                hardware), ``hardware`` (a new machine), or a task grouping such as
                ``model.hf_id`` (a new model): calibrate for the novelty the model will face.
        """
        import jax

        if isinstance(key, int):
            key = jax.random.key(key)
        key_fit, key_cal = jax.random.split(key)
        model = self._fit_core(table, key_fit)
        if calibrate:
            seen, zero, cond = _calibration(self, table, key_cal, by=calibrate_by)
            model._state = replace(model._state, calib_zero=zero, calib_cond=cond, calib_seen=seen,
                                   fit_info={**model._state.fit_info, "calib_seen": seen, "calib_zero": zero,
                                             "calib_cond": cond, "calibrate_by": calibrate_by})
        return model

    def _fit_core(self, table: "PerfTable", key) -> "Surrogate":
        direction = table.direction(self.metric)
        long = table.long(self.metric)
        long = long[long["value"] > 0]
        if long.empty:
            raise InputDataError(f"{self.metric}: no positive 'ok' observations to fit on")
        ctx_keys = list(dict.fromkeys(zip(long["task_id"], long["hardware_id"])))
        methods = sorted(long["method"].unique())
        tasks = _descriptor_map(table.tasks, "task_id")
        hardware = _descriptor_map(table.hardware, "hardware_id")
        method_desc = _descriptor_map(table.methods, "method")
        encoder = FeatureEncoder(embed_kind="hash" if self.embed == "none" else self.embed, embed_dims=self.embed_dims,
                                 pair_terms=self.config.pair_terms)
        encoder.fit([(tasks[t], hardware[h]) for t, h in ctx_keys], [method_desc[m] for m in methods])
        xc = encoder.contexts([(tasks[t], hardware[h]) for t, h in ctx_keys])
        xm = encoder.methods([method_desc[m] for m in methods])
        xp = encoder.pairs([(tasks[t], hardware[h]) for t, h in ctx_keys], [method_desc[m] for m in methods])
        rep = _rep_matrix(ctx_keys, methods, _representatives(ctx_keys, tasks, {m: method_desc[m] for m in methods})) \
            if self.config.same_computation else None
        if rep is not None and xp.shape[2]:
            xp = np.take_along_axis(xp, rep[:, :, None], axis=1)
        y_log = np.log(long["value"].to_numpy(float))
        y_mean, y_std = float(y_log.mean()), float(y_log.std() or 1.0)
        ci = {c: i for i, c in enumerate(ctx_keys)}
        mi = {m: i for i, m in enumerate(methods)}
        y = np.zeros((len(ctx_keys), len(methods)), np.float32)
        mask = np.zeros_like(y)
        rows = [ci[(t, h)] for t, h in zip(long["task_id"], long["hardware_id"])]
        cols = [mi[m] for m in long["method"]]
        y[rows, cols] = (y_log - y_mean) / y_std
        mask[rows, cols] = 1.0
        import jax

        from metasel.surrogate._train import fit_params

        n_members = self.config.members or (3 if int(mask.sum()) <= AUTO_ENSEMBLE_MAX_CELLS else 1)
        fits = [fit_params(xc, xm, y, mask, key=jax.random.fold_in(key, i) if i else key, cfg=self.config, xp=xp,
                           rep=rep) for i in range(n_members)]
        evidence: dict[tuple[str, str], dict[str, float]] = {}
        for r, c, v in zip(rows, cols, y[rows, cols]):
            evidence.setdefault(ctx_keys[r], {})[methods[c]] = float(v)
        digest = hashlib.sha256("\n".join(sorted(table.observations["obs_id"])).encode()).hexdigest()[:16]
        failures, failed_cells = _failures(table, encoder, tasks, hardware)
        state = _State(
            metric=self.metric, direction=direction, config=self.config, encoder=encoder,
            members=[_Member.from_params(p) for p in fits], y_mean=y_mean, y_std=y_std, train_methods=methods,
            tasks=tasks, hardware=hardware, methods=method_desc, evidence=evidence, data_hash=digest,
            losses=np.stack([p["losses"] for p in fits]), train_contexts=frozenset(ctx_keys), failures=failures,
            failed_cells=failed_cells,
            fit_info={"num_contexts": len(ctx_keys), "num_methods": len(methods), "num_cells": int(mask.sum()),
                      "members": n_members},
        )
        return Surrogate(self.metric, config=self.config, embed=self.embed, embed_dims=self.embed_dims, _state=state)

    # ------------------------------------------------------------------ predicting

    @property
    def methods(self) -> list[str]:
        """Methods this surrogate can predict without being told about more."""
        return sorted(self._require().methods)

    @property
    def direction(self) -> str:
        return self._require().direction

    @property
    def uses_landmarks(self) -> bool:
        """Whether a task's landmarks change this model's predictions: its training methods
        include speculative decoding whose landmark varied over the training tasks."""
        from metasel.meta.features import LANDMARK_TERMS, PAIR_TERMS

        return any(PAIR_TERMS[i] in LANDMARK_TERMS for i in self._require().encoder.pair_columns)

    def _catalog(self, table: "PerfTable | None"):
        s = self._require()
        tasks, hardware, methods = dict(s.tasks), dict(s.hardware), dict(s.methods)
        if table is not None:
            tasks.update(_descriptor_map(table.tasks, "task_id", real_only=True))
            hardware.update(_descriptor_map(table.hardware, "hardware_id", real_only=True))
            methods.update(_descriptor_map(table.methods, "method", real_only=True))
        return tasks, hardware, methods

    def _method_inputs(self, names: list[str], methods: dict[str, dict]) -> np.ndarray:
        s = self._require()
        for m in names:
            if m not in methods:
                raise InputDataError(f"no descriptor for method {m!r}: pass a table that describes it")
        xm = s.encoder.methods([methods[m] for m in names])
        return xm if xm.shape[1] else np.zeros((len(names), 1), np.float32)

    def _method_outputs(self, member: _Member, names: list[str], xm: np.ndarray) -> np.ndarray:
        hm = _numpy.mlp(xm, member.mth_layers)
        index = {m: i for i, m in enumerate(self._require().train_methods)}
        for i, m in enumerate(names):
            if m in index:
                hm[i] += member.emb[index[m]]
        return hm

    def _context_inputs(self, keys: list[tuple[str, str]], tasks, hardware) -> np.ndarray:
        s = self._require()
        for t, h in keys:
            if t not in tasks:
                raise InputDataError(f"no descriptor for task {t!r}: pass a table (or spec) that describes it")
            if h not in hardware:
                raise InputDataError(f"no descriptor for hardware {h!r}: pass a table that describes it")
        xc = s.encoder.contexts([(tasks[t], hardware[h]) for t, h in keys])
        return xc if xc.shape[1] else np.zeros((len(keys), 1), np.float32)

    def predict(self, cells, *, table: "PerfTable | None" = None) -> Prediction:
        """Predictive mean and std of log(metric) for each cell.

        Args:
            cells: a frame (or iterable of tuples) with ``task_id, method, hardware_id``.
            table: descriptors of tasks, methods or hardware the surrogate has not seen.
        """
        s = self._require()
        frame = _cells_frame(cells)
        tasks, hardware, methods = self._catalog(table)
        ctx_keys = _context_keys(frame)
        ev_methods = {m for key in ctx_keys for m in s.evidence.get(key, {})}
        names = sorted(set(frame["method"]) | ev_methods)
        rep = None
        if s.config.same_computation:  # a cell measures its representative's value (the same computation)
            catalog = {m: methods[m] for m in dict.fromkeys([*s.train_methods, *names]) if m in methods}
            reps = _representatives(ctx_keys, tasks, catalog)
            names = sorted(set(names) | {r for by in reps.values() for m, r in by.items() if m in names})
            rep = _rep_matrix(ctx_keys, names, reps)
        xm = self._method_inputs(names, methods)
        xc = self._context_inputs(ctx_keys, tasks, hardware)
        mi = {m: i for i, m in enumerate(names)}
        xp = s.encoder.pairs([(tasks[t], hardware[h]) for t, h in ctx_keys], [methods[m] for m in names]) \
            if len(s.encoder.pair_columns) else None
        cidx, midx = _cell_positions(frame, ctx_keys, names)
        if rep is not None:
            midx = rep[cidx, midx]
            if xp is not None:
                xp = np.take_along_axis(xp, rep[:, :, None], axis=1)
        order = np.argsort(cidx, kind="stable")
        bounds = np.searchsorted(cidx[order], np.arange(len(ctx_keys) + 1))
        means, variances = [], []
        for member in s.members:
            m_, v_ = self._predict_member(member, names, xm, xc, xp, ctx_keys, mi, cidx, midx, order, bounds, rep)
            means.append(m_)
            variances.append(v_)
        mean = np.mean(means, axis=0)
        var = np.mean(variances, axis=0) + (np.var(means, axis=0) if len(means) > 1 else 0.0)
        factor = np.full(len(frame), s.calib_zero)  # calibrated std inflation: zero-shot, conditioned or seen
        for i, key in enumerate(ctx_keys):
            if s.evidence.get(key):
                factor[order[bounds[i]:bounds[i + 1]]] = s.calib_seen if key in s.train_contexts else s.calib_cond
        var = var * factor ** 2
        return Prediction(mean * s.y_std + s.y_mean, np.sqrt(var) * s.y_std)

    def _predict_member(self, member: _Member, names, xm, xc, xp, ctx_keys, mi, cidx, midx, order, bounds, rep=None):
        """One member's predictive mean and variance (standardised units) of the queried cells
        (``midx``: each cell's method, or the representative it measures; ``rep``: that map)."""
        s = self._require()
        cfg = s.config
        hm = self._method_outputs(member, names, xm)
        hc = _numpy.mlp(xc, member.ctx_layers)
        a, f = hc[:, 0], hc[:, 1:1 + cfg.k]
        c, g, phi = hm[:, 0], hm[:, 1:1 + cfg.k], hm[:, 1 + cfg.k:]
        psi = np.concatenate([np.ones((len(names), 1)), phi], axis=1)
        prior_var = np.concatenate([[member.s_bias ** 2], np.ones(cfg.rank)])
        if hc.shape[1] > 1 + cfg.k:  # per-context noise scale
            noise_var_c = (member.noise * np.exp(np.clip(hc[:, 1 + cfg.k], -3.0, 3.0))) ** 2
        else:
            noise_var_c = np.full(len(ctx_keys), member.noise ** 2)
        mu_all = a[:, None] + c[None, :] + f @ g.T  # (contexts, methods)
        if xp is not None and len(member.beta):
            mu_all = mu_all + xp @ member.beta
        slopes = xp is not None and len(member.tau) > 0  # each context's own pair-term effects
        if slopes:
            slope_prior_var = np.concatenate([prior_var, member.tau ** 2])  # latent, then slopes
        mean = mu_all[cidx, midx]
        var = ((psi ** 2) @ prior_var)[midx] + noise_var_c[cidx]
        if slopes:
            var = var + (xp[cidx, midx] ** 2) @ member.tau ** 2
        for i, key in enumerate(ctx_keys):
            ev = s.evidence.get(key)
            if not ev:
                continue
            rows = order[bounds[i]:bounds[i + 1]]
            obs = np.array([mi[m] for m in ev], dtype=int)
            if rep is not None:
                obs = rep[i, obs]
            psi_i, prior_i = (np.concatenate([psi, xp[i]], axis=1), slope_prior_var) if slopes else (psi, prior_var)
            mean[rows], var[rows] = _numpy.posterior(mu_all[i], psi_i, prior_i, noise_var_c[i], np.array(list(ev.values())),
                                                     obs, midx[rows])
        return mean, var

    def same_computation(self, task_id: str, methods: Iterable[str], *, table: "PerfTable | None" = None) -> dict[str, str]:
        """``method -> representative`` for ``methods`` on this task: methods that run the same
        computation there (static batching of one request, a prefix cache with no shared
        prefix: ``features.same_computation``) share one; every other method maps to itself."""
        from metasel.meta.features import same_computation

        tasks, _, catalog = self._catalog(table)
        methods = list(methods)
        if task_id not in tasks:
            raise InputDataError(f"no descriptor for task {task_id!r}: pass a table (or spec) that describes it")
        same = same_computation(tasks[task_id], {m: catalog[m] for m in methods if m in catalog})
        return {m: same.get(m, m) for m in methods}

    def p_fail(self, cells, *, table: "PerfTable | None" = None) -> np.ndarray:
        """Probability that each cell's benchmark fails (``oom``, ``unsupported``, ...), from
        the failures of its method in the nearest training contexts (a recorded failure of
        the very cell counts as certain)."""
        s = self._require()
        frame = _cells_frame(cells)
        if s.failures is None:
            return np.zeros(len(frame))
        tasks, hardware, _ = self._catalog(table)
        ctx_keys = _context_keys(frame)
        names = sorted(set(frame["method"]))
        p = s.failures.p_fail(self._context_inputs(ctx_keys, tasks, hardware), names)
        out = p[_cell_positions(frame, ctx_keys, names)]
        hit = [m in s.failed_cells.get((t, h), ()) for t, m, h in frame.itertuples(index=False)]
        return np.where(hit, 1.0, out)

    def condition(self, observations: "PerfTable") -> "Surrogate":
        """A new surrogate that also holds ``observations`` (closed form, no refit).

        ``ok`` rows with the metric become evidence for their (task, hardware); their
        descriptors join the catalogue, so new tasks, hardware and methods are fine.
        """
        s = self._require()
        long = observations.long(self.metric)
        long = long[long["value"] > 0]
        evidence = {k: dict(v) for k, v in s.evidence.items()}
        for t, m, h, v in zip(long["task_id"], long["method"], long["hardware_id"], long["value"]):
            evidence.setdefault((t, h), {})[m] = (math.log(v) - s.y_mean) / s.y_std
        failed_cells = {k: dict(v) for k, v in s.failed_cells.items()}
        obs = observations.observations
        for t, m, h, st in obs.loc[obs["status"] != "ok", ["task_id", "method", "hardware_id", "status"]].itertuples(index=False):
            failed_cells.setdefault((t, h), {})[m] = st
        tasks, hardware, methods = self._catalog(observations)
        state = replace(s, evidence=evidence, tasks=tasks, hardware=hardware, methods=methods, failed_cells=failed_cells)
        return Surrogate(self.metric, config=self.config, embed=self.embed, embed_dims=self.embed_dims, _state=state)

    def forget(self, task_ids: Iterable[str]) -> "Surrogate":
        """A new surrogate without the evidence of these tasks (what a fresh task looks like)."""
        s = self._require()
        drop = set(task_ids)
        evidence = {k: v for k, v in s.evidence.items() if k[0] not in drop}
        failed_cells = {k: v for k, v in s.failed_cells.items() if k[0] not in drop}
        return Surrogate(self.metric, config=self.config, embed=self.embed, embed_dims=self.embed_dims,
                         _state=replace(s, evidence=evidence, failed_cells=failed_cells))

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike) -> Path:
        """Write a versioned model file (written to a temporary name, then renamed)."""
        from metasel import __version__

        s = self._require()
        path = Path(path)
        enc_meta, arrays = s.encoder.state()
        for j, member in enumerate(s.members):
            tag = f"m{j}."
            for prefix, layers in (("ctx", member.ctx_layers), ("mth", member.mth_layers)):
                for i, (w, b) in enumerate(layers):
                    arrays[f"{tag}{prefix}.{i}.w"], arrays[f"{tag}{prefix}.{i}.b"] = w, b
            arrays[f"{tag}emb"] = member.emb
            arrays[f"{tag}beta"] = member.beta
            arrays[f"{tag}tau"] = member.tau
        arrays["losses"] = s.losses
        if s.failures is not None:
            arrays["fail.weights"] = s.failures.weights
        ev = [(t, h, m, v) for (t, h), d in s.evidence.items() for m, v in d.items()]
        arrays["ev.keys"] = np.asarray([[t, h, m] for t, h, m, _ in ev], dtype=str).reshape(-1, 3)
        arrays["ev.values"] = np.asarray([v for *_, v in ev], dtype=np.float64)
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "metasel_version": __version__,
            "metric": s.metric, "direction": s.direction, "config": asdict(s.config), "embed": self.embed,
            "embed_dims": self.embed_dims, "encoder": enc_meta,
            "members": [{"noise": m.noise, "s_bias": m.s_bias} for m in s.members],
            "y_mean": s.y_mean, "y_std": s.y_std, "train_methods": s.train_methods,
            "num_layers": [len(s.members[0].ctx_layers), len(s.members[0].mth_layers)],
            "tasks": s.tasks, "hardware": s.hardware, "methods": s.methods, "data_hash": s.data_hash,
            "fit_info": s.fit_info, "calib_zero": s.calib_zero, "calib_cond": s.calib_cond,
            "calib_seen": s.calib_seen, "train_contexts": sorted(list(k) for k in s.train_contexts),
            "fail_methods": s.failures.methods if s.failures is not None else None,
            "fail_overall": s.failures.overall if s.failures is not None else None,
            "failed_cells": sorted([t, h, m, st] for (t, h), d in s.failed_cells.items() for m, st in d.items()),
        }
        arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Surrogate":
        """Read a model file; a wrong, truncated or newer-format file is a clear error."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputDataError(f"{path}: cannot read the model file ({exc.strerror or exc})") from exc
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
            raise InputDataError(f"{path}: not a metasel model file, or a truncated one ({type(exc).__name__}: {exc})") from exc
        if "meta.json" not in arrays:
            raise InputDataError(f"{path}: not a metasel model file (no metadata)")
        try:
            meta = json.loads(arrays.pop("meta.json").tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputDataError(f"{path}: the model's metadata is corrupt") from exc
        if meta.get("format") != FORMAT:
            raise InputDataError(f"{path}: not a metasel model file (format {meta.get('format')!r})")
        if not isinstance(meta.get("format_version"), int) or meta["format_version"] > FORMAT_VERSION:
            raise InputDataError(f"{path}: model format {meta.get('format_version')} is newer than this metasel reads "
                                 f"({FORMAT_VERSION}); upgrade metasel")
        if meta["format_version"] < OLDEST_READABLE:
            raise InputDataError(f"{path}: model format {meta['format_version']} was written by an older metasel; "
                                 f"fit it again (metasel fit)")
        try:
            members = []
            for j, scales in enumerate(meta["members"]):
                tag = f"m{j}."
                layers = {p: [(arrays[f"{tag}{p}.{i}.w"], arrays[f"{tag}{p}.{i}.b"]) for i in range(n)]
                          for p, n in zip(("ctx", "mth"), meta["num_layers"])}
                members.append(_Member(layers["ctx"], layers["mth"], arrays[f"{tag}emb"], float(scales["noise"]),
                                       float(scales["s_bias"]), np.asarray(arrays[f"{tag}beta"], dtype=float),
                                       np.asarray(arrays.get(f"{tag}tau", np.zeros(0)), dtype=float)))
            config = TrainConfig(**{"same_computation": False, **meta["config"]})  # formats 2-3 had no such field
            encoder = FeatureEncoder.from_state(meta["encoder"], arrays)
            keys = arrays["ev.keys"]
            evidence: dict[tuple[str, str], dict[str, float]] = {}
            for (t, h, m), v in zip(keys.tolist(), arrays["ev.values"].tolist()):
                evidence.setdefault((t, h), {})[m] = float(v)
            state = _State(
                metric=meta["metric"], direction=meta["direction"], config=config, encoder=encoder,
                members=members, y_mean=float(meta["y_mean"]), y_std=float(meta["y_std"]),
                train_methods=list(meta["train_methods"]), tasks=meta["tasks"], hardware=meta["hardware"],
                methods=meta["methods"], evidence=evidence, data_hash=meta["data_hash"], losses=arrays["losses"],
                fit_info=meta.get("fit_info", {}), calib_zero=float(meta.get("calib_zero", 1.0)),
                calib_cond=float(meta.get("calib_cond", 1.0)), calib_seen=float(meta.get("calib_seen", 1.0)),
                train_contexts=frozenset(tuple(k) for k in meta.get("train_contexts", [])),
            )
            if meta.get("fail_methods") is not None:
                state.failures = _Failures(list(meta["fail_methods"]), np.asarray(arrays["fail.weights"], float),
                                           float(meta["fail_overall"]))
            for t, h, m, st in meta.get("failed_cells", []):
                state.failed_cells.setdefault((t, h), {})[m] = st
            if not members or any(len(m.beta) != len(encoder.pair_columns) or len(m.tau) not in (0, len(m.beta))
                                  for m in members):
                raise ValueError(f"{len(members)} members; pair-term weights do not match "
                                 f"the {len(encoder.pair_columns)} pair terms")
        except (KeyError, TypeError, ValueError) as exc:
            raise InputDataError(f"{path}: the model file is incomplete or corrupt ({type(exc).__name__}: {exc})") from exc
        return cls(meta["metric"], config=config, embed=meta["embed"], embed_dims=meta["embed_dims"], _state=state)

    def info(self) -> dict[str, Any]:
        s = self._require()
        return {"metric": s.metric, "direction": s.direction,
                "noise_std_log": float(np.mean([m.noise for m in s.members])) * s.y_std,
                "noise_per_context": bool(s.config.hetero_noise),
                "bias_std_log": float(np.mean([m.s_bias for m in s.members])) * s.y_std,
                "embedder": s.encoder.embed_kind,
                "methods": len(s.methods), "tasks": len(s.tasks), "hardware": len(s.hardware),
                "data_hash": s.data_hash, **s.fit_info}


def _calibration(template: Surrogate, table: "PerfTable", key, *, by: str = "task") -> tuple[float, float, float]:
    """Std inflation factors (seen, zero-shot, conditioned) from one inner fit on training data.

    The inner fit leaves out a fifth of the training units — tasks, hardware, or groups of
    tasks (``by``) — and a tenth of the other cells. Seen: the left-out cells of contexts
    it trained on. Zero-shot: the left-out units' cells predicted from nothing. Conditioned: each left-out context's cells split
    in two halves, one told, the other predicted. Each factor makes 90% of the
    standardised errors fall inside the 90% interval; none is below 1 (only widens).
    """
    from metasel.table import PerfTable

    long = table.long(template.metric)
    long = long[long["value"] > 0].reset_index(drop=True)
    rng = np.random.default_rng(int(np.asarray(_key_data(key)).ravel()[-1]) % (2**32))
    held_rows = _held_out_rows(table, long, by, rng)
    if held_rows is None:
        return 1.0, 1.0, 1.0
    held = set(zip(long.loc[held_rows, "task_id"], long.loc[held_rows, "hardware_id"]))  # held-out contexts
    kept = long[~held_rows]
    drop_cells = kept.sample(frac=0.1, random_state=int(rng.integers(2**31))) if len(kept) >= 20 else kept.iloc[0:0]
    dropped = set(zip(drop_cells["task_id"], drop_cells["method"], drop_cells["hardware_id"]))
    obs = table.observations
    in_held = np.array([c in held for c in zip(obs["task_id"], obs["hardware_id"])], dtype=bool)
    keep_mask = ~in_held & ~pd_isin_cells(obs, dropped)
    inner = template._fit_core(table.with_observations(obs[keep_mask]), key)

    def zscores(model, cells):
        if cells.empty:
            return np.zeros(0)
        p = model.predict(cells[["task_id", "method", "hardware_id"]], table=table)
        return np.abs(p.mean - np.log(cells["value"].to_numpy())) / p.std

    seen_cells = drop_cells[[(t, h) in inner._state.train_contexts for t, h in zip(drop_cells["task_id"], drop_cells["hardware_id"])]]
    z_seen = zscores(inner, seen_cells)
    test = long[held_rows].reset_index(drop=True)
    z0 = zscores(inner, test)
    told_rows, asked = [], []
    for _, grp in test.groupby(["task_id", "hardware_id"]):
        if len(grp) < 2:
            continue
        idx = rng.permutation(grp.index.to_numpy())
        told_rows.append(idx[: len(idx) // 2])
        asked.append(idx[len(idx) // 2:])
    z1 = np.zeros(0)
    if told_rows:
        told = test.loc[np.concatenate(told_rows)]
        cond = inner.condition(PerfTable(told.rename(columns={"value": template.metric})[
            ["task_id", "method", "hardware_id", template.metric]], source="calibration"))
        z1 = zscores(cond, test.loc[np.concatenate(asked)])
    z90 = 1.6448536269514722

    def factor(z):
        return float(max(1.0, np.quantile(z, 0.9) / z90)) if len(z) >= 5 else 1.0

    return factor(z_seen), factor(z0), factor(z1)


def _failures(table: "PerfTable", encoder: FeatureEncoder, tasks: dict, hardware: dict):
    """Attempted / failed matrices over every context of the table, and its recorded failures."""
    obs = table.observations
    keys = [k for k in dict.fromkeys(zip(obs["task_id"], obs["hardware_id"])) if k[0] in tasks and k[1] in hardware]
    methods = sorted(obs["method"].unique())
    ci = {k: i for i, k in enumerate(keys)}
    mi = {m: j for j, m in enumerate(methods)}
    attempted = np.zeros((len(keys), len(methods)), dtype=bool)
    ok = np.zeros_like(attempted)
    status: dict = {}  # (i, j) -> a failure status
    for t, m, h, st in obs[["task_id", "method", "hardware_id", "status"]].itertuples(index=False):
        i = ci.get((t, h))
        if i is None:
            continue
        attempted[i, mi[m]] = True
        if st == "ok":
            ok[i, mi[m]] = True
        else:
            status[i, mi[m]] = st
    failed = np.zeros_like(attempted)
    failed_cells: dict = {}
    for (i, j), st in status.items():
        if not ok[i, j]:  # a cell that also succeeded is not a failure
            failed[i, j] = True
            failed_cells.setdefault(keys[i], {})[methods[j]] = st
    x = encoder.contexts([(tasks[t], hardware[h]) for t, h in keys]) if keys else np.zeros((0, encoder.context_dim))
    return _Failures.fit(np.asarray(x, np.float64), methods, attempted, failed), failed_cells


def _held_out_rows(table: "PerfTable", long: "pd.DataFrame", by: str, rng) -> np.ndarray | None:
    """Rows of ``long`` whose unit (task, hardware, or task group ``by``) is in a random fifth
    of the units; None when there are too few units to hold any out."""
    if by == "task":
        unit = long["task_id"].astype(str)
    elif by == "hardware":
        unit = long["hardware_id"].astype(str)
    else:
        groups = table.task_groups(by)
        if set(groups.values()) <= {"None"}:
            raise InputDataError(f"calibrate_by: expected 'task', 'hardware', or a spec path / feature that tasks "
                                 f"have (such as model.hf_id), got {by!r}, which no task has")
        unit = long["task_id"].map(groups).astype(str)
    units = sorted(unit.unique())
    if len(units) < (5 if by == "task" else 3):
        return None
    held_units = set(rng.choice(units, size=max(1, len(units) // 5), replace=False).tolist())
    return unit.isin(held_units).to_numpy()


def _representatives(ctx_keys, tasks: dict, catalog: dict[str, dict]) -> dict[str, dict[str, str]]:
    """Per task of ``ctx_keys``: ``method -> representative`` for the catalogue's methods that
    run the same computation as another (``features.same_computation``); others are absent."""
    from metasel.meta.features import same_computation

    out: dict[str, dict[str, str]] = {}
    for t, _ in ctx_keys:
        if t not in out and t in tasks:
            out[t] = {m: r for m, r in same_computation(tasks[t], catalog).items() if m != r}
    return out


def _rep_matrix(ctx_keys, names: list[str], reps: dict[str, dict[str, str]]) -> np.ndarray | None:
    """(contexts, names): the column of the method whose value each cell measures — its own,
    or its same-computation representative's (``reps``, per task) when that is among
    ``names``. None when every cell measures itself."""
    mi = {m: j for j, m in enumerate(names)}
    out = np.tile(np.arange(len(names)), (len(ctx_keys), 1))
    for i, (t, _) in enumerate(ctx_keys):
        for m, r in reps.get(t, {}).items():
            if m in mi and r in mi:
                out[i, mi[m]] = mi[r]
    return None if np.array_equal(out, np.broadcast_to(np.arange(len(names)), out.shape)) else out


def _context_keys(frame: "pd.DataFrame") -> list[tuple[str, str]]:
    """The distinct (task, hardware) pairs of a cells frame, in first-seen order."""
    return list(dict.fromkeys(zip(frame["task_id"], frame["hardware_id"])))


def _cell_positions(frame: "pd.DataFrame", ctx_keys: list[tuple[str, str]], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's row in ``ctx_keys`` and column in ``names``."""
    ci = {k: i for i, k in enumerate(ctx_keys)}
    mi = {m: j for j, m in enumerate(names)}
    return (np.array([ci[k] for k in zip(frame["task_id"], frame["hardware_id"])], dtype=int),
            np.array([mi[m] for m in frame["method"]], dtype=int))


def pd_isin_cells(obs, cells: set) -> np.ndarray:
    return np.array([(t, m, h) in cells for t, m, h in zip(obs["task_id"], obs["method"], obs["hardware_id"])], dtype=bool)


def _key_data(key):
    import jax

    try:
        return jax.random.key_data(key)
    except (TypeError, ValueError):
        return key


def _descriptor_map(frame: "pd.DataFrame", key: str, *, real_only: bool = False) -> dict[str, dict]:
    out = {}
    for rec in frame.to_dict("records"):
        rec = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}
        if real_only and rec.get({"task_id": "spec", "hardware_id": "specs", "method": "techniques"}[key]) == "{}":
            continue
        out[str(rec[key])] = rec
    return out
