"""The Bayesian matrix-completion surrogate (Flax nnx towers + NumPyro, trained with optax).

``BayesianSurrogate(metric).fit(table, key=...)`` learns, for one metric, a predictive
distribution of its log for every (task, method, hardware) cell — seen or not — from side
information (features and text embeddings of tasks, hardware and methods) and
collaborative structure (contexts that behaved alike on the methods they share behave
alike on the rest). See ``_train.py`` for the model. A fitted surrogate follows the
:class:`~metasel.surrogate.base.Surrogate` protocol:

- ``predict(cells)`` → :class:`~metasel.surrogate.base.Posterior` (mean and std of the natural
  log of the metric; ``joint=True`` adds each context's covariance), given every
  observation it holds for the cell's (task, hardware);
- ``condition(observations)`` → a new surrogate that also holds these observations; no
  refit, closed form, milliseconds;
- ``save(path)`` / ``BayesianSurrogate.load(path)``: a versioned file that reloads to
  identical predictions in a fresh process, without jax; a file of another format is
  refused ("refit with metasel fit").

Fitting needs jax, flax, numpyro and optax; predicting and conditioning need numpy only.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from metasel.errors import InputDataError, NotFittedError
from metasel.surrogate import _numpy
from metasel.surrogate._common import (Catalog, Failures, cell_positions, cells_frame, context_keys, p_fail_cells,
                                       seed_of)
from metasel.surrogate._forest import Forest, TreeMean
from metasel.surrogate._train import TrainConfig
from metasel.surrogate.base import LEVELS, Posterior
from metasel.surrogate.encoding import FeatureEncoder

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from metasel.data.table import PerfTable

FORMAT = "metasel-model"
FORMAT_VERSION = 8  # 6: the layered package (kind field, catalogue and failures in one place); 7: forest failure models;
#                    8: tree means (TrainConfig.tree_mean)
KIND = "bayesian"
AUTO_ENSEMBLE_MAX_CELLS = 3000  # members=0 (auto): 3 fits up to this many training cells, 1 above
CONFORMAL_MIN_UNITS = 8  # held-out units (tasks, hardware, task groups) for interval widths level by level


@dataclass
class _Member:
    """One MAP fit: tower layers, free method embeddings, noise and bias scales, pair weights."""

    ctx_layers: list
    mth_layers: list
    emb: np.ndarray  # (num_train_methods, width)
    noise: float
    s_bias: float
    beta: np.ndarray  # weights of the encoder's pair terms
    tau: np.ndarray  # std of each context's own pair slopes (none: empty)

    @classmethod
    def from_params(cls, params: dict) -> "_Member":
        return cls(params["ctx_layers"], params["mth_layers"], params["emb"], params["noise"], params["s_bias"],
                   params["beta"], params["tau"])


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
    catalog: Catalog
    evidence: dict[tuple[str, str], dict[str, float]]  # (task, hw) -> method -> standardised y
    data_hash: str
    failures: Failures | None
    losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fit_info: dict = field(default_factory=dict)
    calib_zero: float = 1.0  # std inflation for contexts with no observation (zero-shot)
    calib_cond: float = 1.0  # std inflation for new contexts with observations (conditioned)
    calib_seen: float = 1.0  # std inflation for contexts the model was trained on
    calib_widths: dict = field(default_factory=dict)  # "zero"/"cond"/"seen" -> interval widths at base.LEVELS
    train_contexts: frozenset = frozenset()
    tree_mean: TreeMean | None = None  # the forests' prior mean of every cell (the members model the residual)


@dataclass
class _Query:
    """The arrays one prediction needs: the cells' contexts and methods, inputs and positions."""

    ctx_keys: list
    names: list[str]
    xm: np.ndarray
    xc: np.ndarray
    xp: np.ndarray | None
    cidx: np.ndarray  # each cell's context row
    midx: np.ndarray  # each cell's method column (its representative's, for a same computation)
    rep: np.ndarray | None
    order: np.ndarray  # cells sorted by context
    bounds: np.ndarray  # context i's cells are order[bounds[i]:bounds[i + 1]]
    offset: np.ndarray | None = None  # (contexts, names): the tree mean of each context and method

    def rows(self, i: int) -> np.ndarray:
        return self.order[self.bounds[i]:self.bounds[i + 1]]


