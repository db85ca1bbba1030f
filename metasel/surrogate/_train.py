"""Training: one compiled, vectorised MAP fit of the model below (Flax nnx towers, NumPyro priors, optax Adam).

The model, in standardised log-metric units, for context c = (task, hardware) and method m::

    y[c, m] = a(x_c) + c(x_m) + f(x_c) . g(x_m) + (beta + u_c) . z(c, m) + w_c . psi_m + eps
    psi_m   = [1, phi(x_m)],   w_c ~ N(0, diag(s_bias^2, 1, ..., 1)),   eps ~ N(0, noise_c^2)
    u_c     ~ N(0, diag(tau^2))   (``pair_slopes``: each context's own pair-term effects)
    noise_c = noise * exp(r(x_c))   (with ``hetero_noise``; r clipped to [-3, 3])

a, f come from the context tower, c, g, phi from the method tower plus a free embedding
per training method (prior N(0, emb_scale^2)); r, the context's log noise multiplier, is
one more output of the context tower, so a context whose measurements are noisier (a
GPU timing launch-bound toy models, say) pulls the shared towers less. z(c, m) are the pair terms of
``metasel.domain.pairs.pair_terms`` (what a method's techniques should do for a
workload on a hardware: batching gain, weight bytes saved, ...), with weights
beta ~ N(0, pair_prior^2). u_c are random slopes: how much batching (or int8, or
speculative decoding) helps varies from context to context around beta, and it varies
alike for every method that uses the technique. So two methods with the same pair terms
in a context (int8 with and without static batching, at batch size 1) are strongly
correlated there, while a method with other techniques stays uncertain: measuring one
tells the active loop about its twins. The latents w_c and u_c are integrated
out exactly: each context's observed values are jointly Gaussian, and the likelihood is
their multivariate normal density. noise, s_bias and tau get log-normal priors; towers get a
Gaussian weight prior. The fit is the posterior mode of all of these (type-II maximum
likelihood for the variances, since the latents are integrated out), found by Adam.

Fitting is compiled once per *shape bucket*: a fit's arrays are padded (contexts, methods,
feature widths and pair terms rounded up a ladder of sizes; padded cells are masked, padded
inputs are zero, and their weights start at zero and get no gradient, so padding does not
change the optimum) and passed to the compiled program as arguments. Independent fits — the
members of an ensemble, the calibration fit, the folds of an evaluation — differ in data,
masks and seeds, not shapes, so :func:`fit_batch` stacks them and runs one ``jax.vmap`` of
the whole training loop (a ``jax.lax.scan`` over steps) for each bucket. Nothing is shared
between the items of a batch but the compiled program: each item's result is the same as
fitting it alone. Each context's marginal likelihood is computed from sufficient statistics
with the Woodbury identity (the covariance is diagonal noise plus a rank ``1 + rank + pairs``
term whose loadings are shared by every context): per step, one matrix product over all
contexts and one small Cholesky factor per context, whatever the number of methods.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class TrainConfig:
    hidden: int = 32
    k: int = 3  # width of the f . g interaction
    rank: int = 3  # loadings phi (per-context latent dimension is rank + 1)
    steps: int = 1500
    lr: float = 1e-2
    weight_prior: float = 0.3  # std of the Gaussian prior on tower weights
    emb_scale: float = 0.5
    noise_prior: float = 0.1
    bias_prior: float = 0.5
    pair_prior: float = 1.0  # std of the prior on the pair-term weights
    pair_terms: bool = True  # use the pair terms (off for tables whose methods are frameworks: see docs/results.md)
    pair_slopes: bool = True  # per-context random slopes on the pair terms (correlates methods sharing a technique)
    slope_prior: float = 0.2  # median of the log-normal prior on each slope's std (tau)
    same_computation: bool = True  # methods that run the same computation on a task share one value there
    hetero_noise: bool = False  # per-context noise scale from the context tower (opt-in: see note)
    members: int = 0  # MAP fits from different keys, predicted as an equal mixture; 0 = auto (by table size)
    failure_forests: bool = True  # failure model: a forest per method where its held-out log loss beats the
    #                               logistic regression's (False: logistic regressions only, as before format 7)
    tree_mean: bool | None = None  # a regression forest per method gives each cell's prior mean, the model learns the
    #                               residual; None (auto): chosen per fit by the calibration split's held-out error


@dataclass
class FitInput:
    """One fit's arrays (unpadded): contexts ``xc`` (C, dc), methods ``xm`` (M, dm), standardised
    targets ``y`` (C, M) with ``mask``, pair terms ``xp`` (C, M, P), and ``rep`` (C, M): the
    column whose latent value each cell measures (its own, or its same-computation
    representative's; ``xp`` gathered alike by the caller). ``seed`` sets the initialisation."""

    xc: np.ndarray
    xm: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    xp: np.ndarray
    rep: np.ndarray
    seed: int

    @classmethod
    def of(cls, xc, xm, y, mask, *, seed: int, xp=None, rep=None) -> "FitInput":
        C, M = np.shape(y)
        xc = np.asarray(xc, np.float32) if np.shape(xc)[1] else np.zeros((C, 1), np.float32)
        xm = np.asarray(xm, np.float32) if np.shape(xm)[1] else np.zeros((M, 1), np.float32)
        xp = np.zeros((C, M, 0), np.float32) if xp is None else np.asarray(xp, np.float32)
        rep = np.tile(np.arange(M, dtype=np.int32), (C, 1)) if rep is None else np.asarray(rep, np.int32)
        return cls(xc, xm, np.asarray(y, np.float32), np.asarray(mask, np.float32), xp, rep, int(seed) % 2**32)

    def shape(self) -> tuple[int, int, int, int, int]:
        (C, dc), (M, dm), P = self.xc.shape, self.xm.shape, self.xp.shape[2]
        return C, M, dc, dm, P


def bucket(n: int, floor: int = 1) -> int:
    """The smallest size of the ladder 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (powers of two and
    1.5 times them) that holds ``n`` (at least ``floor``): a third of the size wasted at most."""
    size = max(int(n), floor, 1)
    p = 1 << (size - 1).bit_length()  # the power of two >= size
    return 3 * p // 4 if p >= 4 and 3 * p // 4 >= size else p


def _ladder_floor(n: int) -> int:
    """The largest size of :func:`bucket`'s ladder that is at most ``n`` (n >= 1)."""
    p = 1 << (n.bit_length() - 1)  # the power of two <= n
    return 3 * p // 2 if p >= 2 and 3 * p // 2 <= n else p


BATCH_ELEMENTS = 2_000_000  # a batch's padded cells x latent width, above which it is split (memory)


def fit_batch(inputs: list[FitInput], cfg: TrainConfig) -> list[dict]:
    """Fit every input (independently) and return each one's numpy parameters and loss trace.

    Inputs of one shape bucket run together as one vectorised program, compiled once per
    bucket and configuration for the life of the process.
    """
    groups: dict[tuple, list[int]] = {}
    for i, item in enumerate(inputs):
        C, M, dc, dm, P = item.shape()
        key = (bucket(C, 8), bucket(M, 2), bucket(dc), bucket(dm), bucket(P) if P else 0)
        groups.setdefault(key, []).append(i)
    out: list[dict | None] = [None] * len(inputs)
    width = 1 + cfg.k + cfg.rank
    for key, members in groups.items():
        Cb, Mb, _, _, Pb = key
        per_item = Cb * (Mb * (Pb + 4) + (width + Pb) ** 2 + Pb * Pb)
        chunk = _ladder_floor(max(1, BATCH_ELEMENTS // per_item))  # a ladder size: full chunks need no filler
        for start in range(0, len(members), chunk):
            idx = members[start:start + chunk]
            for i, params in zip(idx, _run_bucket([inputs[i] for i in idx], key, cfg)):
                out[i] = params
    return out  # type: ignore[return-value]


def _run_bucket(items: list[FitInput], key: tuple, cfg: TrainConfig) -> list[dict]:
    import jax

    Cb, Mb, dcb, dmb, Pb = key
    nb = bucket(len(items))
    pad = items + [items[0]] * (nb - len(items))  # filler items: fitted and dropped (their mask is cleared below)
    data = {"xc": np.zeros((nb, Cb, dcb), np.float32), "xm": np.zeros((nb, Mb, dmb), np.float32),
            "xp": np.zeros((nb, Cb, Mb, Pb), np.float32)}
    data.update({k: np.zeros((nb, Cb, Mb), np.float32) for k in ("count", "ysum")})
    data.update({"y2": np.zeros((nb, Cb), np.float32), "xpxp": np.zeros((nb, Cb, Pb, Pb), np.float32)})
    inits = []
    for b, item in enumerate(pad):
        C, M, dc, dm, P = item.shape()
        data["xc"][b, :C, :dc], data["xm"][b, :M, :dm], data["xp"][b, :C, :M, :P] = item.xc, item.xm, item.xp
        if b < len(items):  # filler items observe nothing
            stats = sufficient_stats(item)
            data["count"][b, :C, :M], data["ysum"][b, :C, :M] = stats["count"], stats["ysum"]
            data["y2"][b, :C], data["xpxp"][b, :C, :P, :P] = stats["y2"], stats["xpxp"]
        inits.append(_padded(_init(item, cfg), key, cfg))
    params0 = {k: np.stack([p[k] for p in inits]) if not isinstance(inits[0][k], list)
               else [tuple(np.stack([p[k][li][j] for p in inits]) for j in range(2)) for li in range(3)]
               for k in inits[0]}
    sizes = _tower_sizes(dcb, dmb, cfg)
    params0 = {**params0, "ctx": _to_state(params0["ctx"], sizes[0]), "mth": _to_state(params0["mth"], sizes[1])}
    program = _program(replace(cfg, members=0, same_computation=True, pair_terms=True), sizes)
    params, losses = jax.device_get(program(params0, data))
    params = {**params, "ctx": _from_state(params["ctx"]), "mth": _from_state(params["mth"])}
    results = []
    for b, item in enumerate(items):
        loss = np.asarray(losses[b], np.float64)
        if not np.all(np.isfinite(loss[-10:])):
            from metasel.errors import MetaselError

            raise MetaselError("training diverged (non-finite loss); try fewer steps or a smaller learning rate")
        results.append({**_unpadded(params, b, item, cfg), "losses": loss})
    return results


def sufficient_stats(item: FitInput) -> dict:
    """What the likelihood needs of an input's cells, per context c and representative j: the
    number of observed cells measuring j (``count``), the sum of their values (``ysum``), the
    sum of squares of all observed values (``y2``, per context) and ``xpxp`` = sum over j of
    count x xp xp^T (per context). Cells measuring one representative share its mean and
    loadings, so these are exact."""
    C, M, _, _, P = item.shape()
    rows = np.repeat(np.arange(C), M)
    cols = item.rep.ravel()
    count = np.zeros((C, M), np.float64)
    ysum = np.zeros((C, M), np.float64)
    np.add.at(count, (rows, cols), item.mask.ravel())
    np.add.at(ysum, (rows, cols), (item.mask * item.y).ravel())
    xpxp = np.einsum("cj,cjp,cjq->cpq", count, item.xp, item.xp)
    return {"count": count.astype(np.float32), "ysum": ysum.astype(np.float32),
            "y2": (item.mask * item.y ** 2).sum(axis=1).astype(np.float32), "xpxp": xpxp.astype(np.float32)}


def _init(item: FitInput, cfg: TrainConfig) -> dict:
    """Initial parameters at the item's own shapes, from its seed (numpy: no compiled program)."""
    rng = np.random.default_rng(item.seed)
    C, M, dc, dm, P = item.shape()

    def tower(din, hidden, dout):
        def lecun(fan_in, fan_out):  # Flax's default: truncated normal, variance 1 / fan_in
            w = rng.standard_normal((fan_in, fan_out))
            while (bad := np.abs(w) > 2.0).any():
                w[bad] = rng.standard_normal(int(bad.sum()))
            return (w / 0.87962566103423978 / math.sqrt(fan_in)).astype(np.float32)

        return [(lecun(din, hidden), np.zeros(hidden, np.float32)), (lecun(hidden, hidden), np.zeros(hidden, np.float32)),
                ((0.01 * rng.standard_normal((hidden, dout))).astype(np.float32), np.zeros(dout, np.float32))]

    ctx_size, mth_size = _tower_sizes(dc, dm, cfg)
    # Start the method embeddings off zero: at zero the latent loadings have no gradient
    # (the covariance is quadratic in them), so a symmetric start would never leave it.
    return {"ctx": tower(*ctx_size), "mth": tower(*mth_size),
            "emb": (0.1 * rng.standard_normal((M, mth_size[2]))).astype(np.float32),
            "log_noise": np.float32(math.log(0.3)), "log_s_bias": np.float32(math.log(0.5)),
            "beta": np.zeros(P, np.float32), "log_tau": np.full(P, math.log(cfg.slope_prior), np.float32)}


def _padded(p: dict, key: tuple, cfg: TrainConfig) -> dict:
    """Parameters padded to the bucket so that the padding gets no gradient: padded inputs,
    methods and pair weights start at zero, padded slopes at their prior's mode, log tau = mu - 1 (nothing
    reaches them but their prior, whose gradient is zero there)."""
    _, Mb, dcb, dmb, Pb = key

    def rows(w, n):
        return np.pad(w, ((0, n - w.shape[0]), (0, 0)))

    def tower(layers, din):
        (w0, b0), *rest = layers
        return [(rows(w0, din), b0), *rest]

    return {"ctx": tower(p["ctx"], dcb), "mth": tower(p["mth"], dmb), "emb": rows(p["emb"], Mb),
            "log_noise": p["log_noise"], "log_s_bias": p["log_s_bias"], "beta": np.pad(p["beta"], (0, Pb - len(p["beta"]))),
            "log_tau": np.pad(p["log_tau"], (0, Pb - len(p["log_tau"])), constant_values=math.log(cfg.slope_prior) - 1.0)}


def _unpadded(params: dict, b: int, item: FitInput, cfg: TrainConfig) -> dict:
    """Item ``b`` of a batch's fitted parameters, cut to its shapes, as float64 numpy arrays in the
    layout the numpy predictor reads."""
    C, M, dc, dm, P = item.shape()

    def layers(tower, din):
        out = [(np.asarray(w[b], np.float64), np.asarray(bias[b], np.float64)) for w, bias in tower]
        out[0] = (out[0][0][:din], out[0][1])
        return out

    return {"ctx_layers": layers(params["ctx"], dc), "mth_layers": layers(params["mth"], dm),
            "emb": np.asarray(params["emb"][b][:M], np.float64), "noise": float(np.exp(params["log_noise"][b])),
            "s_bias": float(np.exp(params["log_s_bias"][b])),
            "beta": np.asarray(params["beta"][b][:P], np.float64),
            "tau": np.exp(np.asarray(params["log_tau"][b][:P], np.float64)) if cfg.pair_slopes else np.zeros(0)}


LAYERS = ("l0", "l1", "out")


def _tower_sizes(dc: int, dm: int, cfg: TrainConfig) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(inputs, hidden, outputs) of the context and method towers for ``dc`` context and ``dm``
    method features."""
    return (dc, cfg.hidden, 1 + cfg.k + int(cfg.hetero_noise)), (dm, cfg.hidden // 2, 1 + cfg.k + cfg.rank)


@functools.lru_cache(maxsize=None)
def _tower(din: int, hidden: int, dout: int):
    """The Flax nnx tower of these sizes (two SiLU layers and a linear output): its graph
    definition and abstract state. Its weights travel as an ``nnx.State`` argument of the
    compiled program, so one program serves every fit of the bucket."""
    import jax
    from flax import nnx

    class Tower(nnx.Module):
        def __init__(self, din: int, hidden: int, dout: int, *, rngs: nnx.Rngs):
            self.l0 = nnx.Linear(din, hidden, rngs=rngs)
            self.l1 = nnx.Linear(hidden, hidden, rngs=rngs)
            self.out = nnx.Linear(hidden, dout, rngs=rngs)

        def __call__(self, x):
            return self.out(jax.nn.silu(self.l1(jax.nn.silu(self.l0(x)))))

    return nnx.split(nnx.eval_shape(lambda: Tower(din, hidden, dout, rngs=nnx.Rngs(0))))


def _to_state(layers: list, sizes: tuple[int, int, int]):
    """[(kernel, bias)] per layer (numpy, any leading batch axes) as the tower's ``nnx.State``."""
    import jax

    given = {(name, part): value for name, layer in zip(LAYERS, layers) for part, value in zip(("kernel", "bias"), layer)}
    return jax.tree_util.tree_map_with_path(lambda path, _: given[path[0].key, path[1].key], _tower(*sizes)[1])


def _from_state(state) -> list:
    """The tower's ``nnx.State`` back as [(kernel, bias)] per layer."""
    import jax

    leaves = {(path[0].key, path[1].key): v for path, v in jax.tree_util.tree_flatten_with_path(state)[0]}
    return [(leaves[name, "kernel"], leaves[name, "bias"]) for name in LAYERS]


def _tower_fns(sizes: tuple) -> tuple:
    """``(state, x) -> outputs`` of the context and method towers of these sizes."""
    from flax import nnx

    return tuple((lambda state, x, g=_tower(*size)[0]: nnx.merge(g, state)(x)) for size in sizes)


@functools.lru_cache(maxsize=None)
def _program(cfg: TrainConfig, sizes: tuple):
    """The compiled training loop for one configuration and bucket: ``(params0, data) ->
    (params, losses)``, vectorised over a leading batch axis; jax compiles it once per shape."""
    import jax
    import optax

    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, min(100, cfg.steps // 10 + 1), cfg.steps, cfg.lr * 0.05)
    opt = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(schedule))
    towers = _tower_fns(sizes)

    def loss(params, data):
        return -_log_joint(params, data, cfg, towers)

    def one(params0, data):
        def step(carry, _):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params, data)
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        (params, _), losses = jax.lax.scan(step, (params0, opt.init(params0)), None, length=cfg.steps)
        return params, losses

    return jax.jit(jax.vmap(one))


UNROLL_MAX = 6  # Cholesky factors up to this size are written out elementwise (vectorised over contexts)


def _solve_spd(a, v):
    """For symmetric positive definite ``a`` (..., R, R) and ``v`` (..., R): v^T a^-1 v and
    log sqrt(det a) (= the sum of the log-diagonal of a's Cholesky factor L), by L z = v.

    Small factors (the latent alone: R = 1 + rank) are written out entry by entry, which XLA
    fuses into a few elementwise loops over all contexts at once; LAPACK's batched factor costs
    a call per context, most of a step's time at these sizes. Larger ones use LAPACK."""
    import jax
    import jax.numpy as jnp

    size = a.shape[-1]
    if size > UNROLL_MAX:
        chol = jnp.linalg.cholesky(a)
        z = jax.scipy.linalg.solve_triangular(chol, v[..., None], lower=True)[..., 0]
        return jnp.sum(z ** 2, axis=-1), jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    low: dict = {}
    z: list = []
    quad, half_logdet = 0.0, 0.0
    for j in range(size):
        d = jnp.sqrt(a[..., j, j] - sum(low[j, k] ** 2 for k in range(j)))
        low[j, j] = d
        for i in range(j + 1, size):
            low[i, j] = (a[..., i, j] - sum(low[i, k] * low[j, k] for k in range(j))) / d
        z.append((v[..., j] - sum(low[j, k] * z[k] for k in range(j))) / d)
        quad, half_logdet = quad + z[j] ** 2, half_logdet + jnp.log(d)
    return quad, half_logdet


def _log_joint(p: dict, d: dict, cfg: TrainConfig, towers: tuple):
    """Log prior plus the exact marginal likelihood of each context's observed values (latents
    integrated out), for one (padded) fit whose data are its :func:`sufficient_stats`, inputs
    and (representative-gathered) pair terms ``xp``. ``towers`` (:func:`_tower_fns`) apply
    ``p["ctx"]`` and ``p["mth"]`` to the inputs."""
    import jax
    import jax.numpy as jnp
    import numpyro.distributions as dist

    count, xp = d["count"], d["xp"]
    C, M, P = xp.shape
    hc = towers[0](p["ctx"], d["xc"])
    hm = towers[1](p["mth"], d["xm"]) + p["emb"]
    noise, s_bias = jnp.exp(p["log_noise"]), jnp.exp(p["log_s_bias"])
    a, f = hc[:, 0], hc[:, 1:1 + cfg.k]
    c, g, phi = hm[:, 0], hm[:, 1:1 + cfg.k], hm[:, 1 + cfg.k:]
    mu = a[:, None] + c[None, :] + f @ g.T  # (C, M): the mean of each representative
    u = jnp.concatenate([s_bias * jnp.ones((M, 1)), phi], axis=1)  # loadings x prior std, (M, width)
    width = u.shape[1]
    log_prior = 0.0
    if P:
        mu = mu + xp @ p["beta"]
        log_prior += dist.Normal(0.0, cfg.pair_prior).log_prob(p["beta"]).sum()
    n2 = (noise * jnp.exp(jnp.clip(hc[:, 1 + cfg.k], -3.0, 3.0)) if cfg.hetero_noise else noise * jnp.ones(C)) ** 2
    # Woodbury: cov = n2 I + U U^T over a context's observed cells, U's rows the loadings of the
    # representative each cell measures; so U^T U and U^T r are sums over representatives.
    resid = d["ysum"] - count * mu  # (C, M): summed residuals of the cells measuring each representative
    quad = (d["y2"] - 2.0 * jnp.sum(mu * d["ysum"], axis=1) + jnp.sum(count * mu ** 2, axis=1)) / n2
    outer = (u[:, :, None] * u[:, None, :]).reshape(M, width * width)
    cap = jnp.eye(width) + (count @ outer).reshape(C, width, width) / n2[:, None, None]
    v = resid @ u / n2[:, None]
    if P and cfg.pair_slopes:
        tau = jnp.exp(p["log_tau"])
        log_prior += dist.LogNormal(math.log(cfg.slope_prior), 1.0).log_prob(tau).sum()
        cross = ((count[:, :, None] * xp).transpose(0, 2, 1).reshape(C * P, M) @ u).reshape(C, P, width)
        cross = cross * tau[None, :, None] / n2[:, None, None]  # (C, P, width)
        slopes = jnp.eye(P) + d["xpxp"] * (tau[:, None] * tau[None, :]) / n2[:, None, None]
        cap = jnp.concatenate([jnp.concatenate([cap, cross.transpose(0, 2, 1)], axis=2),
                               jnp.concatenate([cross, slopes], axis=2)], axis=1)
        v = jnp.concatenate([v, tau * jnp.sum(resid[:, :, None] * xp, axis=1) / n2[:, None]], axis=1)
    z2, half_logdet = _solve_spd(cap, v)
    n_obs = count.sum(axis=1)
    logdet = n_obs * jnp.log(n2) + 2.0 * half_logdet
    loglik = -0.5 * (quad - z2 + logdet + n_obs * math.log(2 * math.pi))
    l2 = sum(jnp.sum(w ** 2) for w in jax.tree_util.tree_leaves((p["ctx"], p["mth"])))
    log_prior += -0.5 * l2 / cfg.weight_prior ** 2
    log_prior += dist.Normal(0.0, cfg.emb_scale).log_prob(p["emb"]).sum()
    log_prior += dist.LogNormal(math.log(cfg.noise_prior), 1.0).log_prob(noise)
    log_prior += dist.LogNormal(math.log(cfg.bias_prior), 1.0).log_prob(s_bias)
    return log_prior + jnp.sum(loglik)
