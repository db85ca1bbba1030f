"""Algorithm-selection baselines behind one interface.

Every baseline is fitted on a training :class:`Problem` and scores the methods of test
contexts (higher = better, in oriented log units). The selection is the best-scored
method among a context's candidates; the score order is also the baseline's order of
benchmarking in anytime evaluations. scikit-learn provides forests, boosting, k-means
and neighbours.
"""

from __future__ import annotations

import math

import numpy as np

from metasel.evaluation.problem import Problem
from metasel.evaluation.strategies import score_order
from metasel.select.choice import failure_values


class Baseline:
    """A :class:`~metasel.evaluation.strategies.Strategy` that benchmarks in the order of its scores."""

    name = "baseline"
    zero_shot = True

    def fit(self, train: Problem, *, seed: int = 0) -> "Baseline":
        raise NotImplementedError

    def scores(self, test: Problem) -> np.ndarray:
        raise NotImplementedError

    def order(self, test: Problem, i: int, *, scores: np.ndarray, candidates: np.ndarray, rng, backend) -> list[int]:
        return score_order(scores[i], candidates)

    def posterior(self, test: Problem):
        return None


def _method_means(norm: np.ndarray) -> np.ndarray:
    import warnings

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a method never observed here: -inf below
        means = np.nanmean(norm, axis=0)
    return np.where(np.isnan(means), -np.inf, means)


class RandomChoice(Baseline):
    name = "random"

    def fit(self, train, *, seed=0):
        self.rng = np.random.default_rng(seed)
        self.methods = train.methods
        return self

    def scores(self, test):
        return self.rng.random((len(test.contexts), len(test.methods)))

    def order(self, test, i, *, scores, candidates, rng, backend):
        """A permutation from the harness's per-context generator (the same however folds are split)."""
        return [int(j) for j in rng.permutation(candidates)]


class SingleBest(Baseline):
    """The method with the best mean normalised score over the training contexts."""

    name = "single_best"

    def fit(self, train, *, seed=0):
        self.means = dict(zip(train.methods, _method_means(train.normalised())))
        return self

    def scores(self, test):
        row = np.array([self.means.get(m, -np.inf) for m in test.methods])
        return np.tile(row, (len(test.contexts), 1))


class KNearest(Baseline):
    """The k nearest training contexts in feature space; their mean normalised scores."""

    name = "knn"

    def __init__(self, k: int = 5):
        self.k = k

    def fit(self, train, *, seed=0):
        from sklearn.neighbors import NearestNeighbors

        self.train = train
        self.norm = train.normalised()
        self.nn = NearestNeighbors(n_neighbors=min(self.k, len(train.contexts))).fit(train.x)
        return self

    def scores(self, test):
        _, idx = self.nn.kneighbors(test.x)
        out = np.full((len(test.contexts), len(test.methods)), -np.inf)
        col = {m: j for j, m in enumerate(self.train.methods)}
        for i, nb in enumerate(idx):
            means = _method_means(self.norm[nb])
            for j, m in enumerate(test.methods):
                if m in col:
                    out[i, j] = means[col[m]]
        return out


class Sunny(Baseline):
    """SUNNY-style (Amadini, Gabbrielli, Mauro 2014): the k nearest training contexts in feature
    space (k = sqrt of their number by default); the method that succeeds on most of them,
    ties broken by the lowest total cost over them (runtimes with failures at their penalty;
    for a maximised metric the highest mean normalised score)."""

    name = "sunny"

    def __init__(self, k: int | None = None):
        self.k = k

    def fit(self, train, *, seed=0):
        from sklearn.neighbors import NearestNeighbors

        n = len(train.contexts)
        k = self.k or max(1, int(round(math.sqrt(n))))
        self.methods = train.methods
        self.solved = ~np.isnan(train.score)  # (C, M): ran within the limits
        filled = train.filled()
        minimise = train.direction == "min"
        # cost per (context, method), lower = better: a runtime (failures at the penalty), or minus a normalised score
        self.cost = np.exp(-filled) if minimise else -train.normalised()
        self.cost = np.where(np.isnan(self.cost), np.inf, self.cost)
        self.nn = NearestNeighbors(n_neighbors=min(k, n)).fit(train.x)
        return self

    def scores(self, test):
        _, idx = self.nn.kneighbors(test.x)
        col = {m: j for j, m in enumerate(self.methods)}
        cols = np.array([col.get(m, -1) for m in test.methods])
        out = np.full((len(test.contexts), len(test.methods)), -np.inf)
        known = cols >= 0
        for i, nb in enumerate(idx):
            solved = self.solved[nb][:, cols[known]].sum(axis=0).astype(float)
            total = self.cost[nb][:, cols[known]].sum(axis=0)
            tie = total.argsort(kind="stable").argsort()  # 0 = cheapest
            out[i, known] = solved + 0.5 * (1.0 - tie / max(len(tie), 1))
        return out