class BayesianSurrogate:
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

    def _with(self, state: _State) -> "BayesianSurrogate":
        return BayesianSurrogate(self.metric, config=self.config, embed=self.embed, embed_dims=self.embed_dims,
                                 _state=state)

    # ------------------------------------------------------------------ fitting

    @property
    def is_fitted(self) -> bool:
        return self._state is not None

    def _require(self) -> _State:
        if self._state is None:
            raise NotFittedError("this surrogate is not fitted: call .fit(table, key=...) or BayesianSurrogate.load(path)")
        return self._state

    def fit(self, table: "PerfTable", *, key, calibrate: bool = True, calibrate_by: str = "task",
            progress: Callable[[str], None] | None = None) -> "BayesianSurrogate":
        """Fit on a performance table; returns a new, fitted surrogate (``table`` is not changed).

        With ``calibrate``, the predictive std is then calibrated on the training data
        alone: a second fit leaves out a fifth of the training units, and the spread of its
        errors on them (zero-shot, after seeing half of each context's cells, and on left-out
        cells of seen contexts) sets one inflation factor for each case. The ensemble members
        and that second fit run together as one vectorised fit.

        Args:
            table: observations; ``ok`` rows with the metric are the training targets.
            key: an int seed (or a ``jax.random`` key).
            calibrate_by: what the inner fit leaves out — ``task`` (new workloads on known
                hardware), ``hardware`` (a new machine), or a task grouping such as
                ``model.hf_id`` (a new model): calibrate for the novelty the model will face.
            progress: called with one line as each stage of the fit starts and ends (with an ETA).
        """
        return self.fit_many([table], keys=[key], calibrate=calibrate, calibrate_by=calibrate_by,
                             progress=progress)[0]

    def fit_many(self, tables: "list[PerfTable]", *, keys, calibrate: bool = True,
                 calibrate_by: str = "task", progress: Callable[[str], None] | None = None) -> "list[BayesianSurrogate]":
        """Fit one surrogate on each table, independently (the folds of an evaluation): each
        result is the one ``fit(table, key=key)`` gives, but all of their fits — members and
        calibration fits of every table — run as one batched, compiled program per shape bucket.
        Nothing is shared between the tables but that program.

        With ``TrainConfig.tree_mean=None`` (auto) and ``calibrate``, each table chooses its
        mean: the calibration's inner fit runs with and without the tree mean, and the one with
        the lower zero-shot log-RMSE on the inner fit's held-out units is fitted on the whole
        table (its inner fit then calibrates it). Training data only; without a calibration
        split, auto is no tree mean."""
        import time

        from metasel.surrogate._train import fit_batch

        clock = {"t0": time.monotonic(), "stage": time.monotonic()}

        def stage(text: str, eta: float | None = None) -> None:
            if progress is None:
                return
            now = time.monotonic()
            about = f" (about {eta:.0f}s more)" if eta is not None else ""
            progress(f"  fit: {text}{about} [{now - clock['t0']:.0f}s so far]")
            clock["stage"] = now

        seeds = [seed_of(k) for k in keys]
        if len(seeds) != len(tables):
            raise InputDataError(f"fit_many: expected one key per table ({len(tables)}), got {len(seeds)}")
        # per table: its calibration splits (disjoint held-out units; one, or more where one holds
        # too few units for intervals level by level), flattened into one list of inner fits
        splits_of = [_calibration_splits(self, t, s, by=calibrate_by) if calibrate else [] for t, s in zip(tables, seeds)]
        flat = [(i, q, sp) for i, sps in enumerate(splits_of) for q, sp in enumerate(sps)]
        # each table's ensemble size, counted once on the whole table; an inner fit calibrates the
        # model the table gets, so it has as many members as the final fit
        # (counting an inner fit's own, fewer cells would often give it 3 against the final fit's 1,
        # whose errors are larger and spread smaller than a mixture's)
        members = [self._members(t) for t in tables]

        def fit_plans(plans):  # each plan's members' parameters, all plans as one batch
            params = iter(fit_batch([x for p in plans if p is not None for x in p[1]], self.config))
            return [[next(params) for _ in p[1]] if p is not None else None for p in plans]

        def inner_seed(i, q):  # the first split's seed is what a single split always had
            return _sub_seed(seeds[i], 2) if q == 0 else _sub_seed(seeds[i], 2 + 1000 * q)

        auto = self.config.tree_mean is None
        templates, choice_info = [self._variant(False) if auto else self] * len(tables), [{} for _ in tables]
        inners: list[list] = [[] for _ in tables]  # per table: the chosen variant's inner fits, one per split
        if auto and flat:
            stage(f"1/2: {len(flat)} calibration fit(s) on 4/5 of the data, with and without the tree mean "
                  "(compiles first)")
            variants = [self._variant(False), self._variant(True)]
            arrays = [self._training_arrays(sp.inner) for _, _, sp in flat]
            plans = [[v._plan(sp.inner, inner_seed(i, q), arr, members=members[i]) for (i, q, sp), arr in zip(flat, arrays)]
                     for v in variants]
            fitted = fit_plans([p for pl in plans for p in pl])
            n = len(flat)
            models = [[v._finish(sp.inner, pl[0], f, failures=False)
                       for (_, _, sp), pl, f in zip(flat, plans[k], fitted[k * n:(k + 1) * n])]
                      for k, v in enumerate(variants)]
            for i in range(len(tables)):
                idx = [j for j, (t, _, _) in enumerate(flat) if t == i]
                if not idx:
                    continue
                rmse = [_pooled_rmse([_zero_shot_errors(models[k][j], flat[j][2], tables[i]) for j in idx]) for k in range(2)]
                k = int(rmse[1] < rmse[0])
                templates[i] = variants[k]
                inners[i] = [models[k][j] for j in idx]
                choice_info[i] = {"tree_mean": "auto: " + ("on" if k else "off"), "inner_rmse_tower": rmse[0],
                                  "inner_rmse_trees": rmse[1]}
            took = time.monotonic() - clock["stage"]
            stage("2/2: the final fit on all the data", eta=0.6 * took)
            mains = [t._plan(tb, _sub_seed(s, 0), members=n) for t, tb, s, n in zip(templates, tables, seeds, members)]
            main_fits = fit_plans(mains)
        else:
            stage("1/1: the final fit" + (f" and {len(flat)} calibration fit(s)" if calibrate else "") + " (compiles first)")
            mains = [t._plan(tb, _sub_seed(s, 0), members=n) for t, tb, s, n in zip(templates, tables, seeds, members)]
            plans = [templates[i]._plan(sp.inner, inner_seed(i, q), members=members[i]) for i, q, sp in flat]
            fitted = fit_plans([*mains, *plans])
            main_fits = fitted[:len(tables)]
            for (i, _, sp), pl, f in zip(flat, plans, fitted[len(tables):]):
                inners[i].append(templates[i]._finish(sp.inner, pl[0], f, failures=False))
        out = []
        for table, template, main, fits, splits, inner, info in zip(tables, templates, mains, main_fits, splits_of, inners,
                                                                     choice_info):
            model = template._finish(table, main[0], fits)
            model = model._with(replace(model._state, fit_info={**model._state.fit_info, **info}))
            if calibrate:
                seen, zero, cond, widths = (1.0, 1.0, 1.0, {}) if not splits else \
                    _calibration_factors(inner, splits, table)
                model = model._with(replace(model._state, calib_zero=zero, calib_cond=cond, calib_seen=seen,
                                            calib_widths=widths,
                                            fit_info={**model._state.fit_info, "calib_seen": seen, "calib_zero": zero,
                                                      "calib_cond": cond, "calibrate_by": calibrate_by,
                                                      "calib_splits": len(splits),
                                                      "calib_units": sum(sp.units for sp in splits)}))
            out.append(model)
        stage("done")
        return out

    def _variant(self, tree_mean: bool) -> "BayesianSurrogate":
        """This (unfitted) surrogate with ``TrainConfig.tree_mean`` set."""
        return BayesianSurrogate(self.metric, config=replace(self.config, tree_mean=tree_mean), embed=self.embed,
                                 embed_dims=self.embed_dims)

    def _training_arrays(self, table: "PerfTable") -> dict:
        """The standardised log targets (contexts × methods), mask, encoded inputs and the fitted encoder."""
        long = table.long(self.metric)
        long = long[long["value"] > 0]
        if long.empty:
            raise InputDataError(f"{self.metric}: no positive 'ok' observations to fit on")
        ctx_keys = list(dict.fromkeys(zip(long["task_id"], long["hardware_id"])))
        methods = sorted(long["method"].unique())
        catalog = Catalog.of(table)
        pairs, method_desc = catalog.contexts(ctx_keys), catalog.method_list(methods)
        encoder = FeatureEncoder(embed_kind="hash" if self.embed == "none" else self.embed, embed_dims=self.embed_dims,
                                 pair_terms=self.config.pair_terms)
        encoder.fit(pairs, method_desc)
        xp = encoder.pairs(pairs, method_desc)
        rep = _rep_matrix(ctx_keys, methods, _representatives(ctx_keys, catalog, methods)) \
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
        mask[rows, cols] = long["weight"].to_numpy(np.float32)  # a noisy-only cell counts less (PerfTable.long)
        evidence: dict[tuple[str, str], dict[str, float]] = {}
        for r, c, v in zip(rows, cols, y[rows, cols]):
            evidence.setdefault(ctx_keys[r], {})[methods[c]] = float(v)
        return {"ctx_keys": ctx_keys, "methods": methods, "catalog": catalog, "encoder": encoder,
                "xc": encoder.contexts(pairs), "xm": encoder.methods(method_desc), "xp": xp, "rep": rep, "y": y,
                "mask": mask, "y_mean": y_mean, "y_std": y_std, "evidence": evidence}

    def _members(self, table: "PerfTable") -> int:
        """Ensemble members of a fit on ``table``: ``TrainConfig.members``, or with 0 (auto) 3 up
        to ``AUTO_ENSEMBLE_MAX_CELLS`` training cells and 1 above."""
        if self.config.members:
            return self.config.members
        long = table.long(self.metric)
        return 3 if int(((long["value"] > 0) & (long["weight"] > 0)).sum()) <= AUTO_ENSEMBLE_MAX_CELLS else 1

    def _plan(self, table: "PerfTable", seed: int, arrays: dict | None = None, *,
              members: int | None = None) -> tuple[dict, list]:
        """The training arrays of ``table`` (``arrays``: already computed for it, e.g. by another
        variant of this surrogate; they do not depend on the tree mean) and one fit input per
        ensemble member (``members``, default :meth:`_members` of ``table``)."""
        from metasel.surrogate._train import FitInput

        d = dict(arrays) if arrays is not None else self._training_arrays(table)
        n_members = members or self._members(table)
        y = d["y"]
        if self.config.tree_mean and d["xc"].shape[1]:  # the members learn what the forests miss
            d["tree_mean"], offsets = TreeMean.fit(d["xc"], d["y"], d["mask"], seed=seed)
            if d["rep"] is not None:  # a cell measures its representative's value
                offsets = np.take_along_axis(offsets, d["rep"], axis=1)
            y = ((d["y"] - offsets) * d["mask"]).astype(np.float32)
        return d, [FitInput.of(d["xc"], d["xm"], y, d["mask"], xp=d["xp"], rep=d["rep"], seed=_sub_seed(seed, i))
                   for i in range(n_members)]

    def _finish(self, table: "PerfTable", d: dict, fits: list[dict], *, failures: bool = True) -> "BayesianSurrogate":
        """The fitted surrogate from a plan's arrays and its members' parameters. ``failures=False``
        leaves out the failure model: a calibration's inner fit is scored on its predictive
        mean and spread alone, and the failure model was most of its cost (a forest per method)."""
        encoder = d["encoder"]
        state = _State(
            metric=self.metric, direction=table.direction(self.metric), config=self.config, encoder=encoder,
            members=[_Member.from_params(p) for p in fits], y_mean=d["y_mean"], y_std=d["y_std"],
            train_methods=d["methods"], catalog=d["catalog"], evidence=d["evidence"], data_hash=table.content_hash(),
            failures=Failures.fit(table, encoder.contexts, d["catalog"], dim=encoder.context_dim,
                                  forests=self.config.failure_forests) if failures else None,
            losses=np.stack([p["losses"] for p in fits]), train_contexts=frozenset(d["ctx_keys"]),
            tree_mean=d.get("tree_mean"),
            fit_info={"num_contexts": len(d["ctx_keys"]), "num_methods": len(d["methods"]),
                      "num_cells": int((d["mask"] > 0).sum()), "members": len(fits),
                      "tree_mean": "on" if d.get("tree_mean") is not None else "off"},
        )
        return self._with(state)

    # ------------------------------------------------------------------ predicting

    @property
    def methods(self) -> list[str]:
        """Methods this surrogate can predict without being told about more."""
        return sorted(self._require().catalog.methods)

    @property
    def direction(self) -> str:
        return self._require().direction

    @property
    def uses_landmarks(self) -> bool:
        """Whether a task's landmarks change this model's predictions: its training methods
        include speculative decoding whose landmark varied over the training tasks."""
        from metasel.domain.pairs import LANDMARK_TERMS, PAIR_TERMS

        return any(PAIR_TERMS[i] in LANDMARK_TERMS for i in self._require().encoder.pair_columns)

    def _query(self, frame: "pd.DataFrame", catalog: Catalog) -> _Query:
        s = self._require()
        ctx_keys = context_keys(frame)
        ev_methods = {m for key in ctx_keys for m in s.evidence.get(key, {})}
        names = sorted(set(frame["method"]) | ev_methods)
        rep = None
        if s.config.same_computation:  # a cell measures its representative's value (the same computation)
            reps = _representatives(ctx_keys, catalog, [*s.train_methods, *names])
            names = sorted(set(names) | {r for by in reps.values() for m, r in by.items() if m in names})
            rep = _rep_matrix(ctx_keys, names, reps)
        method_desc = catalog.method_list(names)
        pairs = catalog.contexts(ctx_keys)
        xm = s.encoder.methods(method_desc)
        xc = s.encoder.contexts(pairs)
        xp = s.encoder.pairs(pairs, method_desc) if len(s.encoder.pair_columns) else None
        cidx, midx = cell_positions(frame, ctx_keys, names)
        if rep is not None:
            midx = rep[cidx, midx]
            if xp is not None:
                xp = np.take_along_axis(xp, rep[:, :, None], axis=1)
        order = np.argsort(cidx, kind="stable")
        bounds = np.searchsorted(cidx[order], np.arange(len(ctx_keys) + 1))
        offset = None
        if s.tree_mean is not None:
            index = {m: i for i, m in enumerate(s.train_methods)}
            offset = s.tree_mean.offsets(xc, [index.get(m, -1) for m in names])
        return _Query(ctx_keys, names, xm if xm.shape[1] else np.zeros((len(names), 1), np.float32),
                      xc if xc.shape[1] else np.zeros((len(ctx_keys), 1), np.float32), xp, cidx, midx, rep, order, bounds,
                      offset)

    def predict(self, cells, *, table: "PerfTable | None" = None, joint: bool = False) -> Posterior:
        """Posterior of log(metric) for each cell.

        Args:
            cells: a frame (or iterable of tuples) with ``task_id, method, hardware_id``.
            table: descriptors of tasks, methods or hardware the surrogate has not seen.
            joint: also return each context's joint covariance (``Posterior.blocks``).
        """
        s = self._require()
        frame = cells_frame(cells)
        q = self._query(frame, s.catalog.merged(table))
        outs = [self._predict_member(member, q, joint=joint) for member in s.members]
        means = np.stack([o[0] for o in outs])
        mean = means.mean(axis=0)
        var = np.mean([o[1] for o in outs], axis=0) + (np.var(means, axis=0) if len(outs) > 1 else 0.0)
        # each context's calibration case: zero-shot (no evidence), conditioned (a new context with some), seen
        ctx_case = np.array([(2 if key in s.train_contexts else 1) if s.evidence.get(key) else 0 for key in q.ctx_keys],
                            dtype=int)
        ctx_factor = np.array([s.calib_zero, s.calib_cond, s.calib_seen])[ctx_case]  # calibrated std inflation
        var = var * ctx_factor[q.cidx] ** 2
        widths = None
        if s.calib_widths:
            ones = [1.0] * len(LEVELS)
            widths = np.array([s.calib_widths.get(c, ones) for c in ("zero", "cond", "seen")])[ctx_case[q.cidx]]
        blocks = ()
        if joint:
            blocks = tuple(self._joint_block(q.rows(i), means, [o[2][i] for o in outs], ctx_factor[i] * s.y_std)
                           for i in range(len(q.ctx_keys)))
        return Posterior(mean * s.y_std + s.y_mean, np.sqrt(var) * s.y_std, blocks, widths)

    @staticmethod
    def _joint_block(rows: np.ndarray, means: np.ndarray, covs: list, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """One context's joint covariance over its cells: the members' mixture (mean covariance
        plus the covariance of the members' means), scaled to the metric's log units."""
        cov = np.mean(covs, axis=0)
        if len(means) > 1:
            dev = means[:, rows] - means[:, rows].mean(axis=0)
            cov = cov + dev.T @ dev / len(means)
        return rows, cov * scale ** 2

    def _predict_member(self, member: _Member, q: _Query, *, joint: bool = False):
        """One member's predictive mean and variance (standardised units) of the queried cells, and
        with ``joint`` each context's covariance over its cells (a list in context order)."""
        s = self._require()
        cfg = s.config
        hm = _numpy.mlp(q.xm, member.mth_layers)
        index = {m: i for i, m in enumerate(s.train_methods)}
        for i, m in enumerate(q.names):
            if m in index:
                hm[i] += member.emb[index[m]]
        hc = _numpy.mlp(q.xc, member.ctx_layers)
        a, f = hc[:, 0], hc[:, 1:1 + cfg.k]
        c, g, phi = hm[:, 0], hm[:, 1:1 + cfg.k], hm[:, 1 + cfg.k:]
        psi = np.concatenate([np.ones((len(q.names), 1)), phi], axis=1)
        prior_var = np.concatenate([[member.s_bias ** 2], np.ones(cfg.rank)])
        if hc.shape[1] > 1 + cfg.k:  # per-context noise scale
            noise_var_c = (member.noise * np.exp(np.clip(hc[:, 1 + cfg.k], -3.0, 3.0))) ** 2
        else:
            noise_var_c = np.full(len(q.ctx_keys), member.noise ** 2)
        mu_all = a[:, None] + c[None, :] + f @ g.T  # (contexts, methods)
        if q.offset is not None:
            mu_all = mu_all + q.offset
        if q.xp is not None and len(member.beta):
            mu_all = mu_all + q.xp @ member.beta
        slopes = q.xp is not None and len(member.tau) > 0  # each context's own pair-term effects
        slope_prior_var = np.concatenate([prior_var, member.tau ** 2]) if slopes else prior_var  # latent, then slopes
        mean = mu_all[q.cidx, q.midx]
        var = ((psi ** 2) @ prior_var)[q.midx] + noise_var_c[q.cidx]
        if slopes:
            var = var + (q.xp[q.cidx, q.midx] ** 2) @ member.tau ** 2
        covs = []
        mi = {m: i for i, m in enumerate(q.names)}
        for i, key in enumerate(q.ctx_keys):
            ev = s.evidence.get(key)
            rows = q.rows(i)
            psi_i = np.concatenate([psi, q.xp[i]], axis=1) if slopes else psi
            obs = np.array([mi[m] for m in ev], dtype=int) if ev else np.zeros(0, dtype=int)
            if ev and q.rep is not None:
                obs = q.rep[i, obs]
            values = np.array(list(ev.values())) if ev else np.zeros(0)
            if ev:
                mean[rows], var[rows] = _numpy.posterior(mu_all[i], psi_i, slope_prior_var, noise_var_c[i], values, obs,
                                                         q.midx[rows])
            if joint:
                covs.append(_numpy.posterior_cov(psi_i, slope_prior_var, noise_var_c[i], obs, q.midx[rows]))
        return mean, var, covs

    def same_computation(self, task_id: str, methods: Iterable[str], *, table: "PerfTable | None" = None) -> dict[str, str]:
        """``method -> representative`` for ``methods`` on this task: methods that run the same
        computation there (static batching of one request, a prefix cache with no shared
        prefix: :func:`metasel.domain.techniques.same_computation`) share one; every other
        method maps to itself."""
        return self._require().catalog.merged(table).same_computation(task_id, methods)

    def p_fail(self, cells, *, table: "PerfTable | None" = None) -> np.ndarray:
        """Probability that each cell's benchmark fails (``oom``, ``unsupported``, ...), from
        the failures of its method in the nearest training contexts (a recorded failure of
        the very cell counts as certain)."""
        s = self._require()
        return p_fail_cells(s.failures, cells_frame(cells), s.catalog.merged(table), s.encoder.contexts)

    def condition(self, observations: "PerfTable") -> "BayesianSurrogate":
        """A new surrogate that also holds ``observations`` (closed form, no refit).

        ``ok`` rows with the metric become evidence for their (task, hardware); their
        descriptors join the catalogue, so new tasks, hardware and methods are fine.
        """
        import math

        s = self._require()
        long = observations.long(self.metric)
        long = long[long["value"] > 0]
        evidence = {k: dict(v) for k, v in s.evidence.items()}
        for t, m, h, v in zip(long["task_id"], long["method"], long["hardware_id"], long["value"]):
            evidence.setdefault((t, h), {})[m] = (math.log(v) - s.y_mean) / s.y_std
        failures = s.failures.with_failures(observations) if s.failures is not None else None
        return self._with(replace(s, evidence=evidence, catalog=s.catalog.merged(observations), failures=failures))

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
            arrays[f"{tag}emb"], arrays[f"{tag}beta"], arrays[f"{tag}tau"] = member.emb, member.beta, member.tau
        arrays["losses"] = s.losses
        arrays["fail.weights"] = s.failures.weights
        for j, forest in s.failures.forests.items():
            arrays.update(forest.arrays(f"fail.forest{j}"))
        if s.tree_mean is not None:
            arrays.update(s.tree_mean.arrays("mean"))
        ev = [(t, h, m, v) for (t, h), d in s.evidence.items() for m, v in d.items()]
        arrays["ev.keys"] = np.asarray([[t, h, m] for t, h, m, _ in ev], dtype=str).reshape(-1, 3)
        arrays["ev.values"] = np.asarray([v for *_, v in ev], dtype=np.float64)
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "kind": KIND, "metasel_version": __version__,
            "metric": s.metric, "direction": s.direction, "config": asdict(s.config), "embed": self.embed,
            "embed_dims": self.embed_dims, "encoder": enc_meta,
            "members": [{"noise": m.noise, "s_bias": m.s_bias} for m in s.members],
            "y_mean": s.y_mean, "y_std": s.y_std, "train_methods": s.train_methods,
            "num_layers": [len(s.members[0].ctx_layers), len(s.members[0].mth_layers)],
            "tasks": s.catalog.tasks, "hardware": s.catalog.hardware, "methods": s.catalog.methods,
            "data_hash": s.data_hash, "fit_info": s.fit_info, "calib_zero": s.calib_zero, "calib_cond": s.calib_cond,
            "calib_seen": s.calib_seen, "calib_widths": s.calib_widths, "train_contexts": sorted(list(k) for k in s.train_contexts),
            "fail_methods": s.failures.methods, "fail_overall": s.failures.overall,
            "fail_forests": sorted(int(j) for j in s.failures.forests),
            "mean_forests": None if s.tree_mean is None else sorted(int(j) for j in s.tree_mean.forests),
            "failed_cells": sorted([t, h, m, st] for (t, h), d in s.failures.failed_cells.items() for m, st in d.items()),
        }
        arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BayesianSurrogate":
        """Read a model file; a wrong, truncated or other-format file is a clear error."""
        meta, arrays = _read_model_file(Path(path))
        try:
            members = []
            for j, scales in enumerate(meta["members"]):
                tag = f"m{j}."
                layers = {p: [(arrays[f"{tag}{p}.{i}.w"], arrays[f"{tag}{p}.{i}.b"]) for i in range(n)]
                          for p, n in zip(("ctx", "mth"), meta["num_layers"])}
                members.append(_Member(layers["ctx"], layers["mth"], arrays[f"{tag}emb"], float(scales["noise"]),
                                       float(scales["s_bias"]), np.asarray(arrays[f"{tag}beta"], dtype=float),
                                       np.asarray(arrays[f"{tag}tau"], dtype=float)))
            config = TrainConfig(**meta["config"])
            encoder = FeatureEncoder.from_state(meta["encoder"], arrays)
            evidence: dict[tuple[str, str], dict[str, float]] = {}
            for (t, h, m), v in zip(arrays["ev.keys"].tolist(), arrays["ev.values"].tolist()):
                evidence.setdefault((t, h), {})[m] = float(v)
            failed_cells: dict = {}
            for t, h, m, st in meta["failed_cells"]:
                failed_cells.setdefault((t, h), {})[m] = st
            forests = {int(j): Forest.from_arrays(arrays, f"fail.forest{int(j)}") for j in meta["fail_forests"]}
            failures = Failures(list(meta["fail_methods"]), np.asarray(arrays["fail.weights"], float),
                                float(meta["fail_overall"]), failed_cells, forests)
            state = _State(
                metric=meta["metric"], direction=meta["direction"], config=config, encoder=encoder,
                members=members, y_mean=float(meta["y_mean"]), y_std=float(meta["y_std"]),
                train_methods=list(meta["train_methods"]),
                catalog=Catalog(meta["tasks"], meta["hardware"], meta["methods"]), evidence=evidence,
                data_hash=meta["data_hash"], failures=failures, losses=arrays["losses"], fit_info=meta["fit_info"],
                calib_zero=float(meta["calib_zero"]), calib_cond=float(meta["calib_cond"]),
                calib_seen=float(meta["calib_seen"]),
                calib_widths={str(k): [float(w) for w in v] for k, v in meta["calib_widths"].items()},
                train_contexts=frozenset(tuple(k) for k in meta["train_contexts"]),
                tree_mean=None if meta["mean_forests"] is None else TreeMean.from_arrays(arrays, "mean", meta["mean_forests"]),
            )
            if not members or any(len(m.beta) != len(encoder.pair_columns) or len(m.tau) not in (0, len(m.beta))
                                  for m in members):
                raise ValueError(f"{len(members)} members; pair-term weights do not match "
                                 f"the {len(encoder.pair_columns)} pair terms")
        except (KeyError, TypeError, ValueError) as exc:
            raise InputDataError(f"{path}: the model file is incomplete or corrupt ({type(exc).__name__}: {exc})") from exc
        return cls(meta["metric"], config=config, embed=meta["embed"], embed_dims=meta["embed_dims"], _state=state)

    def ensemble(self) -> list["BayesianSurrogate"]:
        """Each ensemble member as a surrogate of its own (the model predicts their equal mixture)."""
        s = self._require()
        return [self._with(replace(s, members=[m])) for m in s.members]

    def info(self) -> dict[str, Any]:
        s = self._require()
        return {"metric": s.metric, "direction": s.direction,
                "noise_std_log": float(np.mean([m.noise for m in s.members])) * s.y_std,
                "noise_per_context": bool(s.config.hetero_noise),
                "bias_std_log": float(np.mean([m.s_bias for m in s.members])) * s.y_std,
                "embedder": s.encoder.embed_kind, "methods": len(s.catalog.methods), "tasks": len(s.catalog.tasks),
                "hardware": len(s.catalog.hardware), "data_hash": s.data_hash,
                "pair_terms": len(s.encoder.pair_columns), "pair_slopes": len(s.members[0].tau),
                "interval_widths": sorted(s.calib_widths), **s.fit_info}


