"""The collector: measure acceleration methods for real (torch + transformers).

Importing this package loads neither torch nor transformers; the backend is imported
in the measuring process.
"""

from metasel.bench.methods import REGISTRY, Method, register

__all__ = ["REGISTRY", "Method", "register"]