class SurvivalForest(Baseline):
    """Run2Survive-style (Tornede et al. 2020): one random survival forest (50 trees) per method
    (scikit-survival) on the training contexts' runs, a failure being a run censored at the
    longest successful run; the pick minimises the expected penalised cost
    ``sum_t t * P(finish at t) + P(not finished) * penalty`` (expected PAR10 for ASlib).

    A run's time is its value for a minimised metric and ``1 / value`` for a maximised one
    (seconds per unit of work); the penalty is the recorded one, else 10 x the censoring time.
    Event times are put on a grid of at most ``grid`` quantiles (the forests' memory grows with
    the number of distinct times)."""

    name = "survival_forest"

    def __init__(self, trees: int = 50, min_samples_leaf: int = 3, grid: int = 64, bootstrap: bool = True):
        self.trees, self.min_samples_leaf, self.grid, self.bootstrap = trees, min_samples_leaf, grid, bootstrap

    def fit(self, train, *, seed=0):
        from metasel.errors import require

        require("sksurv", feature="the survival_forest baseline", extra="eval")
        from sksurv.ensemble import RandomSurvivalForest
        from sksurv.util import Surv

        time = np.exp(-train.score)  # NaN where the run failed or was not made
        ok = np.isfinite(time)
        self.methods = train.methods
        self.censor = float(np.nanmax(time)) if ok.any() else 1.0
        # the recorded penalty on the time scale (per method, else over all), else 10 x the censoring time
        pen = failure_values(train.penalty, "min")
        self.penalty = np.where(np.isfinite(pen), pen, 10.0 * self.censor)
        grid = np.unique(time[ok]) if ok.any() else np.array([1.0])
        if len(grid) > self.grid:  # a time maps to the first grid point at or above it
            grid = np.unique(np.quantile(time[ok], np.linspace(0.0, 1.0, self.grid)))
        self.models: dict[int, object] = {}
        self.constant: dict[int, float] = {}
        for j in range(len(self.methods)):
            rows = np.flatnonzero(ok[:, j] | train.failed[:, j])
            event = ok[rows, j]
            if event.sum() < 2 or len(rows) < 4:
                # too few finished runs for a forest: the method's mean cost
                t = np.where(event, time[rows, j], self.penalty[j])
                self.constant[j] = float(t.mean()) if len(t) else float(self.penalty[j])
                continue
            t = np.where(event, grid[np.minimum(np.searchsorted(grid, time[rows, j]), len(grid) - 1)], self.censor)
            forest = RandomSurvivalForest(n_estimators=self.trees, min_samples_leaf=self.min_samples_leaf,
                                          max_features="sqrt", bootstrap=self.bootstrap, random_state=seed, n_jobs=1)
            self.models[j] = forest.fit(train.x[rows], Surv.from_arrays(event, t))
        return self

    def expected_cost(self, x: np.ndarray) -> np.ndarray:
        """(contexts, training methods) expected penalised cost."""
        out = np.empty((len(x), len(self.methods)))
        for j in range(len(self.methods)):
            if j in self.constant:
                out[:, j] = self.constant[j]
                continue
            forest = self.models[j]
            surv = forest.predict_survival_function(x, return_array=True)  # (n, times)
            times = forest.unique_times_
            before = np.concatenate([np.ones((len(x), 1)), surv[:, :-1]], axis=1)
            finish = np.clip(before - surv, 0.0, None)
            out[:, j] = (finish * times).sum(axis=1) + surv[:, -1] * self.penalty[j]
        return out

    def scores(self, test):
        cost = self.expected_cost(test.x)
        col = {m: j for j, m in enumerate(self.methods)}
        out = np.full((len(test.contexts), len(test.methods)), -np.inf)
        for k, m in enumerate(test.methods):
            if m in col:
                out[:, k] = -np.log(np.maximum(cost[:, col[m]], 1e-300))
        return out


