"""The model ``suggest`` and ``tune`` use: a file, a cached fit of this store's data, or a new fit."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from metasel.errors import InputDataError


def model_for(table, metric: str, *, store_path: Path | None, model_path: str | None,
              say: Callable[[str], None], steps: int | None = None, seed: int = 0):
    """Load ``model_path``; else a cached model of this store's data; else fit one and cache it."""
    from metasel.surrogate import BayesianSurrogate

    if model_path:
        model = BayesianSurrogate.load(model_path)
        if model.metric != metric:
            raise InputDataError(f"{model_path}: models {model.metric!r}, but {metric!r} is needed")
        say(f"model: loaded {model_path}")
        return model
    digest = table.content_hash()
    cache_dir = (store_path.parent if store_path else Path(".")) / "models"
    cached = cache_dir / f"{metric}-{digest}.metasel"
    if cached.exists():
        try:
            model = BayesianSurrogate.load(cached)
        except InputDataError as exc:  # e.g. another model format: fit again below
            say(f"model: not using {cached} ({exc})")
        else:
            say(f"model: loaded {cached} (fitted earlier on this store's data)")
            return model
    from dataclasses import replace

    from metasel.errors import require
    from metasel.surrogate import TrainConfig

    require("jax", feature="fitting a model", extra="surrogate")
    say(f"model: no model of this store's data for {metric}; fitting one (saved to {cached})")
    config = TrainConfig() if steps is None else replace(TrainConfig(), steps=steps)
    model = BayesianSurrogate(metric, config=config).fit(table, key=seed)
    cache_dir.mkdir(parents=True, exist_ok=True)
    model.save(cached)
    return model
