"""Run cells and write each observation to the store as it arrives.

``collect`` is the whole job behind ``metasel collect``: plan the cells of a grid,
skip those already measured on this hardware, measure the rest locally (one worker
process per hardware profile) or on a Ray cluster, and append every observation in
its own transaction, so a killed run loses no finished observation and stores no
half one.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable

from metasel._schema import STATUSES
from metasel.bench.cells import Cell, plan
from metasel.bench.executors.local import run_local
from metasel.bench.executors.ray import run_ray
from metasel.bench.ledger import Ledger, interleave as interleave_runs


@dataclass
class Summary:
    """What a collection did."""

    done: int = 0
    skipped: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STATUSES})
    seconds: float = 0.0
    hardware: list[str] = field(default_factory=list)
    noisy: int = 0  # ok cells flagged noisy (a busy machine or disagreeing repeats)

    def line(self) -> str:
        failed = {k: v for k, v in self.by_status.items() if k != "ok" and v}
        fails = ", ".join(f"{k} {v}" for k, v in failed.items()) or "none"
        noisy = f", {self.noisy} of them noisy (--remeasure-noisy measures them again)" if self.noisy else ""
        return (f"collected {self.done} cells ({self.by_status['ok']} ok{noisy}; failed: {fails}), "
                f"skipped {self.skipped} already measured, in {_fmt_time(self.seconds)} "
                f"on {len(self.hardware)} hardware profile(s)")


def _fmt_time(s: float) -> str:
    if s != s or s == math.inf:
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """A tqdm bar over the cells on stderr (ETA from measured cells; skipped ones cost nothing),
    with one line per finished cell above it."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        from tqdm import tqdm

        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.bar = tqdm(total=total, disable=not enabled, file=self.stream, unit="cell", dynamic_ncols=True,
                        smoothing=0.0)

    def skip(self) -> None:
        self.bar.update(1)

    def update(self, cell: Cell, hardware_name: str, result: dict) -> None:
        if self.enabled:
            thr = result.get("throughput_tok_s")
            what = f"{thr:,.1f} tok/s" if result["status"] == "ok" and thr is not None else result.get("message", "")[:70]
            if result.get("flags"):
                what += f" [{result['message'][:90]}]"
            run = f" (round {cell.round + 1}/{cell.rounds})" if cell.round is not None else ""
            self.bar.write(f"{hardware_name} | {cell.task_name} | {cell.method}{run}: {result['status']} {what}",
                           file=self.stream)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# ---------------------------------------------------------------------------- the job


def collect(tasks: Iterable, store, *, methods=None, repeats: int = 3, threads: Iterable[int | None] = (None,),
            device: str = "cpu", ray: str | None = None, force: bool = False, timeout_s: float = 600.0,
            seed: int = 0, progress: bool = True, stream=None, remeasure_noisy: bool = False,
            interleave: bool = False) -> Summary:
    """Measure every (task, method) cell on each hardware profile and store each result.

    Args:
        tasks: :class:`~metasel.spec.TaskSpec` objects (e.g. ``grid.tasks``).
        store: an open :class:`~metasel.data.store.Store`.
        methods: method names (``None``: every registered method except the compiled ones).
        threads: one hardware profile per entry (``None``: all cores).
        ray: a Ray address, ``auto`` or ``local``; ``None`` runs here.
        force: measure cells again even if the store has them for this hardware.
        remeasure_noisy: measure again cells whose every observation here is flagged noisy.
        interleave: measure each task in ``repeats`` rounds of one run of every method, in an order
            shuffled per round (:mod:`metasel.bench.ledger`), instead of a cell's repeats back to back.
            Every round pays the method's set-up again (an engine's start), so it costs more.
    """
    from metasel.bench import methods as registry

    chosen = registry.resolve(methods)
    cells = plan(list(tasks), chosen, repeats=repeats, seed=seed)
    if interleave:
        cells = interleave_runs(cells, rounds=repeats, seed=seed)
    threads = list(threads)
    summary = Summary()
    bar = Progress(len(cells) * len(threads), enabled=progress, stream=stream)
    t0 = time.monotonic()

    try:
        for th in threads:
            ledger = Ledger(store, force=force, clean_only=remeasure_noisy, threads=th)

            def on_result(cell, result, hardware, versions, ledger=ledger):
                obs = ledger.record(cell, result, hardware, versions)
                bar.update(cell, hardware["name"], result)
                if obs is not None:
                    summary.done += 1
                    summary.by_status[obs["status"]] = summary.by_status.get(obs["status"], 0) + 1
                    summary.noisy += bool(obs.get("flags"))

            def on_skip(cell, hardware, ledger=ledger):
                summary.skipped += ledger.measured_before(cell, hardware)
                bar.skip()

            if not ray:
                warn_if_busy(th, say=lambda m: print(f"collect: warning: {m}", file=stream or sys.stderr, flush=True))
            if ray:
                hws = run_ray(cells, address=ray, threads=th, device=device, timeout_s=timeout_s,
                              wanted=ledger.wanted, on_result=on_result, on_skip=on_skip)
                summary.hardware += [h["hardware_id"] for h in hws]
            else:
                hw = run_local(cells, threads=th, device=device, timeout_s=timeout_s, wanted=ledger.wanted,
                               on_result=on_result, on_skip=on_skip)
                summary.hardware.append(hw["hardware_id"])
    finally:
        bar.close()
        summary.seconds = time.monotonic() - t0
    return summary


def warn_if_busy(threads: int | None, *, say, seconds: float = 1.0) -> str | None:
    """Say in one line when other processes keep this machine too busy for a ``threads``-thread
    measurement (sampled for ``seconds``); returns the reason, or None."""
    from metasel.bench.machine import busy_reason, sample

    why = busy_reason(sample(seconds), threads)
    if why:
        say(f"this machine is busy: {why}; what is measured now will be flagged noisy")
    return why