class ISAC(Baseline):
    """Instance-specific algorithm configuration: k-means on features, per-cluster best."""

    name = "isac"

    def __init__(self, clusters: int | None = None):
        self.clusters = clusters

    def fit(self, train, *, seed=0):
        from sklearn.cluster import KMeans

        k = self.clusters or max(2, min(10, int(np.sqrt(len(train.contexts) / 2))))
        k = min(k, len(train.contexts))
        self.km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(train.x)
        norm = train.normalised()
        glob = _method_means(norm)
        self.methods = train.methods
        self.table = np.stack([_method_means(norm[self.km.labels_ == c]) if (self.km.labels_ == c).any() else glob
                               for c in range(k)])
        return self

    def scores(self, test):
        lab = self.km.predict(test.x)
        col = {m: j for j, m in enumerate(self.methods)}
        return np.array([[self.table[c][col[m]] if m in col else -np.inf for m in test.methods] for c in lab])


class PerMethodRegression(Baseline):
    """SATzilla-style: one regressor per method, features → normalised score."""

    def __init__(self, kind: str = "rf"):
        self.kind = kind
        self.name = f"regression_{kind}"

    def _model(self, seed):
        from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

        if self.kind == "rf":
            return RandomForestRegressor(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1)
        return GradientBoostingRegressor(n_estimators=150, max_depth=3, learning_rate=0.05, random_state=seed)

    def fit(self, train, *, seed=0):
        norm = train.normalised()
        self.models = {}
        for j, m in enumerate(train.methods):
            ok = ~np.isnan(norm[:, j])
            if ok.sum() >= 2:
                self.models[m] = self._model(seed).fit(train.x[ok], norm[ok, j])
            elif ok.sum() == 1:
                self.models[m] = float(norm[ok, j][0])
        return self

    def scores(self, test):
        out = np.full((len(test.contexts), len(test.methods)), -np.inf)
        for j, m in enumerate(test.methods):
            mod = self.models.get(m)
            if mod is None:
                continue
            out[:, j] = mod if isinstance(mod, float) else mod.predict(test.x)
        return out


class PairwiseClassification(Baseline):
    """AutoFolio-style: a classifier per method pair (weighted by the performance gap), votes."""

    name = "pairwise"

    def fit(self, train, *, seed=0):
        from sklearn.ensemble import RandomForestClassifier

        s = train.filled()
        self.methods = train.methods
        self.pairs = {}
        for a in range(len(self.methods)):
            for b in range(a + 1, len(self.methods)):
                ok = ~np.isnan(s[:, a]) & ~np.isnan(s[:, b])
                if ok.sum() < 2:
                    continue
                y = (s[ok, a] > s[ok, b]).astype(int)
                w = np.abs(s[ok, a] - s[ok, b]) + 1e-6
                if y.min() == y.max():
                    self.pairs[(a, b)] = float(y[0])
                else:
                    clf = RandomForestClassifier(n_estimators=30, min_samples_leaf=2, random_state=seed, n_jobs=1)
                    self.pairs[(a, b)] = clf.fit(train.x[ok], y, sample_weight=w)
        return self

    def scores(self, test):
        votes = np.zeros((len(test.contexts), len(self.methods)))
        for (a, b), clf in self.pairs.items():
            p = np.full(len(test.contexts), clf) if isinstance(clf, float) else clf.predict_proba(test.x)[:, 1]
            votes[:, a] += p
            votes[:, b] += 1 - p
        col = {m: j for j, m in enumerate(self.methods)}
        return np.array([[votes[i, col[m]] if m in col else -np.inf for m in test.methods] for i in range(len(votes))])


def _als(r: np.ndarray, rank: int, *, reg: float = 0.1, iters: int = 30, seed: int = 0):
    """Alternating least squares on the observed entries of r (NaN = missing)."""
    rng = np.random.default_rng(seed)
    c, m = r.shape
    u, v = rng.normal(scale=0.1, size=(c, rank)), rng.normal(scale=0.1, size=(m, rank))
    mask = ~np.isnan(r)
    rz = np.where(mask, r, 0.0)
    eye = reg * np.eye(rank)
    for _ in range(iters):
        for i in range(c):
            vi = v[mask[i]]
            u[i] = np.linalg.solve(vi.T @ vi + eye, vi.T @ rz[i, mask[i]])
        for j in range(m):
            uj = u[mask[:, j]]
            v[j] = np.linalg.solve(uj.T @ uj + eye, uj.T @ rz[mask[:, j], j])
    return u, v


