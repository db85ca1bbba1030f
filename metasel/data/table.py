"""The performance table: observations plus task, method and hardware descriptors.

Tidy schema (one row per measured cell, failures included)::

    observations: obs_id, task_id, method, hardware_id,
                  throughput_tok_s, total_tok_s, ttft_ms, tpot_ms, latency_ms, peak_mem_mb, setup_s, value,
                  repeats, spread, status, message, timestamp, versions, seed, source, flags
    tasks:        task_id, name, spec (JSON), features (JSON)
    methods:      method, techniques (JSON: technique -> number), description
    hardware:     hardware_id, name, specs (JSON), price_per_hour

A missing metric is NaN ("not measured"). ``spread`` is the relative spread (std /
median) of the repeats. A table is validated when it is built and never changed in
place: every method returns a new table or a new frame.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from metasel._schema import (
    DIRECTIONS, HARDWARE_COLUMNS, KEY_COLUMNS, METHOD_COLUMNS, METRIC_NAMES, METRICS,
    LATE_COLUMNS, NOISY, OBS_COLUMNS, STATUSES, TASK_COLUMNS,
)
from metasel.errors import InputDataError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces; the form in which descriptors are compared."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


_MEASUREMENT_TEMPLATES: dict[str, "PerfTable"] = {}  # metric -> a validated one-row table (PerfTable.measurement)


#: the weight of a cell measured only on a busy machine (or with disagreeing repeats) in a fit
NOISY_WEIGHT = 0.25


def observation_id(row: Mapping[str, Any]) -> str:
    """Stable id of an observation: a hash of everything it records."""
    parts = []
    for col in OBS_COLUMNS:
        if col == "obs_id":
            continue
        v = row.get(col)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            v = None
        elif isinstance(v, float):
            v = repr(float(v))
        elif hasattr(v, "item"):
            v = v.item()
        if col in LATE_COLUMNS:
            if v is not None and v != "":
                parts.append([col, v])
            continue
        parts.append(v)
    blob = json.dumps(parts, separators=(",", ":"), default=str)
    return "o-" + hashlib.sha256(blob.encode()).hexdigest()[:20]


class PerfTable:
    """Observations of (task, method, hardware) cells and the descriptors of each.

    Args:
        observations: a DataFrame or a list of dicts with at least ``task_id``, ``method``,
            ``hardware_id``, and metric columns.
        tasks, methods, hardware: descriptor frames; ids that observations use but the
            descriptors lack get an empty descriptor.
        directions: direction of metrics whose direction is not fixed (``value``).
        source: named in error messages.

    Raises:
        InputDataError: on unknown status, a negative or infinite metric, an ``ok`` row
            without any metric, missing key columns or values, or one id with two
            different descriptors.
    """

    def __init__(
        self,
        observations: "pd.DataFrame | Iterable[Mapping[str, Any]]",
        tasks: "pd.DataFrame | Iterable[Mapping[str, Any]] | None" = None,
        methods: "pd.DataFrame | Iterable[Mapping[str, Any]] | None" = None,
        hardware: "pd.DataFrame | Iterable[Mapping[str, Any]] | None" = None,
        *,
        directions: Mapping[str, str] | None = None,
        source: str | None = None,
    ):
        import pandas as pd

        self._source = source or "table"
        obs = _frame(observations, "observations", self._source)
        self.observations = self._normalise_observations(obs)
        self.tasks = self._descriptors(tasks, TASK_COLUMNS, "tasks",
                                       self.observations["task_id"], defaults={"spec": "{}", "features": "{}"},
                                       json_cols=("spec", "features"))
        self.methods = self._descriptors(methods, METHOD_COLUMNS, "methods",
                                         self.observations["method"], defaults={"techniques": "{}", "description": ""},
                                         json_cols=("techniques",))
        self.hardware = self._descriptors(hardware, HARDWARE_COLUMNS, "hardware",
                                          self.observations["hardware_id"], defaults={"specs": "{}"},
                                          json_cols=("specs",))
        self.directions = dict(directions or {})
        for metric, direction in self.directions.items():
            if metric not in METRICS:
                raise InputDataError(f"{self._source}: directions: unknown metric {metric!r}; expected one of {list(METRICS)}")
            if direction not in DIRECTIONS:
                raise InputDataError(f"{self._source}: directions.{metric}: expected 'min' or 'max', got {direction!r}")
            fixed = METRICS[metric][0]
            if fixed is not None and fixed != direction:
                raise InputDataError(f"{self._source}: directions.{metric}: {metric} is always {fixed!r}, got {direction!r}")
        del pd

    # ------------------------------------------------------------------ building

    def _where(self, frame: str, row: int | None = None, col: str | None = None) -> str:
        loc = f"{self._source}: {frame}"
        if row is not None:
            loc += f" row {row + 1}"
        if col is not None:
            loc += f", column {col!r}"
        return loc

    def _normalise_observations(self, obs: "pd.DataFrame") -> "pd.DataFrame":
        """Validated observations in store order and kinds; every failure says row, column and value."""
        import pandas as pd

        unknown = [c for c in obs.columns if c not in OBS_COLUMNS]
        if unknown:
            raise InputDataError(f"{self._where('observations')}: unknown column {unknown[0]!r}; expected columns among {list(OBS_COLUMNS)}")
        missing = [c for c in KEY_COLUMNS if c not in obs.columns]
        if missing:
            raise InputDataError(f"{self._where('observations')}: missing column {missing[0]!r} (required: {list(KEY_COLUMNS)})")
        obs = obs.reset_index(drop=True)
        out = pd.DataFrame(index=pd.RangeIndex(len(obs)))
        self._keys_and_metrics(obs, out)
        self._status(obs, out)
        self._counts(obs, out)
        for col, default in (("message", ""), ("source", ""), ("flags", "")):
            out[col] = obs[col].fillna(default).astype(str) if col in obs else default
        out["machine"] = (obs["machine"].map(lambda v: v if isinstance(v, str) else
                                             canonical_json(v) if isinstance(v, dict) and v else "")
                          if "machine" in obs else "")
        out["timestamp"] = obs["timestamp"].fillna("").astype(str) if "timestamp" in obs else ""
        out["versions"] = (obs["versions"].map(lambda v: canonical_json(v if v is not None and v == v else {}))
                           if "versions" in obs else "{}")
        if "obs_id" in obs and obs["obs_id"].notna().all():
            out["obs_id"] = obs["obs_id"].astype(str).to_numpy()
        else:
            given = obs["obs_id"] if "obs_id" in obs else pd.Series([None] * len(obs))
            records = out.to_dict("records")
            out["obs_id"] = [g if isinstance(g, str) and g else observation_id(r) for g, r in zip(given, records)]
        out = out[list(OBS_COLUMNS)]
        dup = out["obs_id"].duplicated()
        return out[~dup].reset_index(drop=True) if dup.any() else out

    def _first_bad(self, bad, col: str, what: str) -> None:
        """Raise for the first row where ``bad`` holds: '<where>: expected <what>, got <value>'."""
        import numpy as np

        if bad.any():
            i = int(np.flatnonzero(np.asarray(bad))[0])
            raise InputDataError(f"{self._where('observations', i, col)}: expected {what}")

    def _keys_and_metrics(self, obs: "pd.DataFrame", out: "pd.DataFrame") -> None:
        import numpy as np
        import pandas as pd

        for col in KEY_COLUMNS:
            values = obs[col]
            self._first_bad((values.isna() | (values.astype(str).str.strip() == "")).to_numpy(), col,
                            "a non-empty id, got an empty cell")
            out[col] = values.astype(str)
        for metric in METRIC_NAMES:
            if metric not in obs.columns:
                out[metric] = np.nan
                continue
            raw = obs[metric]
            vals = pd.to_numeric(raw, errors="coerce")
            bad = (vals.isna() & raw.notna() & (raw.astype(str).str.strip() != "")).to_numpy()
            if bad.any():
                self._first_bad(bad, metric, f"a number, got {raw.iloc[int(np.flatnonzero(bad)[0])]!r}")
            out[metric] = vals.astype(float)

    def _status(self, obs: "pd.DataFrame", out: "pd.DataFrame") -> None:
        """Statuses, and the rule that an 'ok' row has at least one metric, each finite and non-negative."""
        import numpy as np
        import pandas as pd

        status = obs["status"].fillna("ok").astype(str) if "status" in obs else pd.Series(["ok"] * len(obs))
        bad = ~status.isin(STATUSES)
        if bad.any():
            self._first_bad(bad.to_numpy(), "status", f"one of {list(STATUSES)}, got {status[bad].iloc[0]!r}")
        out["status"] = status
        m = out[list(METRIC_NAMES)].to_numpy(dtype=float)
        ok = (status == "ok").to_numpy()
        with np.errstate(invalid="ignore"):
            bad_rows = ok & (np.isinf(m) | (m < 0)).any(axis=1)
        if bad_rows.any():
            i = int(np.flatnonzero(bad_rows)[0])
            j = int(np.flatnonzero(np.isinf(m[i]) | (m[i] < 0))[0])
            raise InputDataError(f"{self._where('observations', i, METRIC_NAMES[j])}: expected a finite non-negative number on an 'ok' row, got {float(m[i, j])!r}")
        empty = ok & np.isnan(m).all(axis=1)
        if empty.any():
            i = int(np.flatnonzero(empty)[0])
            raise InputDataError(f"{self._where('observations', i)}: an 'ok' row needs at least one metric, got none")

    def _counts(self, obs: "pd.DataFrame", out: "pd.DataFrame") -> None:
        """``repeats`` (positive integers, default 1), ``spread`` (finite, non-negative), ``seed`` (integers)."""
        import numpy as np
        import pandas as pd

        if "repeats" in obs:
            rep = pd.to_numeric(obs["repeats"], errors="coerce")
            bad = (rep.isna() & obs["repeats"].notna()) | (rep.notna() & ((rep < 1) | (rep != rep.round())))
            if bad.any():
                self._first_bad(bad.to_numpy(), "repeats", f"a positive integer, got {obs['repeats'][bad].iloc[0]!r}")
            out["repeats"] = rep.fillna(1).astype("int64")
        else:
            out["repeats"] = np.ones(len(obs), dtype="int64")
        if "spread" in obs:
            spread = pd.to_numeric(obs["spread"], errors="coerce").astype(float)
            bad = spread.notna() & ((spread < 0) | np.isinf(spread))
            if bad.any():
                self._first_bad(bad.to_numpy(), "spread", f"a finite non-negative number, got {float(spread[bad].iloc[0])!r}")
            out["spread"] = spread
        else:
            out["spread"] = np.nan
        if "seed" in obs:
            seed = pd.to_numeric(obs["seed"], errors="coerce")
            bad = seed.isna() & obs["seed"].notna()
            if bad.any():
                self._first_bad(bad.to_numpy(), "seed", f"an integer, got {obs['seed'][bad].iloc[0]!r}")
            out["seed"] = seed.astype("Int64")
        else:
            out["seed"] = pd.array([pd.NA] * len(obs), dtype="Int64")

    def _descriptors(self, given, columns, name, used_ids, *, defaults, json_cols):
        import pandas as pd

        key = columns[0]
        frame = _frame(given, name, self._source) if given is not None else pd.DataFrame(columns=list(columns))
        unknown = [c for c in frame.columns if c not in columns]
        if unknown:
            raise InputDataError(f"{self._where(name)}: unknown column {unknown[0]!r}; expected columns among {list(columns)}")
        if key not in frame.columns:
            raise InputDataError(f"{self._where(name)}: missing column {key!r}")
        frame = frame.reset_index(drop=True).copy()
        bad = frame[key].isna() | (frame[key].astype(str).str.strip() == "")
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise InputDataError(f"{self._where(name, i, key)}: expected a non-empty id, got an empty cell")
        frame[key] = frame[key].astype(str)
        for col in columns[1:]:
            if col not in frame.columns:
                frame[col] = defaults.get(col, None)
        for col in json_cols:
            try:
                frame[col] = frame[col].map(lambda v: canonical_json(v if v is not None and v == v else {}))
            except (TypeError, ValueError) as exc:
                raise InputDataError(f"{self._where(name, None, col)}: expected JSON objects ({exc})") from exc
            not_object = ~frame[col].str.startswith("{")
            if not_object.any():
                i = int(not_object.to_numpy().nonzero()[0][0])
                raise InputDataError(f"{self._where(name, i, col)}: expected a JSON object, got "
                                     f"{frame[col].iloc[i][:60]}")
        if "name" in columns:
            frame["name"] = [n if isinstance(n, str) and n else k for n, k in zip(frame["name"], frame[key])]
        if "description" in columns:
            frame["description"] = frame["description"].fillna("").astype(str)
        if "price_per_hour" in columns:
            price = pd.to_numeric(frame["price_per_hour"], errors="coerce").astype(float)
            bad = price.notna() & ((price < 0) | price.isin([float("inf")]))
            if bad.any():
                i = int(bad.to_numpy().nonzero()[0][0])
                raise InputDataError(f"{self._where(name, i, 'price_per_hour')}: expected a finite non-negative number, got {float(price.iloc[i])!r}")
            frame["price_per_hour"] = price
        frame = frame[list(columns)].drop_duplicates()
        dup = frame[key].duplicated(keep=False)
        if dup.any():
            the_id = frame.loc[dup, key].iloc[0]
            raise InputDataError(f"{self._where(name)}: {key} {the_id!r} has two different descriptors")
        missing = sorted(set(used_ids) - set(frame[key]))
        if missing:
            extra = pd.DataFrame({key: missing})
            for col in columns[1:]:
                extra[col] = [defaults.get(col, None) if col != "name" else m for m in missing]
            if "price_per_hour" in columns:
                extra["price_per_hour"] = float("nan")
            frame = pd.concat([frame, extra[list(columns)]], ignore_index=True)
        return frame.sort_values(key).reset_index(drop=True)

    # ------------------------------------------------------------------ basics

    def __len__(self) -> int:
        return len(self.observations)

    def __repr__(self) -> str:
        return (f"PerfTable({len(self)} observations, {self.tasks.shape[0]} tasks, "
                f"{self.methods.shape[0]} methods, {self.hardware.shape[0]} hardware)")

    def direction(self, metric: str) -> str:
        """``'min'`` or ``'max'`` for ``metric``."""
        if metric not in METRICS:
            raise InputDataError(f"unknown metric {metric!r}; expected one of {list(METRICS)}")
        fixed = METRICS[metric][0]
        if fixed is not None:
            return fixed
        if metric not in self.directions:
            raise InputDataError(f"{self._source}: the direction of {metric!r} is not recorded; import with --objective min|max")
        return self.directions[metric]

    def with_observations(self, observations: "pd.DataFrame") -> "PerfTable":
        """A table with other observations and the same descriptors."""
        return PerfTable(observations, self.tasks, self.methods, self.hardware,
                         directions=self.directions, source=self._source)

    @classmethod
    def measurement(cls, task_id: str, method: str, hardware_id: str, metric: str, value: float, *,
                    source: str = "table") -> "PerfTable":
        """A table of one ``ok`` measurement with placeholder descriptors — what an active loop
        tells its surrogate after each benchmark. The same table the constructor builds from
        that one row, in a fraction of the time (a copy of a validated template, re-keyed)."""
        if metric not in METRICS:
            raise InputDataError(f"{source}: unknown metric {metric!r}; expected one of {list(METRICS)}")
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InputDataError(f"{source}: {metric}: expected a finite non-negative number, got {value!r}")
        template = _MEASUREMENT_TEMPLATES.get(metric)
        if template is None:
            template = _MEASUREMENT_TEMPLATES[metric] = cls(
                [{"task_id": "t", "method": "m", "hardware_id": "h", metric: 1.0}], source="template")
        obs = template.observations.copy()
        obs.loc[0, ["task_id", "method", "hardware_id"]] = [str(task_id), str(method), str(hardware_id)]
        obs.loc[0, metric] = float(value)
        obs.loc[0, "obs_id"] = observation_id(obs.iloc[0].to_dict())
        descriptors = {}
        for attr, key, new in (("tasks", "task_id", task_id), ("methods", "method", method),
                               ("hardware", "hardware_id", hardware_id)):
            frame = getattr(template, attr).copy()
            frame.loc[0, key] = str(new)
            if "name" in frame.columns:
                frame.loc[0, "name"] = str(new)
            descriptors[attr] = frame
        return template._validated(obs, source=source, directions={}, **descriptors)

    def subset(self, keep) -> "PerfTable":
        """The table with only the observations where the boolean array ``keep`` holds, and the
        same descriptors. The rows are this table's, already validated: nothing is re-checked
        (an evaluation takes thousands of such subsets)."""
        import numpy as np

        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (len(self.observations),):
            raise InputDataError(f"{self._source}: subset: expected one boolean per observation "
                                 f"({len(self.observations)}), got shape {keep.shape}")
        return self._validated(self.observations[keep].reset_index(drop=True))

    def _validated(self, observations: "pd.DataFrame", **changes) -> "PerfTable":
        """This table with other, already validated observations (and other attributes in
        ``changes``: descriptors, ``source``, ``directions``), without re-checking anything."""
        out = object.__new__(PerfTable)
        out.__dict__.update(self.__dict__)
        out.observations, out.directions = observations, dict(self.directions)
        for name, value in changes.items():
            setattr(out, "_source" if name == "source" else name, value)
        return out

    def filter(self, *, tasks: Iterable[str] | None = None, methods: Iterable[str] | None = None,
               hardware: Iterable[str] | None = None, statuses: Iterable[str] | None = None,
               exclude_flags: Iterable[str] = ()) -> "PerfTable":
        """A table restricted to the given ids (descriptors of the dropped ids dropped too)."""
        obs = self.observations
        mask = obs["task_id"].notna()
        if tasks is not None:
            mask &= obs["task_id"].isin(set(tasks))
        if methods is not None:
            mask &= obs["method"].isin(set(methods))
        if hardware is not None:
            mask &= obs["hardware_id"].isin(set(hardware))
        if statuses is not None:
            mask &= obs["status"].isin(set(statuses))
        for flag in exclude_flags:
            mask &= ~obs["flags"].str.contains(flag, regex=False)
        kept = obs[mask].reset_index(drop=True)
        return PerfTable(
            kept,
            self.tasks[self.tasks["task_id"].isin(set(kept["task_id"]))],
            self.methods[self.methods["method"].isin(set(kept["method"]))],
            self.hardware[self.hardware["hardware_id"].isin(set(kept["hardware_id"]))],
            directions=self.directions, source=self._source,
        )

    @staticmethod
    def concat(tables: Iterable["PerfTable"]) -> "PerfTable":
        """One table from many; an observation present in several is kept once."""
        import pandas as pd

        tables = list(tables)
        if not tables:
            raise InputDataError("concat: expected at least one table")
        directions: dict[str, str] = {}
        for t in tables:
            for k, v in t.directions.items():
                if directions.setdefault(k, v) != v:
                    raise InputDataError(f"concat: metric {k!r} is {directions[k]!r} in one table and {v!r} in another")
        def cat(frames):
            return pd.concat(frames, ignore_index=True).drop_duplicates()

        return PerfTable(
            cat([t.observations for t in tables]),
            _drop_placeholder(cat([t.tasks for t in tables]), "task_id", "spec"),
            _drop_placeholder(cat([t.methods for t in tables]), "method", "techniques"),
            _drop_placeholder(cat([t.hardware for t in tables]), "hardware_id", "specs"),
            directions=directions, source=tables[0]._source,
        )

    # ------------------------------------------------------------------ views

    def long(self, metric: str, *, statuses: Iterable[str] = ("ok",), hardware_id: str | None = None,
             exclude_flags: Iterable[str] = ()) -> "pd.DataFrame":
        """One metric in long form, repeated observations of a cell averaged (median).

        An observation flagged ``noisy`` (measured on a busy machine, or with disagreeing
        repeats: :mod:`metasel.bench.machine`) counts only when its cell has no clean one;
        such a cell's ``weight`` is :data:`NOISY_WEIGHT` (the learners down-weight it), every
        other cell's 1.

        Returns:
            A frame with columns ``task_id, method, hardware_id, value, num_obs, weight``.
        """
        if metric not in METRICS:
            raise InputDataError(f"unknown metric {metric!r}; expected one of {list(METRICS)}")
        obs = self.observations
        mask = obs["status"].isin(set(statuses)) & obs[metric].notna()
        if hardware_id is not None:
            mask &= obs["hardware_id"] == hardware_id
        for flag in exclude_flags:
            mask &= ~obs["flags"].str.contains(flag, regex=False)
        sub = obs.loc[mask, [*KEY_COLUMNS, metric, "flags"]]
        noisy = sub["flags"].str.contains(NOISY, regex=False)
        if not noisy.any():
            out = (sub.groupby(list(KEY_COLUMNS), sort=True)[metric]
                   .agg(value="median", num_obs="size").reset_index())
            out["weight"] = 1.0
            return out
        sub = sub.assign(clean=~noisy)
        has_clean = sub.groupby(list(KEY_COLUMNS), sort=False)["clean"].transform("any")
        sub = sub[sub["clean"] | ~has_clean]  # a clean measurement of a cell supersedes its noisy ones
        out = (sub.groupby(list(KEY_COLUMNS), sort=True)
               .agg(value=(metric, "median"), num_obs=(metric, "size"), clean=("clean", "any")).reset_index())
        out["weight"] = out.pop("clean").map({True: 1.0, False: NOISY_WEIGHT}).astype(float)
        return out

    def matrix(self, metric: str, hardware_id: str, **kw) -> "pd.DataFrame":
        """One metric as a (num_tasks, num_methods) frame for one hardware (NaN = unobserved)."""
        if hardware_id not in set(self.hardware["hardware_id"]):
            raise InputDataError(f"unknown hardware_id {hardware_id!r}; the table has {sorted(self.hardware['hardware_id'])[:5]}…")
        long = self.long(metric, hardware_id=hardware_id, **kw)
        return long.pivot(index="task_id", columns="method", values="value")

    def coverage(self) -> dict[str, Any]:
        """Counts of the task × method × hardware cube and how much of it is observed."""
        obs = self.observations
        num_t, num_m, num_h = (obs["task_id"].nunique(), obs["method"].nunique(), obs["hardware_id"].nunique())
        cells = obs[list(KEY_COLUMNS)].drop_duplicates().shape[0]
        ok_cells = obs.loc[obs["status"] == "ok", list(KEY_COLUMNS)].drop_duplicates().shape[0]
        cube = num_t * num_m * num_h
        return {
            "observations": len(obs), "tasks": num_t, "methods": num_m, "hardware": num_h,
            "cells_observed": cells, "cells_ok": ok_cells, "cube": cube,
            "fraction_observed": cells / cube if cube else 0.0,
        }

    def status_counts(self) -> dict[str, int]:
        counts = self.observations["status"].value_counts()
        return {s: int(counts.get(s, 0)) for s in STATUSES}

    def best_methods(self, metric: str, *, min_methods: int = 2, exclude_flags: Iterable[str] = ()) -> "pd.DataFrame":
        """Best method per (task, hardware) among cells with at least ``min_methods`` ok methods.

        Returns:
            A frame with ``task_id, hardware_id, method, value, num_methods``.
        """
        direction = self.direction(metric)
        long = self.long(metric, exclude_flags=exclude_flags)
        if long.empty:
            return long.assign(num_methods=[]).drop(columns=["num_obs"])
        counts = long.groupby(["task_id", "hardware_id"])["method"].transform("size")
        long = long[counts >= min_methods].copy()
        long["num_methods"] = counts[counts >= min_methods]
        order = long.sort_values(["task_id", "hardware_id", "value", "method"],
                                 ascending=[True, True, direction == "min", True])
        best = order.groupby(["task_id", "hardware_id"], sort=True).head(1)
        return best[["task_id", "hardware_id", "method", "value", "num_methods"]].reset_index(drop=True)

    def task_specs(self) -> dict[str, dict]:
        return {t: json.loads(s) for t, s in zip(self.tasks["task_id"], self.tasks["spec"])}

    def content_hash(self) -> str:
        """A short hash of the observations this table holds (their ids, order-free): two tables
        with the same observations have the same hash, whatever their order."""
        return hashlib.sha256("\n".join(sorted(self.observations["obs_id"])).encode()).hexdigest()[:16]

    def task_groups(self, column: str) -> dict[str, str]:
        """task_id → group: a spec path such as ``model.hf_id`` / ``model.arch``, or a feature
        name (``"None"`` where a task has neither)."""
        out = {}
        for tid, spec, feats in zip(self.tasks["task_id"], self.tasks["spec"], self.tasks["features"]):
            cur: Any = json.loads(spec)
            for part in column.split("."):
                cur = cur.get(part) if isinstance(cur, dict) else None
            if cur is None:
                cur = json.loads(feats).get(column)
            if cur is None and column in ("model", "model.name"):
                m = json.loads(spec).get("model", {})
                cur = m.get("hf_id") or m.get("name") or json.dumps({k: m.get(k) for k in ("arch", "layers", "hidden")})
            out[tid] = str(cur)
        return out


def _frame(value, name: str, source: str) -> "pd.DataFrame":
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return value.copy()
    try:
        rows = list(value)
    except TypeError as exc:
        raise InputDataError(f"{source}: {name}: expected a DataFrame or a list of mappings, got {type(value).__name__}") from exc
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise InputDataError(f"{source}: {name} row {i + 1}: expected a mapping, got {type(r).__name__}")
    return pd.DataFrame(rows)


def _drop_placeholder(frame: "pd.DataFrame", key: str, json_col: str) -> "pd.DataFrame":
    """Where one id has a real descriptor and an empty placeholder, keep the real one."""
    dup = frame[key].duplicated(keep=False)
    placeholder = frame[json_col] == "{}"
    return frame[~(dup & placeholder)]


def descriptor_map(frame: "pd.DataFrame", key: str, *, real_only: bool = False) -> dict[str, dict]:
    """``id -> record`` of a descriptor frame (``tasks``, ``methods`` or ``hardware`` of a table),
    NaN fields as None; ``real_only`` skips placeholder rows (a descriptor with an empty spec)."""
    out = {}
    for rec in frame.to_dict("records"):
        rec = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}
        if real_only and rec.get({"task_id": "spec", "hardware_id": "specs", "method": "techniques"}[key]) == "{}":
            continue
        out[str(rec[key])] = rec
    return out
