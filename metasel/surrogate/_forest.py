"""Random forests as plain arrays: fitted with scikit-learn, predicted and stored with numpy.

A model file holds no pickle, and a cold ``suggest`` should not import scikit-learn; so a
fitted forest is flattened into node arrays (split feature, threshold, children, leaf
value), all trees concatenated, and predicted by walking every row down every tree in
vectorised steps, one per level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Forest:
    """Trees as node arrays; ``value`` is the leaf's mean target (P(class 1) for a classifier)."""

    feature: np.ndarray  # (nodes,) int32, -1 at a leaf
    threshold: np.ndarray  # (nodes,) float64: go left when x[feature] <= threshold
    left: np.ndarray  # (nodes,) int32, absolute index of the left child
    right: np.ndarray  # (nodes,) int32
    value: np.ndarray  # (nodes,) float64
    roots: np.ndarray  # (trees,) int32: each tree's root node

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, *, classify: bool, seed: int, trees: int = 50,
            min_samples_leaf: int = 2, prior: float | None = None, prior_weight: float = 0.1,
            max_features: float | str = "sqrt") -> "Forest":
        """A random forest (scikit-learn) of ``y`` on ``x``: a classifier of 0/1 labels or a regressor.

        ``prior`` (classifier): each leaf's P(1) is smoothed with ``prior_weight`` pseudo-runs of
        this probability, ``(ones + w * prior) / (runs + w)``, so no leaf says "certain" (which
        would tie every method sure to fail); None: the leaf's plain fraction (scikit-learn's
        ``predict_proba``)."""
        return cls._fit(x, y, classify=classify, seed=seed, trees=trees, min_samples_leaf=min_samples_leaf, prior=prior,
                        prior_weight=prior_weight, oob=False, max_features=max_features)[0]

    @classmethod
    def fit_oob(cls, x: np.ndarray, y: np.ndarray, *, seed: int, trees: int = 100, min_samples_leaf: int = 2,
                prior: float | None = None, prior_weight: float = 0.1, classify: bool = True,
                max_features: float | str = "sqrt") -> tuple["Forest", np.ndarray]:
        """A forest as :meth:`fit` and each training row's out-of-bag prediction — P(1) of a
        classifier, the mean of a regressor — (NaN: the row was in every tree's bag)."""
        return cls._fit(x, y, classify=classify, seed=seed, trees=trees, min_samples_leaf=min_samples_leaf, prior=prior,
                        prior_weight=prior_weight, oob=True, max_features=max_features)

    @classmethod
    def _fit(cls, x, y, *, classify, seed, trees, min_samples_leaf, prior, prior_weight, oob, max_features):
        import warnings

        from metasel.errors import require

        require("sklearn", feature="fitting a metasel surrogate", extra="surrogate")
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        kind = RandomForestClassifier if classify else RandomForestRegressor
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "some inputs do not have OOB scores": NaN below
            model = kind(n_estimators=trees, min_samples_leaf=min_samples_leaf, max_features=max_features, random_state=seed,
                         n_jobs=1, oob_score=oob).fit(np.asarray(x, np.float64), np.asarray(y, int if classify else np.float64))
        oob_p = None
        if oob and not classify:
            oob_p = np.asarray(model.oob_prediction_, float).reshape(len(x))
        elif oob:
            dec = np.asarray(model.oob_decision_function_, float)
            oob_p = dec[:, list(model.classes_).index(1)] if 1 in model.classes_ else np.zeros(len(x))
        parts, offset = [], 0
        for est in model.estimators_:
            t = est.tree_
            if classify:
                counts = t.value[:, 0, :]  # per-class fractions (or counts) at each node
                ones = counts[:, list(model.classes_).index(1)] if 1 in model.classes_ else np.zeros(t.node_count)
                value = ones / np.maximum(counts.sum(axis=1), 1e-12)
                if prior is not None:
                    runs = t.weighted_n_node_samples  # bootstrap counts
                    value = (value * runs + prior_weight * prior) / (runs + prior_weight)
            else:
                value = t.value[:, 0, 0]
            leaf = t.children_left < 0
            parts.append((np.where(leaf, -1, t.feature), t.threshold, np.where(leaf, -1, t.children_left + offset),
                          np.where(leaf, -1, t.children_right + offset), value, offset))
            offset += t.node_count
        cat = lambda i, dt: np.concatenate([p[i] for p in parts]).astype(dt)  # noqa: E731
        return cls(cat(0, np.int32), cat(1, np.float64), cat(2, np.int32), cat(3, np.int32), cat(4, np.float64),
                   np.array([p[5] for p in parts], np.int32)), oob_p

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(rows,) mean over trees of each row's leaf value."""
        x = np.asarray(x, np.float64)
        n = len(x)
        node = np.repeat(self.roots[None, :], n, axis=0)  # (rows, trees)
        rows = np.arange(n)[:, None]
        for _ in range(len(self.feature) + 1):  # a tree is at most as deep as it has nodes
            feat = self.feature[node]
            inner = feat >= 0
            if not inner.any():
                break
            go_left = x[rows, np.where(inner, feat, 0)] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        return self.value[node].mean(axis=1)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.{k}": getattr(self, k) for k in ("feature", "threshold", "left", "right", "value", "roots")}

    @classmethod
    def from_arrays(cls, arrays: dict, prefix: str) -> "Forest":
        get = lambda k, dt: np.asarray(arrays[f"{prefix}.{k}"], dt)  # noqa: E731
        forest = cls(get("feature", np.int32), get("threshold", np.float64), get("left", np.int32), get("right", np.int32),
                     get("value", np.float64), get("roots", np.int32))
        n = len(forest.feature)
        if not (len(forest.threshold) == len(forest.left) == len(forest.right) == len(forest.value) == n) or \
                (n and (forest.roots.min() < 0 or forest.roots.max() >= n)) or \
                ((forest.feature >= 0) & ((forest.left < 0) | (forest.left >= n) | (forest.right < 0) | (forest.right >= n))).any():
            raise ValueError(f"forest {prefix}: inconsistent node arrays")
        return forest


