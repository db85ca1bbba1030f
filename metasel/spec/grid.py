"""Grid specs: a cartesian product of task-spec axes minus exclusions, and how to run it.

Example (``datasets/cpu-v1/grid.yaml``)::

    name: cpu-v1
    base: {model: {preset: llama-5m}, workload: {prompt_len: 32, output_len: 16}}
    axes: {model.preset: [llama-5m, gpt2-5m], workload.batch_size: [1, 4]}
    exclude: [{model.preset: gpt2-5m, workload.batch_size: 4}]
    methods: [sdpa, int8_dynamic]
    repeats: 3          # measured runs per cell (default 3)
    timeout_s: 600      # per cell
    interleave: false   # true: the repeats run in rounds of every method, shuffled per round
"""

from __future__ import annotations

import copy
import math
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from metasel._check import Checker, preview
from metasel.spec.task import TOP_KEYS, TaskSpec, parse_task_spec, read_yaml


#: the most tasks one grid may expand to (checked before expanding it)
MAX_GRID_TASKS = 10_000


@dataclass(frozen=True)
class GridSpec:
    """A grid of tasks (cartesian product of axes minus exclusions) and how to run it."""

    name: str
    tasks: tuple[TaskSpec, ...]
    methods: tuple[str, ...] | None = None
    repeats: int | None = None
    timeout_s: float | None = None
    #: repeats in rounds of every method, shuffled per round (``collect --interleave``)
    interleave: bool = False


def _get_path(d: Any, dotted: str) -> Any:
    cur = d
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _set_path(d: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = d
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = copy.deepcopy(value)


_MISSING = object()


def parse_grid_spec(raw: Any, *, source: str | None = None) -> GridSpec:
    """Expand a grid spec mapping into its tasks (see module docs for the format)."""
    c = Checker(source)
    raw = c.mapping(raw, "(top level)")
    c.known_keys(raw, "", ("name", "base", "axes", "exclude", "methods", "repeats", "timeout_s",
                          "interleave"))
    interleave = raw.get("interleave", False)
    if not isinstance(interleave, bool):
        c.fail("interleave", "true or false", interleave)
    base = dict(c.mapping(raw.get("base", {}) or {}, "base"))
    axes = c.mapping(raw.get("axes", {}) or {}, "axes")
    names, values = [], []
    for axis, options in axes.items():
        if not isinstance(options, list) or not options:
            c.fail(f"axes.{axis}", "a non-empty list of values", options)
        if axis.split(".")[0] not in TOP_KEYS:
            c.fail(f"axes.{axis}", f"a dotted path under one of {list(TOP_KEYS)}", axis)
        names.append(axis)
        values.append(options)
    exclude = raw.get("exclude", []) or []
    if not isinstance(exclude, list):
        c.fail("exclude", "a list of mappings", exclude)
    for i, rule in enumerate(exclude):
        c.mapping(rule, f"exclude[{i}]")
        if not rule:
            c.fail(f"exclude[{i}]", "a non-empty mapping of dotted path: value", rule)
    size = math.prod(len(v) for v in values)
    if size > MAX_GRID_TASKS:
        c.fail("axes", f"at most {MAX_GRID_TASKS:,} combinations (split the grid)",
               " x ".join(str(len(v)) for v in values) + f" = {size:,}", show_got=True)
    tasks: dict[str, TaskSpec] = {}
    for combo in itertools.product(*values) if names else [()]:
        task_raw = copy.deepcopy(base)
        for axis, value in zip(names, combo):
            _set_path(task_raw, axis, value)
        if any(all(_get_path(task_raw, k) == v for k, v in rule.items()) for rule in exclude):
            continue
        label = ", ".join(f"{a}={preview(v)}" for a, v in zip(names, combo)) or "base"
        spec = parse_task_spec(task_raw, source=f"{source or 'grid'} [{label}]")
        if "name" not in task_raw:
            spec = _renamed(spec)
        tasks.setdefault(spec.task_id, spec)
    if not tasks:
        c.fail("axes", "at least one task after exclusions", "none", show_got=False)
    methods = raw.get("methods")
    if methods is not None:
        if not isinstance(methods, list) or not methods:
            c.fail("methods", "a non-empty list of method names", methods)
        methods = tuple(c.string(m, f"methods[{i}]") for i, m in enumerate(methods))
    repeats = None if raw.get("repeats") is None else c.integer(raw["repeats"], "repeats", minimum=1)
    timeout = None if raw.get("timeout_s") is None else c.number(
        raw["timeout_s"], "timeout_s", minimum=0, strict_min=True)
    name = c.string(raw.get("name", Path(source).stem if source else "grid"), "name")
    return GridSpec(name=name, tasks=tuple(tasks.values()), methods=methods, repeats=repeats,
                    timeout_s=timeout, interleave=interleave)


def _renamed(spec: TaskSpec) -> TaskSpec:
    from dataclasses import replace

    w, m = spec.workload, spec.model
    name = (f"{m.name or f'{m.arch}-h{m.hidden}l{m.layers}'}-p{w.prompt_len.upper()}-o{w.output_len}"
            f"-b{w.batch_size}-s{int(round(w.shared_prefix * 100))}")
    process = w.arrival.get("process", "burst")
    if process in ("poisson", "constant"):
        name += f"-{process}{w.arrival['rate']:g}"
    elif process == "concurrency":
        name += f"-c{w.arrival['clients']}"
    return replace(spec, name=name)


def load_grid_spec(path: str | Path) -> GridSpec:
    """Read, validate and expand a grid spec YAML file."""
    return parse_grid_spec(read_yaml(path), source=str(path))
