"""The metasel error hierarchy.

Every error a user can cause (bad input, a missing optional dependency, a store
written by a newer metasel) derives from :class:`MetaselError`; the CLI turns one
into a single line on stderr and a non-zero exit.
"""

from __future__ import annotations


class MetaselError(Exception):
    """Root of every error metasel raises on purpose."""


class InputDataError(MetaselError, ValueError):
    """A table, spec or file that does not fit what metasel expects.

    The message says where (file, row, field path), what was expected and what came.
    """


class StoreError(MetaselError):
    """The store cannot be opened or written (wrong file, newer schema, locked)."""


class NotFittedError(MetaselError):
    """A model was asked to predict before it was fitted."""


class UnsupportedError(MetaselError):
    """A request that is valid but that this build or backend cannot serve."""


class MissingDependencyError(MetaselError, ImportError):
    """An optional dependency is not installed; the message says what to install."""


def require(module: str, *, feature: str, extra: str):
    """Import an optional dependency or raise :class:`MissingDependencyError`.

    Args:
        module: the module to import, e.g. ``"torch"``.
        feature: what needs it, e.g. ``"metasel collect"``.
        extra: the pip extra that brings it, e.g. ``"bench"``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{feature} needs {module.split('.')[0]}: pip install 'metasel[{extra}]' ({exc})"
        ) from exc
