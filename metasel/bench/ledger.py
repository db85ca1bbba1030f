"""What a collection still has to measure, and how each run becomes an observation.

A cell's repeats normally run back to back in one call and come back as one observation.
With interleaved repeats (``collect --interleave``) a task is measured in rounds: each round
runs every method of the task once, in an order shuffled per round, so a slow drift of the
machine (thermal state, a neighbour) spreads over all methods instead of deciding near-ties
between the methods measured early and late. Each round's result is kept in the store as it
arrives (a killed collection resumes with the rounds it finished); the cell's observation is
made from its rounds with the last one: the median of each metric, the spread of the
throughput over the rounds, the busiest machine state seen. A method that fails in a round
fails the cell there (its later rounds are not run).
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import replace

from metasel.bench.cells import MEASURED_METRICS, Cell, observation_table


def interleave(cells: list[Cell], *, rounds: int, seed: int = 0) -> list[Cell]:
    """The runs of interleaved repeats: per task (in the cells' order), ``rounds`` rounds of one
    run of each of its methods, shuffled per round by (seed, task, round)."""
    by_task: dict[str, list[Cell]] = {}
    for c in cells:
        by_task.setdefault(c.task_id, []).append(c)
    runs = []
    for task_id, group in by_task.items():
        for r in range(rounds):
            order = list(group)
            random.Random(f"{seed}|{task_id}|{r}").shuffle(order)
            runs += [replace(c, repeats=1, round=r, rounds=rounds) for c in order]
    return runs


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _machine(states: list[dict]) -> dict:
    """One machine record for a cell measured in rounds: the busiest round decides."""
    states = [s for s in states if s]
    if not states:
        return {}
    out = dict(max(states, key=lambda s: s.get("other_cores", 0.0)))
    for k in ("steal", "load1"):
        vals = [s[k] for s in states if _finite(s.get(k))]
        if vals:
            out[k] = max(vals)
    out["seconds"] = round(sum(s.get("seconds") or 0.0 for s in states), 2)
    return out


def combine(runs: dict[int, dict], *, threads: int | None) -> dict:
    """The observation's fields from a cell's rounds (all ``ok``): per metric the median over
    the rounds (NaN where a round has none), ``spread`` the coefficient of variation of the
    throughput over the rounds, and the quality flags of the whole."""
    from metasel.bench.machine import quality_flags

    ordered = [runs[r] for r in sorted(runs)]
    out: dict = {"status": "ok", "repeats": len(ordered), "seed": ordered[0].get("seed"),
                 "versions": {k: v for r in ordered for k, v in (r.get("versions") or {}).items()}}
    for m in MEASURED_METRICS:
        vals = [r.get(m) for r in ordered]
        out[m] = statistics.median(vals) if all(_finite(v) for v in vals) else math.nan
    thr = [r.get("throughput_tok_s") for r in ordered]
    out["spread"] = (statistics.pstdev(thr) / statistics.median(thr)
                     if len(thr) > 1 and all(_finite(v) for v in thr) and statistics.median(thr) > 0 else 0.0)
    machine = _machine([r.get("machine") or {} for r in ordered])
    if machine:
        out["machine"] = machine
    out["message"] = f"{len(ordered)} interleaved rounds"
    flags, why = quality_flags(out, threads)
    if flags:
        out["flags"] = flags
        out["message"] = f"{flags}: {why} ({out['message']})"
    return out


class Ledger:
    """Which runs a collection still has to make on each hardware profile, and where each
    result goes: straight into an observation, or (interleaved) into the store's rounds until
    the cell's last round makes its observation.

    Args:
        store: the open store observations and rounds are written to.
        force: measure cells again even where the store has an observation of them.
        clean_only: a cell counts as measured only with an observation not flagged noisy.
        threads: the profile's thread count (the busy-machine rule of a combined cell).
    """

    def __init__(self, store, *, force: bool = False, clean_only: bool = False, threads: int | None = None):
        self.store, self.force, self.clean_only, self.threads = store, force, clean_only, threads
        self._before: dict[str, set] = {}  # hardware id -> cells measured before this collection
        self._done: dict[str, set] = {}  # ... and since
        self._rounds: dict[str, dict] = {}  # hardware id -> {(task, method, seed): {round: result}}

    def _load(self, hid: str) -> None:
        if hid not in self._done:
            before = set() if self.force else self.store.measured_cells(hid, clean_only=self.clean_only)
            self._before[hid], self._done[hid] = set(before), set(before)
            self._rounds[hid] = self.store.open_rounds(hid)

    def wanted(self, cell: Cell, hardware: dict) -> bool:
        """Whether this run is still to be made (checked right before it is)."""
        hid = hardware["hardware_id"]
        self._load(hid)
        if cell.key in self._done[hid]:
            return False
        return cell.round is None or cell.round not in self._rounds[hid].get((*cell.key, cell.seed), {})

    def measured_before(self, cell: Cell, hardware: dict) -> bool:
        """A skipped run of a cell this collection found measured (counted once per cell)."""
        hid = hardware["hardware_id"]
        self._load(hid)
        return cell.round in (None, 0) and cell.key in self._before[hid]

    def record(self, cell: Cell, result: dict, hardware: dict, versions: dict) -> dict | None:
        """Store what a run measured; returns the cell's observation fields when it made one
        (always for a cell measured at once; for an interleaved one at its last round or its
        first failure), else None."""
        hid = hardware["hardware_id"]
        self._load(hid)
        if cell.round is None:
            self.store.append(observation_table(cell, result, hardware, versions))
            self._done[hid].add(cell.key)
            return result
        if cell.key in self._done[hid]:  # a late round of a cell already decided (a parallel node's)
            return None
        key = (*cell.key, cell.seed)
        self.store.add_round(hid, cell.task_id, cell.method, cell.seed, cell.round, result)
        got = self._rounds[hid].setdefault(key, {})
        got[cell.round] = result
        if result.get("status") != "ok":
            obs = {**result, "message": f"round {cell.round + 1} of {cell.rounds}: {result.get('message', '')}"}
        elif len(got) >= cell.rounds:
            obs = combine(got, threads=self.threads)
        else:
            return None
        self.store.append(observation_table(replace(cell, repeats=cell.rounds), obs, hardware, versions),
                          consume_rounds=(hid, cell.task_id, cell.method, cell.seed))
        self._done[hid].add(cell.key)
        del self._rounds[hid][key]
        return obs