TREE_MEAN_MIN = 10  # observed cells of a method, for a forest of its mean (fewer: its mean value)


@dataclass(frozen=True)
class TreeMean:
    """The prior mean of every cell from trees: a regression forest per training method over
    the context inputs (a method with fewer than ``TREE_MEAN_MIN`` observed cells: the mean of
    its values). The Bayesian model then learns the residual. A method the forests never saw
    gets the mean of the known methods' offsets in its context, so its tower and latent say
    how it differs from the rest there."""

    forests: dict  # training-method column -> Forest
    const: np.ndarray  # (methods,) each method's mean target, its offset where it has no forest

    @classmethod
    def fit(cls, xc: np.ndarray, y: np.ndarray, mask: np.ndarray, *, seed: int, trees: int = 100,
            min_samples_leaf: int = 3, max_features: float = 0.5) -> tuple["TreeMean", np.ndarray]:
        """Forests of ``y[:, j]`` on ``xc`` over each method's observed rows, and the (C, M)
        offsets of the training cells: a cell's out-of-bag prediction, so the residual the
        model learns is the one it meets on new contexts (its forest's full prediction where
        no tree left it out, and for cells with no observation)."""
        C, M = y.shape
        const = np.array([y[mask[:, j] > 0, j].mean() if mask[:, j].any() else 0.0 for j in range(M)])
        offsets = np.tile(const, (C, 1))
        forests = {}
        for j in range(M):
            rows = np.flatnonzero(mask[:, j] > 0)
            if len(rows) < TREE_MEAN_MIN or not xc.shape[1]:
                continue
            forest, oob = Forest.fit_oob(xc[rows], y[rows, j], seed=seed + j, trees=trees, classify=False,
                                         min_samples_leaf=min_samples_leaf, max_features=max_features)
            forests[j] = forest
            offsets[:, j] = forest.predict(xc)
            ok = np.isfinite(oob)
            offsets[rows[ok], j] = oob[ok]
        return cls(forests, const), offsets

    def offsets(self, xc: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(contexts, len(cols)) offsets; ``cols`` are training-method columns, -1 for a method
        not among them."""
        cols = np.asarray(cols, int)
        unseen = bool((cols < 0).any())
        need = range(len(self.const)) if unseen else sorted({int(j) for j in cols})  # unseen: the mean of all
        by = {j: self.forests[j].predict(xc) if j in self.forests else np.full(len(xc), self.const[j]) for j in need}
        if unseen:
            by[-1] = np.mean(list(by.values()), axis=0)
        return np.stack([by[int(j)] for j in cols], axis=1) if len(cols) else np.zeros((len(xc), 0))

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}.const": np.asarray(self.const, np.float64)}
        for j, forest in self.forests.items():
            out.update(forest.arrays(f"{prefix}.forest{j}"))
        return out

    @classmethod
    def from_arrays(cls, arrays: dict, prefix: str, columns: list) -> "TreeMean":
        return cls({int(j): Forest.from_arrays(arrays, f"{prefix}.forest{int(j)}") for j in columns},
                   np.asarray(arrays[f"{prefix}.const"], np.float64))
