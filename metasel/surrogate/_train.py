"""Training: Flax nnx towers inside a NumPyro model, MAP by SVI with an optax optimiser.

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
Gaussian weight prior. AutoDelta makes SVI find the posterior mode of all of these
(type-II maximum likelihood for the variances, since the latents are integrated out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def _towers(dc: int, dm: int, cfg: TrainConfig, key):
    from flax import nnx

    class Tower(nnx.Module):
        def __init__(self, din: int, hidden: int, dout: int, *, rngs: nnx.Rngs):
            self.l0 = nnx.Linear(din, hidden, rngs=rngs)
            self.l1 = nnx.Linear(hidden, hidden, rngs=rngs)
            self.out = nnx.Linear(hidden, dout, rngs=rngs,
                                  kernel_init=nnx.initializers.normal(0.01))

        def __call__(self, x):
            import jax

            h = jax.nn.silu(self.l0(x))
            h = jax.nn.silu(self.l1(h))
            return self.out(h)

    import jax

    k1, k2 = jax.random.split(key)
    ctx = Tower(max(dc, 1), cfg.hidden, 1 + cfg.k + int(cfg.hetero_noise), rngs=nnx.Rngs(params=k1))
    mth = Tower(max(dm, 1), cfg.hidden // 2, 1 + cfg.k + cfg.rank, rngs=nnx.Rngs(params=k2))
    return ctx, mth


def _mean_and_loadings(hc, hm, cfg: TrainConfig):
    import jax.numpy as jnp

    a, f = hc[:, 0], hc[:, 1:1 + cfg.k]
    c, g, phi = hm[:, 0], hm[:, 1:1 + cfg.k], hm[:, 1 + cfg.k:]
    mu = a[:, None] + c[None, :] + f @ g.T
    psi = jnp.concatenate([jnp.ones((hm.shape[0], 1)), phi], axis=1)
    return mu, psi


MAX_MAPPINGS = 30_000  # of the process's memory mappings before compiled programs are dropped


def _trim_compiled() -> None:
    """Drop jax's compiled programs when the process holds many memory mappings.

    Each fit traces a new program (the data are closed over), and XLA's CPU JIT keeps about
    450 mappings per fit that nothing will reuse; Linux allows 65,530 per process, so an
    evaluation that fits hundreds of models in one process died with "LLVM compilation
    error: Cannot allocate memory". Clearing after every fit would also drop the small
    programs every fit reuses (2x slower), so this clears only past ``MAX_MAPPINGS``.
    """
    try:
        with open("/proc/self/maps", "rb") as f:
            mappings = sum(1 for _ in f)
    except OSError:  # not Linux: no such limit to guard
        return
    if mappings > MAX_MAPPINGS:
        import jax

        jax.clear_caches()


def fit_params(xc: np.ndarray, xm: np.ndarray, y: np.ndarray, mask: np.ndarray, *, key, cfg: TrainConfig,
               xp: np.ndarray | None = None, rep: np.ndarray | None = None):
    """Fit on contexts ``xc`` (C, dc), methods ``xm`` (M, dm), values ``y`` (C, M) with ``mask``,
    and pair terms ``xp`` (C, M, P) when given.

    ``rep`` (C, M), when given, says which method's latent value each cell measures: in
    context c, method m is a noisy measurement of method ``rep[c, m]`` (the same
    computation), so both get that method's mean and loadings (``xp`` is expected to be
    gathered alike by the caller).

    Returns numpy parameters: tower layers, method embeddings, noise and bias scales, pair
    weights and slopes, and the loss trace.
    """
    import jax
    import jax.numpy as jnp
    import numpyro
    import optax
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDelta
    from numpyro.infer.initialization import init_to_value

    key_init, key_svi = jax.random.split(key)
    ctx_mod, mth_mod = _towers(xc.shape[1], xm.shape[1], cfg, key_init)
    C, M = y.shape
    data = {"xc": jnp.asarray(xc if xc.shape[1] else np.zeros((C, 1), np.float32)),
            "xm": jnp.asarray(xm if xm.shape[1] else np.zeros((M, 1), np.float32)),
            "y": jnp.asarray(y, jnp.float32), "mask": jnp.asarray(mask, jnp.float32),
            "xp": jnp.asarray(xp if xp is not None else np.zeros((C, M, 0), np.float32), jnp.float32),
            "rep": None if rep is None else jnp.asarray(rep, jnp.int32)}
    P = data["xp"].shape[2]
    model = _model(ctx_mod, mth_mod, data, cfg)
    # Start the method embeddings off zero: at zero the latent loadings have no gradient
    # (the covariance is quadratic in them), so a symmetric start would never leave it.
    key_emb, key_svi = jax.random.split(key_svi)
    init = {"emb": 0.1 * jax.random.normal(key_emb, (M, 1 + cfg.k + cfg.rank)), "noise": jnp.asarray(0.3),
            "s_bias": jnp.asarray(0.5)}
    if P and cfg.pair_slopes:
        init["tau"] = jnp.full(P, cfg.slope_prior)
    guide = AutoDelta(model, init_loc_fn=init_to_value(values=init))
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, min(100, cfg.steps // 10 + 1), cfg.steps, cfg.lr * 0.05)
    optim = numpyro.optim.optax_to_numpyro(optax.chain(optax.clip_by_global_norm(10.0), optax.adam(schedule)))
    result = SVI(model, guide, optim, Trace_ELBO()).run(key_svi, cfg.steps, progress_bar=False)
    params = jax.device_get(result.params)
    losses = np.asarray(result.losses)
    _trim_compiled()
    if not np.all(np.isfinite(losses[-10:])):
        from metasel.errors import MetaselError

        raise MetaselError("training diverged (non-finite loss); try fewer steps or a smaller learning rate")
    return {**_numpy_params(params, P, cfg), "losses": losses}


def _model(ctx_mod, mth_mod, data: dict, cfg: TrainConfig):
    """The NumPyro model: tower weight priors, the embeddings and scales, and the exact marginal
    likelihood of each context's observed values (latents integrated out)."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.contrib.module import nnx_module

    xc_j, xm_j, y_j, mask_j, xp_j, rep_j = (data[k] for k in ("xc", "xm", "y", "mask", "xp", "rep"))
    C, M = y_j.shape
    P = xp_j.shape[2]
    n_obs = mask_j.sum(axis=1)
    eye = jnp.eye(M)
    width = 1 + cfg.k + cfg.rank

    def l2(params):
        return sum(jnp.sum(p ** 2) for p in jax.tree_util.tree_leaves(params))

    def model():
        ctx = nnx_module("ctx", ctx_mod)
        mth = nnx_module("mth", mth_mod)
        numpyro.factor("ctx_prior", -0.5 * l2(ctx.args[0]) / cfg.weight_prior ** 2)
        numpyro.factor("mth_prior", -0.5 * l2(mth.args[0]) / cfg.weight_prior ** 2)
        emb = numpyro.sample("emb", dist.Normal(0.0, cfg.emb_scale).expand([M, width]).to_event(2))
        noise = numpyro.sample("noise", dist.LogNormal(math.log(cfg.noise_prior), 1.0))
        s_bias = numpyro.sample("s_bias", dist.LogNormal(math.log(cfg.bias_prior), 1.0))
        hc = ctx(xc_j)
        mu, psi = _mean_and_loadings(hc, mth(xm_j) + emb, cfg)
        scale = jnp.concatenate([s_bias[None], jnp.ones(cfg.rank)])
        if rep_j is None:
            k_mat = ((psi * scale ** 2) @ psi.T)[None]
        else:  # each cell takes its representative's mean and loadings
            mu = jnp.take_along_axis(mu, rep_j, axis=1)
            psi_c = psi[rep_j]  # (C, M, width)
            k_mat = jnp.einsum("cmw,cnw->cmn", psi_c * scale ** 2, psi_c)
        if P:
            beta = numpyro.sample("beta", dist.Normal(0.0, cfg.pair_prior).expand([P]).to_event(1))
            mu = mu + xp_j @ beta
        if P and cfg.pair_slopes:
            tau = numpyro.sample("tau", dist.LogNormal(math.log(cfg.slope_prior), 1.0).expand([P]).to_event(1))
            zs = xp_j * tau
            k_mat = k_mat + jnp.einsum("cmp,cnp->cmn", zs, zs)
        noise_c = noise * jnp.exp(jnp.clip(hc[:, 1 + cfg.k], -3.0, 3.0)) if cfg.hetero_noise else noise * jnp.ones(C)
        m2 = mask_j[:, :, None] * mask_j[:, None, :]
        cov = m2 * (k_mat + noise_c[:, None, None] ** 2 * eye[None]) + (1.0 - mask_j)[:, :, None] * eye[None]
        resid = (y_j - mu) * mask_j
        chol = jnp.linalg.cholesky(cov)
        z = jax.scipy.linalg.solve_triangular(chol, resid[..., None], lower=True)[..., 0]
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
        loglik = -0.5 * (jnp.sum(z ** 2, axis=1) + logdet + n_obs * math.log(2 * math.pi))
        numpyro.factor("lik", jnp.sum(loglik))

    return model


def _numpy_params(params: dict, num_pairs: int, cfg: TrainConfig) -> dict:
    """The SVI result as float64 numpy arrays: each tower's (kernel, bias) layers, embeddings, scales."""

    def layers(prefix):
        pure = params[f"{prefix}$params"]
        return [(np.asarray(pure[name]["kernel"], np.float64), np.asarray(pure[name]["bias"], np.float64))
                for name in ("l0", "l1", "out")]

    slopes = num_pairs and cfg.pair_slopes
    return {
        "ctx_layers": layers("ctx"), "mth_layers": layers("mth"), "emb": np.asarray(params["emb_auto_loc"], np.float64),
        "noise": float(params["noise_auto_loc"]), "s_bias": float(params["s_bias_auto_loc"]),
        "beta": np.asarray(params["beta_auto_loc"], np.float64) if num_pairs else np.zeros(0),
        "tau": np.asarray(params["tau_auto_loc"], np.float64) if slopes else np.zeros(0),
    }
