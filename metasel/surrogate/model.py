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
FORMAT_VERSION = 1


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
class _State:
    metric: str
    direction: str
    config: TrainConfig
    encoder: FeatureEncoder
    ctx_layers: list
    mth_layers: list
    emb: np.ndarray  # (num_train_methods, width)
    noise: float
    s_bias: float
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

    def fit(self, table: "PerfTable", *, key, calibrate: bool = True) -> "Surrogate":
        """Fit on a performance table; returns a new, fitted surrogate (``table`` is not changed).

        With ``calibrate``, the predictive std is then calibrated on the training data
        alone: a second fit leaves out a fifth of the training tasks, and the spread of its
        errors on them (zero-shot, and after seeing half of each context's cells) sets
        one inflation factor for each of the two cases.

        Args:
            table: observations; ``ok`` rows with the metric are the training targets.
            key: a ``jax.random`` key (or an int seed).
        """
        import jax

        if isinstance(key, int):
            key = jax.random.key(key)
        key_fit, key_cal = jax.random.split(key)
        model = self._fit_core(table, key_fit)
        if calibrate:
            seen, zero, cond = _calibration(self, table, key_cal)
            model._state = replace(model._state, calib_zero=zero, calib_cond=cond, calib_seen=seen,
                                   fit_info={**model._state.fit_info, "calib_seen": seen, "calib_zero": zero,
                                             "calib_cond": cond})
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
        encoder = FeatureEncoder(embed_kind="hash" if self.embed == "none" else self.embed, embed_dims=self.embed_dims)
        encoder.fit([(tasks[t], hardware[h]) for t, h in ctx_keys], [method_desc[m] for m in methods])
        xc = encoder.contexts([(tasks[t], hardware[h]) for t, h in ctx_keys])
        xm = encoder.methods([method_desc[m] for m in methods])
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
        from metasel.surrogate._train import fit_params

        params = fit_params(xc, xm, y, mask, key=key, cfg=self.config)
        evidence: dict[tuple[str, str], dict[str, float]] = {}
        for r, c, v in zip(rows, cols, y[rows, cols]):
            evidence.setdefault(ctx_keys[r], {})[methods[c]] = float(v)
        digest = hashlib.sha256("\n".join(sorted(table.observations["obs_id"])).encode()).hexdigest()[:16]
        state = _State(
            metric=self.metric, direction=direction, config=self.config, encoder=encoder,
            ctx_layers=params["ctx_layers"], mth_layers=params["mth_layers"], emb=params["emb"],
            noise=params["noise"], s_bias=params["s_bias"], y_mean=y_mean, y_std=y_std, train_methods=methods,
            tasks=tasks, hardware=hardware, methods=method_desc, evidence=evidence, data_hash=digest,
            losses=params["losses"], train_contexts=frozenset(ctx_keys),
            fit_info={"num_contexts": len(ctx_keys), "num_methods": len(methods), "num_cells": int(mask.sum())},
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

    def _catalog(self, table: "PerfTable | None"):
        s = self._require()
        tasks, hardware, methods = dict(s.tasks), dict(s.hardware), dict(s.methods)
        if table is not None:
            tasks.update(_descriptor_map(table.tasks, "task_id", real_only=True))
            hardware.update(_descriptor_map(table.hardware, "hardware_id", real_only=True))
            methods.update(_descriptor_map(table.methods, "method", real_only=True))
        return tasks, hardware, methods

    def _method_outputs(self, names: list[str], methods: dict[str, dict]) -> np.ndarray:
        s = self._require()
        for m in names:
            if m not in methods:
                raise InputDataError(f"no descriptor for method {m!r}: pass a table that describes it")
        xm = s.encoder.methods([methods[m] for m in names])
        hm = _numpy.mlp(xm if xm.shape[1] else np.zeros((len(names), 1), np.float32), s.mth_layers)
        index = {m: i for i, m in enumerate(s.train_methods)}
        for i, m in enumerate(names):
            if m in index:
                hm[i] += s.emb[index[m]]
        return hm

    def _context_outputs(self, keys: list[tuple[str, str]], tasks, hardware) -> np.ndarray:
        s = self._require()
        for t, h in keys:
            if t not in tasks:
                raise InputDataError(f"no descriptor for task {t!r}: pass a table (or spec) that describes it")
            if h not in hardware:
                raise InputDataError(f"no descriptor for hardware {h!r}: pass a table that describes it")
        xc = s.encoder.contexts([(tasks[t], hardware[h]) for t, h in keys])
        return _numpy.mlp(xc if xc.shape[1] else np.zeros((len(keys), 1), np.float32), s.ctx_layers)

    def predict(self, cells, *, table: "PerfTable | None" = None) -> Prediction:
        """Predictive mean and std of log(metric) for each cell.

        Args:
            cells: a frame (or iterable of tuples) with ``task_id, method, hardware_id``.
            table: descriptors of tasks, methods or hardware the surrogate has not seen.
        """
        s = self._require()
        frame = _cells_frame(cells)
        tasks, hardware, methods = self._catalog(table)
        ctx_keys = list(dict.fromkeys(zip(frame["task_id"], frame["hardware_id"])))
        ev_methods = {m for key in ctx_keys for m in s.evidence.get(key, {})}
        names = sorted(set(frame["method"]) | ev_methods)
        mi = {m: i for i, m in enumerate(names)}
        hm = self._method_outputs(names, methods)
        hc = self._context_outputs(ctx_keys, tasks, hardware)
        cfg = s.config
        a, f = hc[:, 0], hc[:, 1:1 + cfg.k]
        c, g, phi = hm[:, 0], hm[:, 1:1 + cfg.k], hm[:, 1 + cfg.k:]
        psi = np.concatenate([np.ones((len(names), 1)), phi], axis=1)
        prior_var = np.concatenate([[s.s_bias ** 2], np.ones(cfg.rank)])
        noise_var = s.noise ** 2
        mu_all = a[:, None] + c[None, :] + f @ g.T  # (contexts, methods)
        mean = np.empty(len(frame))
        var = np.empty(len(frame))
        ci = {k: i for i, k in enumerate(ctx_keys)}
        cidx = np.array([ci[k] for k in zip(frame["task_id"], frame["hardware_id"])], dtype=int)
        midx = np.array([mi[m] for m in frame["method"]], dtype=int)
        prior_v = (psi ** 2) @ prior_var + noise_var
        mean[:] = mu_all[cidx, midx]
        var[:] = prior_v[midx] * s.calib_zero ** 2
        with_evidence = [i for i, k in enumerate(ctx_keys) if s.evidence.get(k)]
        if with_evidence:
            order = np.argsort(cidx, kind="stable")
            bounds = np.searchsorted(cidx[order], np.arange(len(ctx_keys) + 1))
            for i in with_evidence:
                rows = order[bounds[i]:bounds[i + 1]]
                ev = s.evidence[ctx_keys[i]]
                obs = np.array([mi[m] for m in ev], dtype=int)
                y = np.zeros(len(names))
                y[obs] = list(ev.values())
                m_q, v_q = _numpy.posterior(mu_all[i], psi, prior_var, noise_var, y, obs, midx[rows])
                factor = s.calib_seen if ctx_keys[i] in s.train_contexts else s.calib_cond
                mean[rows], var[rows] = m_q, v_q * factor ** 2
        return Prediction(mean * s.y_std + s.y_mean, np.sqrt(var) * s.y_std)

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
        tasks, hardware, methods = self._catalog(observations)
        state = replace(s, evidence=evidence, tasks=tasks, hardware=hardware, methods=methods)
        return Surrogate(self.metric, config=self.config, embed=self.embed, embed_dims=self.embed_dims, _state=state)

    def forget(self, task_ids: Iterable[str]) -> "Surrogate":
        """A new surrogate without the evidence of these tasks (what a fresh task looks like)."""
        s = self._require()
        drop = set(task_ids)
        evidence = {k: v for k, v in s.evidence.items() if k[0] not in drop}
        return Surrogate(self.metric, config=self.config, embed=self.embed, embed_dims=self.embed_dims,
                         _state=replace(s, evidence=evidence))

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike) -> Path:
        """Write a versioned model file (written to a temporary name, then renamed)."""
        from metasel import __version__

        s = self._require()
        path = Path(path)
        enc_meta, arrays = s.encoder.state()
        for prefix, layers in (("ctx", s.ctx_layers), ("mth", s.mth_layers)):
            for i, (w, b) in enumerate(layers):
                arrays[f"{prefix}.{i}.w"], arrays[f"{prefix}.{i}.b"] = w, b
        arrays["emb"] = s.emb
        arrays["losses"] = s.losses
        ev = [(t, h, m, v) for (t, h), d in s.evidence.items() for m, v in d.items()]
        arrays["ev.keys"] = np.asarray([[t, h, m] for t, h, m, _ in ev], dtype=str).reshape(-1, 3)
        arrays["ev.values"] = np.asarray([v for *_, v in ev], dtype=np.float64)
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "metasel_version": __version__,
            "metric": s.metric, "direction": s.direction, "config": asdict(s.config), "embed": self.embed,
            "embed_dims": self.embed_dims, "encoder": enc_meta, "noise": s.noise, "s_bias": s.s_bias,
            "y_mean": s.y_mean, "y_std": s.y_std, "train_methods": s.train_methods,
            "num_layers": [len(s.ctx_layers), len(s.mth_layers)],
            "tasks": s.tasks, "hardware": s.hardware, "methods": s.methods, "data_hash": s.data_hash,
            "fit_info": s.fit_info, "calib_zero": s.calib_zero, "calib_cond": s.calib_cond,
            "calib_seen": s.calib_seen, "train_contexts": sorted(list(k) for k in s.train_contexts),
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
        try:
            layers = {p: [(arrays[f"{p}.{i}.w"], arrays[f"{p}.{i}.b"]) for i in range(n)]
                      for p, n in zip(("ctx", "mth"), meta["num_layers"])}
            config = TrainConfig(**meta["config"])
            encoder = FeatureEncoder.from_state(meta["encoder"], arrays)
            keys = arrays["ev.keys"]
            evidence: dict[tuple[str, str], dict[str, float]] = {}
            for (t, h, m), v in zip(keys.tolist(), arrays["ev.values"].tolist()):
                evidence.setdefault((t, h), {})[m] = float(v)
            state = _State(
                metric=meta["metric"], direction=meta["direction"], config=config, encoder=encoder,
                ctx_layers=layers["ctx"], mth_layers=layers["mth"], emb=arrays["emb"], noise=float(meta["noise"]),
                s_bias=float(meta["s_bias"]), y_mean=float(meta["y_mean"]), y_std=float(meta["y_std"]),
                train_methods=list(meta["train_methods"]), tasks=meta["tasks"], hardware=meta["hardware"],
                methods=meta["methods"], evidence=evidence, data_hash=meta["data_hash"], losses=arrays["losses"],
                fit_info=meta.get("fit_info", {}), calib_zero=float(meta.get("calib_zero", 1.0)),
                calib_cond=float(meta.get("calib_cond", 1.0)), calib_seen=float(meta.get("calib_seen", 1.0)),
                train_contexts=frozenset(tuple(k) for k in meta.get("train_contexts", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputDataError(f"{path}: the model file is incomplete or corrupt ({type(exc).__name__}: {exc})") from exc
        return cls(meta["metric"], config=config, embed=meta["embed"], embed_dims=meta["embed_dims"], _state=state)

    def info(self) -> dict[str, Any]:
        s = self._require()
        return {"metric": s.metric, "direction": s.direction, "noise_std_log": s.noise * s.y_std,
                "bias_std_log": s.s_bias * s.y_std, "embedder": s.encoder.embed_kind,
                "methods": len(s.methods), "tasks": len(s.tasks), "hardware": len(s.hardware),
                "data_hash": s.data_hash, **s.fit_info}


def _calibration(template: Surrogate, table: "PerfTable", key) -> tuple[float, float, float]:
    """Std inflation factors (seen, zero-shot, conditioned) from one inner fit on training data.

    The inner fit leaves out a fifth of the training tasks and a tenth of the other
    cells. Seen: the left-out cells of contexts it trained on. Zero-shot: the left-out
    tasks' cells predicted from nothing. Conditioned: each left-out context's cells split
    in two halves, one told, the other predicted. Each factor makes 90% of the
    standardised errors fall inside the 90% interval; none is below 1 (only widens).
    """
    from metasel.table import PerfTable

    long = table.long(template.metric)
    long = long[long["value"] > 0].reset_index(drop=True)
    tasks = sorted(long["task_id"].unique())
    if len(tasks) < 5:
        return 1.0, 1.0, 1.0
    rng = np.random.default_rng(int(np.asarray(_key_data(key)).ravel()[-1]) % (2**32))
    held = set(rng.choice(tasks, size=max(1, len(tasks) // 5), replace=False).tolist())
    kept = long[~long["task_id"].isin(held)]
    drop_cells = kept.sample(frac=0.1, random_state=int(rng.integers(2**31))) if len(kept) >= 20 else kept.iloc[0:0]
    dropped = set(zip(drop_cells["task_id"], drop_cells["method"], drop_cells["hardware_id"]))
    obs = table.observations
    keep_mask = ~obs["task_id"].isin(held) & ~pd_isin_cells(obs, dropped)
    inner = template._fit_core(table.with_observations(obs[keep_mask]), key)

    def zscores(model, cells):
        if cells.empty:
            return np.zeros(0)
        p = model.predict(cells[["task_id", "method", "hardware_id"]], table=table)
        return np.abs(p.mean - np.log(cells["value"].to_numpy())) / p.std

    seen_cells = drop_cells[[(t, h) in inner._state.train_contexts for t, h in zip(drop_cells["task_id"], drop_cells["hardware_id"])]]
    z_seen = zscores(inner, seen_cells)
    test = long[long["task_id"].isin(held)].reset_index(drop=True)
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
