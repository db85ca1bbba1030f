"""The compiled, vectorised training core: one compile per bucket, items independent of their
batch and of their padding, and the Woodbury likelihood equal to the dense Gaussian density."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metasel.surrogate import BayesianSurrogate, TrainConfig
from metasel.surrogate import _train
from metasel.testing.synthetic import low_rank_table


def _input(seed: int, C: int = 20, M: int = 5, dc: int = 3, dm: int = 2, P: int = 2) -> _train.FitInput:
    rng = np.random.default_rng(seed)
    mask = (rng.random((C, M)) < 0.7).astype(np.float32)
    return _train.FitInput.of(rng.normal(size=(C, dc)), rng.normal(size=(M, dm)), rng.normal(size=(C, M)) * mask,
                              mask, xp=rng.normal(size=(C, M, P)), seed=seed)


@pytest.fixture
def compiles():
    """The number of XLA backend compilations since the fixture started (a list of durations)."""
    import jax
    from jax._src import monitoring

    events: list[float] = []

    def listener(name, duration, **_):
        if name == "/jax/core/compile/backend_compile_duration":
            events.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield events
    monitoring.unregister_event_duration_listener(listener)


def test_bucket_ladder():
    assert [_train.bucket(n) for n in (1, 2, 3, 4, 5, 6, 7, 9, 13, 17, 25, 33, 100)] == \
        [1, 2, 3, 4, 6, 6, 8, 12, 16, 24, 32, 48, 128]
    assert _train.bucket(3, floor=8) == 8
    assert all(_train.bucket(n) >= n and _train.bucket(n) <= 1.5 * n + 1 for n in range(1, 500))


def test_fitting_twice_on_other_data_of_one_bucket_compiles_once(compiles):
    """Data are arguments of the compiled program: a second fit whose shapes fall in the same
    bucket (other tasks, other values, other seed) compiles nothing."""
    cfg = TrainConfig(steps=7, members=1, hidden=12)  # a configuration no other test compiles
    first, _ = low_rank_table(num_tasks=40, num_methods=6, num_hardware=2, seed=0)  # 80 contexts -> bucket 96
    second, _ = low_rank_table(num_tasks=44, num_methods=6, num_hardware=2, seed=5)  # 88 contexts -> bucket 96
    BayesianSurrogate("value", config=cfg, embed="none").fit(first, key=0, calibrate=False)
    assert len(compiles) >= 1
    before = len(compiles)
    model = BayesianSurrogate("value", config=cfg, embed="none").fit(second, key=3, calibrate=False)
    assert len(compiles) == before, "a fit of the same bucket compiled a new program"
    assert model.info()["num_contexts"] == 88


def test_an_item_does_not_depend_on_its_batch():
    """Fitting an input alone or among others gives the same parameters (nothing is shared)."""
    cfg = TrainConfig(steps=40, hidden=8)
    a, b, c = _input(1), _input(2, C=17), _input(3, C=23)
    alone = _train.fit_batch([a], cfg)[0]
    together = _train.fit_batch([b, a, c], cfg)[1]
    np.testing.assert_allclose(together["emb"], alone["emb"], atol=2e-5)
    np.testing.assert_allclose(together["losses"], alone["losses"], rtol=1e-5)
    np.testing.assert_allclose(together["beta"], alone["beta"], atol=2e-5)
    other = _train.fit_batch([b], cfg)[0]
    assert not np.allclose(other["emb"], alone["emb"], atol=1e-3)


def test_padding_does_not_change_the_fit():
    """The same input fitted in its own bucket and in a much larger one: same parameters."""
    cfg = TrainConfig(steps=40, hidden=8)
    item = _input(4, C=10, M=3, dc=2, dm=1, P=1)
    own = _train._run_bucket([item], (16, 3, 2, 1, 1), cfg)[0]
    big = _train._run_bucket([item], (48, 8, 6, 4, 4), cfg)[0]
    for key in ("emb", "beta", "tau"):
        np.testing.assert_allclose(big[key], own[key], atol=2e-5)
    for (w1, b1), (w2, b2) in zip(big["ctx_layers"], own["ctx_layers"]):
        np.testing.assert_allclose(w1, w2, atol=2e-5)
        np.testing.assert_allclose(b1, b2, atol=2e-5)
    # the padded priors add a constant to the loss, never a gradient
    np.testing.assert_allclose(np.diff(big["losses"]), np.diff(own["losses"]), atol=2e-3)


def test_woodbury_likelihood_is_the_dense_gaussian_density():
    """The marginal likelihood of each context's observed cells, computed from sufficient
    statistics through the Woodbury identity, equals the multivariate normal density of
    y ~ N(mu, U U^T + noise^2 I) over them — also where two cells measure one representative
    (method 1 is a repeat of method 0 in even contexts)."""
    import jax.numpy as jnp
    from scipy.stats import multivariate_normal

    cfg = TrainConfig(hidden=6, pair_slopes=True)
    base = _input(7, C=4, M=5, dc=2, dm=2, P=2)
    rep = np.tile(np.arange(5), (4, 1))
    rep[::2, 1] = 0
    mask = base.mask.copy()
    mask[::2, :2] = 1.0
    item = _train.FitInput.of(base.xc, base.xm, base.y + 0.5 * mask, mask, xp=np.take_along_axis(base.xp, rep[:, :, None], axis=1),
                              rep=rep, seed=7)
    layers = _train._init(item, cfg)
    sizes = _train._tower_sizes(2, 2, cfg)
    params = {k: jnp.asarray(v) for k, v in layers.items() if k not in ("ctx", "mth")}
    params.update(ctx=_train._to_state(layers["ctx"], sizes[0]), mth=_train._to_state(layers["mth"], sizes[1]))
    params["emb"] = params["emb"] * 5
    params["beta"] = jnp.asarray([0.3, -0.2])
    towers = _train._tower_fns(sizes)  # the nnx towers training runs

    def data_of(x):
        return {"xc": jnp.asarray(x.xc), "xm": jnp.asarray(x.xm), "xp": jnp.asarray(x.xp),
                **{k: jnp.asarray(v) for k, v in _train.sufficient_stats(x).items()}}

    empty = _train.FitInput.of(item.xc, item.xm, item.y, np.zeros_like(item.mask), xp=item.xp, rep=rep, seed=7)
    ours = float(_train._log_joint(params, data_of(item), cfg, towers) - _train._log_joint(params, data_of(empty), cfg, towers))

    def mlp(x, layers):
        h = np.asarray(x, float)
        for i, (w, b) in enumerate(layers):
            h = h @ np.asarray(w, float) + np.asarray(b, float)
            h = h / (1 + np.exp(-h)) if i < len(layers) - 1 else h
        return h

    hc, hm = mlp(item.xc, layers["ctx"]), mlp(item.xm, layers["mth"]) + np.asarray(params["emb"], float)
    k = cfg.k
    noise, s_bias = math.exp(params["log_noise"]), math.exp(params["log_s_bias"])
    tau, beta = np.exp(np.asarray(params["log_tau"], float)), np.asarray(params["beta"], float)
    expected = 0.0
    for c in range(4):
        obs = np.flatnonzero(item.mask[c])
        r = rep[c]
        mu = (hc[c, 0] + hm[:, 0] + hm[:, 1:1 + k] @ hc[c, 1:1 + k])[r] + item.xp[c] @ beta
        psi = np.concatenate([np.ones((5, 1)), hm[:, 1 + k:]], axis=1)[r]
        prior = np.diag(np.concatenate([[s_bias ** 2], np.ones(cfg.rank)]))
        cov = psi @ prior @ psi.T + (item.xp[c] * tau) @ (item.xp[c] * tau).T + noise ** 2 * np.eye(5)
        expected += multivariate_normal(mu[obs], cov[np.ix_(obs, obs)]).logpdf(item.y[c, obs])
    assert item.mask[::2, :2].all(), "the test should have repeats observed"
    assert ours == pytest.approx(expected, rel=1e-4, abs=1e-3)


def test_a_batched_fit_of_many_tables_is_each_tables_own_fit():
    """fit_many over tables is the per-table fit: same predictions as fitting each alone."""
    cfg = TrainConfig(steps=60, hidden=8, members=2)
    tables = [low_rank_table(num_tasks=30, num_methods=5, num_hardware=1, seed=s)[0] for s in (0, 1)]
    template = BayesianSurrogate("value", config=cfg, embed="none")
    batched = template.fit_many(tables, keys=[4, 5])
    for table, key, model in zip(tables, (4, 5), batched):
        alone = template.fit(table, key=key)
        cells = table.observations[["task_id", "method", "hardware_id"]].head(20)
        np.testing.assert_allclose(model.predict(cells).mean, alone.predict(cells).mean, atol=1e-4)
        assert model.info()["calib_zero"] == pytest.approx(alone.info()["calib_zero"], abs=1e-3)


@pytest.mark.parametrize("size", [1, 4, 6, 9])
def test_solve_spd_is_the_cholesky_solution(size):
    """Written-out (R <= 6) and LAPACK (R > 6) factors give v^T A^-1 v and log sqrt(det A)."""
    rng = np.random.default_rng(size)
    x = rng.normal(size=(3, size, size))
    a = x @ x.transpose(0, 2, 1) + np.eye(size)
    v = rng.normal(size=(3, size))
    quad, half_logdet = _train._solve_spd(a.astype(np.float32), v.astype(np.float32))
    np.testing.assert_allclose(quad, [vi @ np.linalg.solve(ai, vi) for ai, vi in zip(a, v)], rtol=1e-4)
    np.testing.assert_allclose(half_logdet, 0.5 * np.linalg.slogdet(a)[1], rtol=1e-4, atol=1e-5)


def test_the_nnx_tower_is_the_numpy_predictors_function():
    """Training runs the Flax nnx tower; prediction runs numpy on the layers read back from its
    state: both compute the same function of the same weights."""
    from flax import nnx

    from metasel.surrogate import _numpy

    rng = np.random.default_rng(0)
    layers = [(rng.normal(size=(3, 8)), rng.normal(size=8)), (rng.normal(size=(8, 8)), rng.normal(size=8)),
              (rng.normal(size=(8, 2)), rng.normal(size=2))]
    layers = [(w.astype(np.float32), b.astype(np.float32)) for w, b in layers]
    state = _train._to_state(layers, (3, 8, 2))
    x = rng.normal(size=(5, 3)).astype(np.float32)
    out = np.asarray(nnx.merge(_train._tower(3, 8, 2)[0], state)(x))
    np.testing.assert_allclose(out, _numpy.mlp(x.astype(float), [(w.astype(float), b.astype(float)) for w, b in layers]),
                               rtol=1e-4, atol=1e-4)
    for (w, b), (w2, b2) in zip(_train._from_state(state), layers):
        np.testing.assert_array_equal(w, w2)
        np.testing.assert_array_equal(b, b2)
