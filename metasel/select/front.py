"""Two-objective fronts: which methods no other beats on both metrics, and the area they cover.

Used by ``suggest --pareto`` (the front of a context's predictions and measurements) and by
``evaluate --pareto`` (how much of a held-out context's measured front a predicted front reaches).
"""

from __future__ import annotations

import math
from typing import Sequence


def non_dominated(xs: Sequence[float], ys: Sequence[float], *, x_dir: str = "max", y_dir: str = "min") -> list[bool]:
    """Which points no other point beats on both coordinates (ties on both keep both; a
    non-finite coordinate is never on the front)."""
    sx = 1.0 if x_dir == "max" else -1.0
    sy = 1.0 if y_dir == "max" else -1.0
    pts = [(sx * x, sy * y) for x, y in zip(xs, ys)]
    ok = [math.isfinite(a) and math.isfinite(b) for a, b in pts]
    out = []
    for i, (a, b) in enumerate(pts):
        dominated = any(ok[j] and (c >= a and d >= b) and (c > a or d > b) for j, (c, d) in enumerate(pts) if j != i)
        out.append(ok[i] and not dominated)
    return out


def hypervolume(points: Sequence[tuple[float, float]], ref: tuple[float, float]) -> float:
    """The area dominated by ``points`` (both coordinates larger = better) and bounded below by
    ``ref``; points not strictly above ``ref`` on both coordinates add nothing."""
    pts = sorted(((x, y) for x, y in points if math.isfinite(x) and math.isfinite(y) and x > ref[0] and y > ref[1]),
                 key=lambda p: (-p[0], -p[1]))
    area, best_y = 0.0, ref[1]
    for x, y in pts:  # by decreasing x: each point adds the strip above the best y seen so far
        if y > best_y:
            area += (x - ref[0]) * (y - best_y)
            best_y = y
    return area