def _read_model_file(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and arrays of a model file of exactly this format; anything else is refused."""
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
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputDataError(f"{path}: not a metasel model file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("format_version") != FORMAT_VERSION or meta.get("kind") != KIND:
        raise InputDataError(f"{path}: model format {meta.get('format_version')!r} ({meta.get('kind', 'bayesian')}) is not "
                             f"the format this metasel reads ({FORMAT_VERSION}, {KIND}); refit with `metasel fit`")
    return meta, arrays


@dataclass
class _CalibrationSplit:
    """What the calibration's inner fit trains on, and what it is scored on."""

    inner: "PerfTable"  # the training table less the held-out units and a tenth of the other cells
    test: "pd.DataFrame"  # the held-out units' cells (task_id, method, hardware_id, value)
    dropped: "pd.DataFrame"  # the other cells left out
    rng: np.random.Generator
    units: int = 0  # how many units (tasks, hardware, task groups) the held-out cells come from
    held_units: frozenset = frozenset()  # which units those are


CALIBRATION_SPLITS = 5  # at most this many disjoint calibration splits (each a fifth of the units)


def _calibration_splits(template: BayesianSurrogate, table: "PerfTable", seed: int, *,
                        by: str = "task") -> list[_CalibrationSplit]:
    """The calibration's inner fits: one split holding out a fifth of the units, and, where that is
    fewer than ``CONFORMAL_MIN_UNITS`` units (20 machines hold out 4), more splits holding out
    other units (never one twice), up to ``CALIBRATION_SPLITS``, until the held-out units reach
    ``CONFORMAL_MIN_UNITS`` or run out: interval widths then come from the errors of every
    held-out unit (cross-validation over groups, in the manner of CV+), not of a handful.
    The first split is the single split the fit always made (same seed, same units)."""
    first = _calibration_split(template, table, np.random.default_rng([seed, 1]), by=by)
    if first is None:
        return []
    out, held = [first], set(first.held_units)
    while sum(sp.units for sp in out) < CONFORMAL_MIN_UNITS and len(out) < CALIBRATION_SPLITS:
        sp = _calibration_split(template, table, np.random.default_rng([seed, 1, len(out)]), by=by, exclude=held)
        if sp is None:
            break
        out.append(sp)
        held |= sp.held_units
    return out


def _calibration_split(template: BayesianSurrogate, table: "PerfTable", rng: np.random.Generator, *,
                       by: str = "task", exclude: set = frozenset()) -> _CalibrationSplit | None:
    """The inner fit's training table: it leaves out a fifth of the training units — tasks,
    hardware, or groups of tasks (``by``), none of ``exclude`` — and a tenth of the other cells.
    None when there are too few units to hold any out."""
    long = table.long(template.metric)
    long = long[long["value"] > 0].reset_index(drop=True)
    held = _held_out_rows(table, long, by, rng, exclude=exclude)
    if held is None:
        return None
    held_rows, units, held_units = held
    held = set(zip(long.loc[held_rows, "task_id"], long.loc[held_rows, "hardware_id"]))  # held-out contexts
    kept = long[~held_rows]
    drop_cells = kept.sample(frac=0.1, random_state=int(rng.integers(2**31))) if len(kept) >= 20 else kept.iloc[0:0]
    dropped = set(zip(drop_cells["task_id"], drop_cells["method"], drop_cells["hardware_id"]))
    obs = table.observations
    in_held = np.array([c in held for c in zip(obs["task_id"], obs["hardware_id"])], dtype=bool)
    in_dropped = np.array([c in dropped for c in zip(obs["task_id"], obs["method"], obs["hardware_id"])], dtype=bool)
    return _CalibrationSplit(table.subset(~in_held & ~in_dropped),
                             long[held_rows].reset_index(drop=True), drop_cells, rng, units, frozenset(held_units))


def _zero_shot_errors(inner: BayesianSurrogate, split: _CalibrationSplit, table: "PerfTable") -> np.ndarray:
    """The inner fit's zero-shot log errors on the held-out units' cells."""
    test = split.test
    if test.empty:
        return np.zeros(0)
    p = inner.predict(test[["task_id", "method", "hardware_id"]], table=table)
    return p.mean - np.log(test["value"].to_numpy())


def _pooled_rmse(errors: list[np.ndarray]) -> float:
    """log-RMSE over every split's held-out cells together."""
    e = np.concatenate(errors) if errors else np.zeros(0)
    return float(np.sqrt(np.mean(e ** 2))) if len(e) else float("nan")


def _calibration_factors(inners: list[BayesianSurrogate], splits: list[_CalibrationSplit],
                         table: "PerfTable") -> tuple[float, float, float, dict]:
    """Std inflation factors (seen, zero-shot, conditioned) from the inner fits' errors, and
    each case's interval widths at ``base.LEVELS``; one inner fit per split, their errors pooled.

    Seen: the left-out cells of contexts it trained on. Zero-shot: the left-out units' cells
    predicted from nothing. Conditioned: each left-out context's cells split in two halves,
    one told, the other predicted. Each factor makes 90% of the standardised errors fall
    inside the 90% interval; none is below 1 (only widens the std that acquisitions use).
    The widths are split conformal on the same held-out errors, level by level: the
    ``ceil((n + 1)·level)``-th smallest standardised error over the Gaussian quantile, so an
    interval at 50% is as wide as the errors of the intended novelty say (heavy tails make
    one std factor too wide at 50% once it is right at 90%). Fewer than 20 errors: no widths.
    The held-out units' errors are exchangeable only unit by unit (a held-out machine is
    faster than predicted on every cell), so the zero-shot and conditioned cases get widths
    only from at least ``CONFORMAL_MIN_UNITS`` held-out units over all splits; below that they
    keep the Gaussian shape with the 90% factor.
    """
    parts = [_split_zscores(inner, split, table) for inner, split in zip(inners, splits)]
    z_seen, z0, z1 = (np.concatenate([p[k] for p in parts]) for k in range(3))
    from scipy.stats import norm

    z90 = norm.ppf(0.95)

    def factor(z):
        return float(max(1.0, np.quantile(z, 0.9) / z90)) if len(z) >= 5 else 1.0

    def widths(z, f):
        z = np.sort(z)
        n = len(z)
        ranks = [min(n, int(np.ceil((n + 1) * lv))) for lv in LEVELS]
        return [float(z[r - 1] / (f * norm.ppf(0.5 + lv / 2.0))) for r, lv in zip(ranks, LEVELS)]

    units = sum(sp.units for sp in splits)
    enough = {"seen": True, "zero": units >= CONFORMAL_MIN_UNITS, "cond": units >= CONFORMAL_MIN_UNITS}
    out = {case: widths(z, factor(z)) for case, z in (("seen", z_seen), ("zero", z0), ("cond", z1))
           if len(z) >= 20 and enough[case]}
    return factor(z_seen), factor(z0), factor(z1), out


def _split_zscores(inner: BayesianSurrogate, split: _CalibrationSplit,
                   table: "PerfTable") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One inner fit's standardised errors: on seen contexts' left-out cells, zero-shot on the
    held-out units, and conditioned on half of each held-out context's cells."""
    from metasel.data.table import PerfTable

    metric, rng, test, drop_cells = inner.metric, split.rng, split.test, split.dropped

    def zscores(model, cells):
        if cells.empty:
            return np.zeros(0)
        p = model.predict(cells[["task_id", "method", "hardware_id"]], table=table)
        return np.abs(p.mean - np.log(cells["value"].to_numpy())) / p.std

    seen_cells = drop_cells[[(t, h) in inner._state.train_contexts for t, h in zip(drop_cells["task_id"], drop_cells["hardware_id"])]]
    z_seen = zscores(inner, seen_cells)
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
        cond = inner.condition(PerfTable(told.rename(columns={"value": metric})[
            ["task_id", "method", "hardware_id", metric]], source="calibration"))
        z1 = zscores(cond, test.loc[np.concatenate(asked)])
    return z_seen, z0, z1


def _sub_seed(seed: int, i: int) -> int:
    """The ``i``-th independent seed derived from ``seed``."""
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0])


