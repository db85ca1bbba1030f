"""The model ``suggest`` and ``tune`` use: a file, a cached fit of this store's data, or a new fit.

A fit takes tens of seconds; conditioning a fitted model on new observations takes
milliseconds (closed form: :meth:`BayesianSurrogate.condition`). So when the store has grown
since the last fit — ``tune`` added a few benchmarks, a colleague imported a handful — the
cached model is reused and conditioned on what was added, and saying so. It is refitted when
asked (``refit``), when the additions reach :data:`REFIT_FRACTION` of what it was fitted on,
or when observations it was fitted on are gone (retracted, or another store's cache).

Cache layout, beside the store: ``models/<metric>-<content hash>.metasel`` (the model) and
``.ids`` (the observation ids it was fitted on), plus ``models/<metric>-latest.json`` naming
the newest fit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from metasel.errors import InputDataError

#: new observations, as a share of those a cached model was fitted on, that make ``suggest`` refit
REFIT_FRACTION = 0.2


def _cache_dir(store_path: Path | None) -> Path:
    return (store_path.parent if store_path else Path(".")) / "models"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _load(path: Path, say) -> object | None:
    from metasel.surrogate import BayesianSurrogate

    try:
        return BayesianSurrogate.load(path)
    except InputDataError as exc:  # e.g. another model format: fit again
        say(f"model: not using {path} ({exc})")
        return None


def _reuse(table, metric: str, cache_dir: Path, say) -> tuple[object | None, str]:
    """The newest cached fit conditioned on the observations added since, or (None, why a refit)."""
    latest = cache_dir / f"{metric}-latest.json"
    try:
        info = json.loads(latest.read_text())
        fitted = set((cache_dir / info["ids"]).read_text().split())
    except (OSError, ValueError, KeyError, TypeError):
        return None, "no earlier fit of this store"
    now = set(table.observations["obs_id"])
    gone, added = fitted - now, now - fitted
    if gone:
        return None, f"{len(gone):,} observation(s) it was fitted on are no longer in the store (retracted?)"
    if len(added) > REFIT_FRACTION * max(1, len(fitted)):
        return None, (f"{len(added):,} observations were added since its fit on {len(fitted):,} (more than "
                      f"{REFIT_FRACTION:.0%})")
    model = _load(cache_dir / info["model"], say)
    if model is None or model.metric != metric:
        return None, "the cached model cannot be read"
    obs = table.observations
    new = table.with_observations(obs[obs["obs_id"].isin(added)])
    say(f"model: reusing {cache_dir / info['model']} (fitted on {len(fitted):,} observations), conditioned on the "
        f"{len(added):,} added since; it refits when they pass {REFIT_FRACTION:.0%} of the fit, or with --refit")
    return model.condition(new), ""


def model_for(table, metric: str, *, store_path: Path | None, model_path: str | None,
              say: Callable[[str], None], steps: int | None = None, seed: int = 0, refit: bool = False):
    """Load ``model_path``; else the cached model of this store's data (conditioned on what was
    added since it was fitted, see the module docs); else fit one and cache it."""
    from metasel.surrogate import BayesianSurrogate

    if model_path:
        model = BayesianSurrogate.load(model_path)
        if model.metric != metric:
            raise InputDataError(f"{model_path}: models {model.metric!r}, but {metric!r} is needed")
        say(f"model: loaded {model_path}")
        return model
    digest = table.content_hash()
    cache_dir = _cache_dir(store_path)
    cached = cache_dir / f"{metric}-{digest}.metasel"
    why = "asked to (--refit)"
    if not refit:
        if cached.exists() and (model := _load(cached, say)) is not None:
            say(f"model: loaded {cached} (fitted earlier on this store's data)")
            return model
        model, why = _reuse(table, metric, cache_dir, say)
        if model is not None:
            return model
    from dataclasses import replace

    from metasel.errors import require
    from metasel.surrogate import TrainConfig

    require("jax", feature="fitting a model", extra="surrogate")
    long = table.long(metric)
    say(f"model: fitting {metric} on {len(long):,} cells ({why}; saved to {cached})")
    config = TrainConfig() if steps is None else replace(TrainConfig(), steps=steps)
    model = BayesianSurrogate(metric, config=config).fit(table, key=seed, progress=say)
    cache_dir.mkdir(parents=True, exist_ok=True)
    model.save(cached)
    ids = cached.with_suffix(".ids")
    _write_atomic(ids, "\n".join(sorted(table.observations["obs_id"])) + "\n")
    _write_atomic(cache_dir / f"{metric}-latest.json",
                  json.dumps({"model": cached.name, "ids": ids.name, "num_obs": len(table)}) + "\n")
    return model
