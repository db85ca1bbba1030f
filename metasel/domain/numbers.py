"""Tolerant readers of numbers and JSON fields in descriptors (missing → NaN or {})."""

from __future__ import annotations

import json
import math
from typing import Any, Mapping


def num(x: Any, default: float = math.nan) -> float:
    """``x`` as a finite float, else ``default``."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def log_or_nan(x: float) -> float:
    return math.log(x) if x == x and x > 0 else math.nan


def as_dict(v: Any) -> dict:
    """A descriptor's JSON field (a mapping or its JSON text) as a dict; {} when absent or invalid."""
    if isinstance(v, Mapping):
        return dict(v)
    if isinstance(v, str) and v.strip():
        try:
            out = json.loads(v)
        except json.JSONDecodeError:
            return {}
        return out if isinstance(out, dict) else {}
    return {}
