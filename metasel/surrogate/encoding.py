"""The feature encoder: named domain features → scaled arrays, fitted on training descriptors only.

:class:`FeatureEncoder` is fitted on training descriptors (scalers, embedding PCA, column
lists, pair-term scales) and then turns any descriptor, seen or new, into a fixed-width
vector. Plain numpy, so a fitted model predicts without importing jax or torch. The
features themselves are the domain's (:mod:`metasel.domain.features`, roofline, pair terms);
this module only scales and stacks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from metasel.domain.features import (describe_hardware, describe_method, describe_task, hardware_features,
                                     method_features, task_features)
from metasel.domain.numbers import as_dict
from metasel.domain.pairs import (LANDMARK_COLUMNS, LANDMARKS, N_CONTEXT_QUANTITIES, N_METHOD_QUANTITIES, PAIR_TERMS,
                                  context_quantities, method_quantities, pair_terms)
from metasel.domain.roofline import analytic_features
from metasel.surrogate.embed import EMBED_DIM, Embedder




@dataclass
class _Scaler:
    columns: list[str]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, rows: list[dict[str, float]]) -> "_Scaler":
        columns = sorted({k for r in rows for k in r})
        x = _matrix(rows, columns)
        import warnings

        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-missing columns are dropped below
            mean = np.nanmean(x, axis=0) if len(x) else np.zeros(len(columns))
            std = np.nanstd(x, axis=0) if len(x) else np.ones(len(columns))
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-9), std, 1.0)
        keep = [i for i, c in enumerate(columns) if np.isfinite(x[:, i]).any()] if len(x) else []
        return cls([columns[i] for i in keep], mean[keep], std[keep])

    def transform(self, rows: list[dict[str, float]]) -> np.ndarray:
        x = (_matrix(rows, self.columns) - self.mean) / self.std
        x = np.where(np.isfinite(x), x, 0.0)  # missing -> the training mean
        return np.clip(x, -10.0, 10.0).astype(np.float32)

    def state(self) -> dict:
        return {"columns": self.columns, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state(cls, s: dict) -> "_Scaler":
        return cls(list(s["columns"]), np.asarray(s["mean"], dtype=float), np.asarray(s["std"], dtype=float))


def _matrix(rows: list[dict[str, float]], columns: list[str]) -> np.ndarray:
    x = np.full((len(rows), len(columns)), np.nan)
    index = {c: i for i, c in enumerate(columns)}
    for r, row in enumerate(rows):
        for k, v in row.items():
            i = index.get(k)
            if i is not None:
                x[r, i] = v
    return x


@dataclass
class _PCA:
    mean: np.ndarray
    components: np.ndarray  # (k, EMBED_DIM)
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, k: int) -> "_PCA":
        mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
        xc = x - mean
        k = max(0, min(k, len(x) - 1, x.shape[1]))
        if k == 0:
            return cls(mean, np.zeros((0, x.shape[1])), np.ones(0))
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
        comps = vt[:k]
        # fix the sign of each component so the fit is deterministic across BLAS builds
        signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
        comps = comps * signs[:, None]
        proj = xc @ comps.T
        scale = proj.std(axis=0)
        return cls(mean, comps, np.where(scale > 1e-9, scale, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (((x - self.mean) @ self.components.T) / self.scale).astype(np.float32)

    def state(self) -> dict:
        return {"mean": self.mean, "components": self.components, "scale": self.scale}


@dataclass
class FeatureEncoder:
    """Scalers, PCA and column lists fitted on training descriptors only.

    ``contexts(...)`` encodes (task, hardware) pairs: task, hardware and analytic
    features plus the PCA'd embeddings of both descriptions; ``methods(...)`` encodes
    methods: the technique vector plus the PCA'd description embedding.
    """

    embed_kind: str = "auto"
    embed_dims: int = 4
    context_scaler: _Scaler | None = None
    method_scaler: _Scaler | None = None
    pca_task: _PCA | None = None
    pca_hw: _PCA | None = None
    pca_method: _PCA | None = None
    pair_terms: bool = True  # False: no pair term is used (all scales 0)
    pair_scale: np.ndarray | None = None  # RMS of each pair term on the training pairs; 0 = unused
    landmark_mean: np.ndarray | None = None  # mean log landmark of the training contexts (fills a missing one)
    embedder: Embedder | None = field(default=None, repr=False)

    # -- raw rows from descriptors
    @staticmethod
    def _context_row(task: Mapping, hw: Mapping) -> dict[str, float]:
        spec, feats = as_dict(task.get("spec")), as_dict(task.get("features"))
        specs = as_dict(hw.get("specs"))
        return {**task_features(spec, feats), **hardware_features(specs), **analytic_features(spec, specs)}

    @staticmethod
    def _method_row(method: Mapping) -> dict[str, float]:
        return method_features(as_dict(method.get("techniques")))

    @staticmethod
    def _texts(tasks, hws, methods):
        t = [describe_task(x.get("name", x.get("task_id")), as_dict(x.get("spec"))) for x in tasks]
        h = [describe_hardware(x.get("name", x.get("hardware_id")), as_dict(x.get("specs"))) for x in hws]
        m = [describe_method(x.get("method"), str(x.get("description") or "")) for x in methods]
        return t, h, m

    def fit(self, contexts: list[tuple[Mapping, Mapping]], methods: list[Mapping]) -> "FeatureEncoder":
        """Fit on the training (task, hardware) pairs and methods."""
        self.embedder = Embedder(self.embed_kind)
        self.embed_kind = self.embedder.kind
        self.context_scaler = _Scaler.fit([self._context_row(t, h) for t, h in contexts])
        self.method_scaler = _Scaler.fit([self._method_row(m) for m in methods])
        cq = self._context_quantities(contexts)
        if contexts:
            import warnings

            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # no training task has this landmark
                mean = np.nanmean(cq[:, LANDMARK_COLUMNS], axis=0)
            self.landmark_mean = np.where(np.isfinite(mean), mean, 0.0)
        raw = self._pair_raw(contexts, methods, cq) if self.pair_terms else np.zeros((0, 0, len(PAIR_TERMS)))
        rms = np.sqrt(np.mean(raw ** 2, axis=(0, 1))) if raw.size else np.zeros(len(PAIR_TERMS))
        self.pair_scale = np.where(rms > 1e-9, rms, 0.0)
        if self.embed_dims > 0:
            tasks = list({str(t.get("task_id")): t for t, _ in contexts}.values())
            hws = list({str(h.get("hardware_id")): h for _, h in contexts}.values())
            tt, ht, mt = self._texts(tasks, hws, methods)
            self.pca_task = _PCA.fit(self.embedder(tt), self.embed_dims)
            self.pca_hw = _PCA.fit(self.embedder(ht), self.embed_dims)
            self.pca_method = _PCA.fit(self.embedder(mt), self.embed_dims)
        return self

    def contexts(self, contexts: list[tuple[Mapping, Mapping]]) -> np.ndarray:
        x = self.context_scaler.transform([self._context_row(t, h) for t, h in contexts])
        if self.embed_dims > 0 and contexts:
            tt, ht, _ = self._texts([t for t, _ in contexts], [h for _, h in contexts], [])
            x = np.concatenate([x, self.pca_task.transform(self.embedder(tt)), self.pca_hw.transform(self.embedder(ht))], axis=1)
        return x.astype(np.float32)

    def methods(self, methods: list[Mapping]) -> np.ndarray:
        x = self.method_scaler.transform([self._method_row(m) for m in methods])
        if self.embed_dims > 0 and methods:
            _, _, mt = self._texts([], [], methods)
            x = np.concatenate([x, self.pca_method.transform(self.embedder(mt))], axis=1)
        return x.astype(np.float32)

    @staticmethod
    def _context_quantities(contexts: list[tuple[Mapping, Mapping]]) -> np.ndarray:
        if not contexts:
            return np.zeros((0, N_CONTEXT_QUANTITIES))
        return np.stack([context_quantities(as_dict(t.get("spec")), as_dict(h.get("specs")), as_dict(t.get("features")))
                         for t, h in contexts])

    def _pair_raw(self, contexts: list[tuple[Mapping, Mapping]], methods: list[Mapping],
                  cq: np.ndarray | None = None) -> np.ndarray:
        """Unscaled pair terms; ``cq``: the contexts' quantities when already computed."""
        cq = self._context_quantities(contexts) if cq is None else cq.copy()
        fill = self.landmark_mean if self.landmark_mean is not None else np.zeros(len(LANDMARKS))
        lm = cq[:, LANDMARK_COLUMNS]
        cq[:, LANDMARK_COLUMNS] = np.where(np.isnan(lm), fill, lm)  # a task without landmarks: the training mean
        mq = np.stack([method_quantities(as_dict(m.get("techniques"))) for m in methods]) if methods \
            else np.zeros((0, N_METHOD_QUANTITIES))
        return pair_terms(cq, mq)

    def pairs(self, contexts: list[tuple[Mapping, Mapping]], methods: list[Mapping]) -> np.ndarray:
        """Pair terms of every context with every method, (C, M, P), scaled; only the terms
        that vary on the training pairs (P may be 0)."""
        keep = self.pair_columns
        raw = self._pair_raw(contexts, methods)[..., keep]
        return (raw / self.pair_scale[keep]).astype(np.float32)

    @property
    def pair_columns(self) -> np.ndarray:
        if self.pair_scale is None:
            return np.zeros(0, dtype=int)
        return np.flatnonzero(self.pair_scale > 0)

    @property
    def context_dim(self) -> int:
        extra = 0 if self.embed_dims == 0 else self.pca_task.components.shape[0] + self.pca_hw.components.shape[0]
        return len(self.context_scaler.columns) + extra

    @property
    def method_dim(self) -> int:
        extra = 0 if self.embed_dims == 0 else self.pca_method.components.shape[0]
        return len(self.method_scaler.columns) + extra

    # -- persistence (arrays + JSON)
    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta = {"embed_kind": self.embed_kind, "embed_dims": self.embed_dims,
                "context_scaler": self.context_scaler.state(), "method_scaler": self.method_scaler.state(),
                "pair_terms": list(PAIR_TERMS),
                "pair_scale": None if self.pair_scale is None else [float(v) for v in self.pair_scale],
                "landmark_mean": None if self.landmark_mean is None else [float(v) for v in self.landmark_mean]}
        arrays: dict[str, np.ndarray] = {}
        if self.embed_dims > 0:
            for name in ("pca_task", "pca_hw", "pca_method"):
                for k, v in getattr(self, name).state().items():
                    arrays[f"enc.{name}.{k}"] = np.asarray(v)
            keys = sorted(self.embedder.cache)
            arrays["enc.cache_keys"] = np.asarray(keys)
            arrays["enc.cache_vecs"] = (np.stack([self.embedder.cache[k] for k in keys]) if keys
                                        else np.zeros((0, EMBED_DIM), np.float32))
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: Mapping[str, np.ndarray]) -> "FeatureEncoder":
        enc = cls(embed_kind=meta["embed_kind"], embed_dims=int(meta["embed_dims"]),
                  context_scaler=_Scaler.from_state(meta["context_scaler"]),
                  method_scaler=_Scaler.from_state(meta["method_scaler"]))
        if list(meta["pair_terms"]) != list(PAIR_TERMS):
            raise ValueError("the model's pair terms differ from this metasel's")
        if meta["pair_scale"] is not None:
            enc.pair_scale = np.asarray(meta["pair_scale"], dtype=float)
        if meta["landmark_mean"] is not None:
            enc.landmark_mean = np.asarray(meta["landmark_mean"], dtype=float)
        if enc.embed_dims > 0:
            for name in ("pca_task", "pca_hw", "pca_method"):
                setattr(enc, name, _PCA(*(np.asarray(arrays[f"enc.{name}.{k}"]) for k in ("mean", "components", "scale"))))
            cache = {str(k): np.asarray(v) for k, v in zip(arrays["enc.cache_keys"], arrays["enc.cache_vecs"])}
            enc.embedder = Embedder(enc.embed_kind, cache=cache)
        return enc
