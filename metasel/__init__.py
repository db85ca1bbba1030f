"""metasel: pick the fastest way to serve a model on a machine without benchmarking every option.

The public API is re-exported lazily: ``import metasel`` loads neither torch, jax nor
pandas; each name is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "PerfTable": "metasel.data.table",
    "Store": "metasel.data.store",
    "export_table": "metasel.data.store",
    "read_export": "metasel.data.store",
    "TaskSpec": "metasel.spec",
    "GridSpec": "metasel.spec",
    "load_task_spec": "metasel.spec",
    "load_grid_spec": "metasel.spec",
    "parse_task_spec": "metasel.spec",
    "read_generic_csv": "metasel.data.importers",
    "read_llm_inference_bench": "metasel.data.importers",
    "Surrogate": "metasel.surrogate",
    "Posterior": "metasel.surrogate",
    "BayesianSurrogate": "metasel.surrogate",
    "GBMSurrogate": "metasel.surrogate",
    "Selector": "metasel.select",
    "Backend": "metasel.select",
    "MetaselError": "metasel.errors",
    "InputDataError": "metasel.errors",
    "StoreError": "metasel.errors",
    "MissingDependencyError": "metasel.errors",
    "NotFittedError": "metasel.errors",
    "UnsupportedError": "metasel.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'metasel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