class ALORS(Baseline):
    """Matrix factorisation of the training scores plus a features → latent regression (cold start)."""

    name = "alors"

    def __init__(self, rank: int = 3, dcg: bool = False):
        self.rank, self.dcg = rank, dcg
        if dcg:
            self.name = "metaod"

    def _target(self, train):
        norm = train.normalised()
        if not self.dcg:
            return norm
        # MetaOD-style: factorise a rank-based, DCG-like relevance instead of raw scores
        out = np.full_like(norm, np.nan)
        for i, row in enumerate(norm):
            ok = ~np.isnan(row)
            order = (-row[ok]).argsort().argsort()  # 0 = best
            out[i, ok] = 1.0 / np.log2(order + 2.0)
        return out

    def fit(self, train, *, seed=0):
        from sklearn.ensemble import RandomForestRegressor

        r = self._target(train)
        rank = min(self.rank, len(train.methods))
        self.u, self.v = _als(r, rank, seed=seed)
        self.methods = train.methods
        self.reg = RandomForestRegressor(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1).fit(train.x, self.u)
        return self

    def scores(self, test):
        u = self.reg.predict(test.x).reshape(len(test.contexts), -1)
        s = u @ self.v.T
        col = {m: j for j, m in enumerate(self.methods)}
        return np.array([[s[i, col[m]] if m in col else -np.inf for m in test.methods] for i in range(len(s))])


class MetaInfStyle(Baseline):
    """MetaInf-style: embeddings of task, hardware and method descriptions → one regressor of
    performance (GBM over (context, method) rows); best predicted method."""

    name = "metainf"

    def fit(self, train, *, seed=0):
        from sklearn.ensemble import GradientBoostingRegressor

        text = train.text if train.text is not None else train.x
        mtext = train.method_text if train.method_text is not None else train.method_x
        norm = train.normalised()
        rows, ys = [], []
        for i in range(len(train.contexts)):
            for j in range(len(train.methods)):
                if not np.isnan(norm[i, j]):
                    rows.append(np.concatenate([text[i], mtext[j]]))
                    ys.append(norm[i, j])
        self.methods = train.methods
        self.mtext = dict(zip(train.methods, mtext))
        self.reg = GradientBoostingRegressor(n_estimators=200, max_depth=3, learning_rate=0.05, random_state=seed)
        self.reg.fit(np.asarray(rows), np.asarray(ys))
        return self

    def scores(self, test):
        text = test.text if test.text is not None else test.x
        out = np.full((len(test.contexts), len(test.methods)), -np.inf)
        for j, m in enumerate(test.methods):
            mt = self.mtext.get(m)
            if mt is None:
                mt = (test.method_text if test.method_text is not None else test.method_x)[j]
            out[:, j] = self.reg.predict(np.concatenate([text, np.tile(mt, (len(text), 1))], axis=1))
        return out


class ElectStyle(Baseline):
    """ELECT-style order only: benchmark in the order of the single most similar training context
    (kNN with k = 1); it makes no zero-shot pick of its own."""

    name = "elect"
    zero_shot = False

    def fit(self, train, *, seed=0):
        self.knn = KNearest(k=1).fit(train, seed=seed)
        return self

    def scores(self, test):
        return self.knn.scores(test)


def all_baselines() -> list[Baseline]:
    return [RandomChoice(), SingleBest(), ISAC(), ALORS(), ALORS(dcg=True), KNearest(), Sunny(),
            PerMethodRegression("rf"), PerMethodRegression("gbm"), PairwiseClassification(), SurvivalForest(),
            MetaInfStyle()]


def named_baselines(spec: str, *, option: str = "--baselines") -> list[Baseline]:
    """The baselines a spec names: ``all``, ``none`` or a comma-separated list of names."""
    from metasel.errors import InputDataError

    known = {b.name: b for b in all_baselines()}
    if spec == "all":
        return list(known.values())
    if spec == "none":
        return []
    names = [n.strip() for n in spec.split(",") if n.strip()]
    bad = [n for n in names if n not in known]
    if bad:
        raise InputDataError(f"{option}: unknown {bad[0]!r}; known: {sorted(known)}")
    return [known[n] for n in names]