def _held_out_rows(table: "PerfTable", long: "pd.DataFrame", by: str, rng,
                   exclude: set = frozenset()) -> tuple[np.ndarray, int, set] | None:
    """Rows of ``long`` whose unit (task, hardware, or task group ``by``) is in a random fifth
    of the units (drawn from those not in ``exclude``), how many units that is, and which;
    None when there are too few units to hold any out, or none left outside ``exclude``."""
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
    free = [u for u in units if u not in exclude]
    if not free:
        return None
    held_units = set(rng.choice(free, size=min(len(free), max(1, len(units) // 5)), replace=False).tolist())
    return unit.isin(held_units).to_numpy(), len(held_units), held_units


def _representatives(ctx_keys, catalog: Catalog, names) -> dict[str, dict[str, str]]:
    """Per task of ``ctx_keys``: ``method -> representative`` for the described ``names`` that run
    the same computation as another (:func:`metasel.domain.techniques.same_computation`); others are absent."""
    from metasel.domain.techniques import same_computation

    methods = {m: catalog.methods[m] for m in dict.fromkeys(names) if m in catalog.methods}
    out: dict[str, dict[str, str]] = {}
    for t, _ in ctx_keys:
        if t not in out and t in catalog.tasks:
            out[t] = {m: r for m, r in same_computation(catalog.tasks[t], methods).items() if m != r}
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
