"""The machine's state around a measurement: was anything else running, how loaded was it.

A benchmark taken while other processes compete for the CPU is not a measurement of the
method: two runs of one cell here gave 41.0 and 6.7 tok/s. So the measuring process takes a
:func:`snapshot` before and after each cell and :func:`state_between` turns the two into the
cell's machine record (stored with the observation, ``machine`` column):

- ``other_cores``: CPU time that processes *outside* the measuring process tree used during
  the cell, in cores on average, summed from each one's ``/proc/PID/stat`` (processes of
  the tree, and any that left it by being reparented, are not counted; another process
  that started and exited within the cell is missed, an undercount);
- ``steal``: the share of the machine's CPU time the hypervisor took (``/proc/stat``);
- ``load1``: the 1-minute load average at the end, and ``cpu_mhz``: the mean clock
  (``cpufreq`` where readable, else ``/proc/cpuinfo``), with ``cpus`` and ``seconds``.

:func:`quality_flags` flags a cell ``noisy`` when others used more than the cores the cell
left free (plus :data:`OTHER_CORES_SLACK`), the hypervisor stole more than
:data:`MAX_STEAL`, or the within-cell spread is over :data:`MAX_SPREAD`. Linux only; on
another system the record is empty and nothing is flagged.
"""

from __future__ import annotations

import glob
import os
import time
from typing import NamedTuple

from metasel._schema import NOISY

#: cores other processes may use beyond those the cell leaves free before a cell is noisy
OTHER_CORES_SLACK = 0.25
#: share of CPU time stolen by the hypervisor beyond which a cell is noisy
MAX_STEAL = 0.05
#: coefficient of variation of the throughput over a cell's repeats beyond which it is noisy
MAX_SPREAD = 0.20


class Snapshot(NamedTuple):
    t: float  # monotonic seconds
    total: int  # all jiffies (all CPUs), from /proc/stat
    steal: int
    others: dict  # pid -> (start time, jiffies, parent pid) of every live process outside the measuring tree
    tree: frozenset  # pids of the measuring tree (this process and, with ``tree``, its descendants)


def _cpu_line() -> tuple[int, int] | None:
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()
    except OSError:
        return None
    vals = [int(v) for v in parts[1:]]
    vals += [0] * (8 - len(vals))
    user, nice, system, idle, iowait, irq, softirq, steal = vals[:8]
    return user + nice + system + irq + softirq + idle + iowait + steal, steal


def _proc_stats() -> dict[int, tuple[int, int, int, str]]:
    """pid -> (parent pid, start time, utime+stime, state) of every readable process: its own CPU
    time (a reaper's ``cutime`` would count the work of our tree's orphans, which init reaps, as its own)."""
    out = {}
    for path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(path) as f:
                text = f.read()
        except OSError:  # the process exited meanwhile
            continue
        rest = text[text.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
        try:
            out[int(path.split("/")[2])] = (int(rest[1]), int(rest[19]), int(rest[11]) + int(rest[12]), rest[0])
        except (IndexError, ValueError):
            continue
    return out


def _descendants(stats: dict, root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_rest) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def snapshot(*, tree: bool = True) -> Snapshot | None:
    """The machine's CPU counters and the CPU times of every process outside this process
    (and, with ``tree``, outside its descendants too).

    Other processes' work is summed from their own counters, not inferred as the machine's
    busy time minus the tree's: a process of the tree that exits unreaped by its parent (an
    engine server killed with its process group, its workers reparented to init) takes its
    CPU time out of the tree's sums, which would read as other processes' work."""
    cpu = _cpu_line()
    if cpu is None:
        return None
    stats = _proc_stats()
    mine = _descendants(stats, os.getpid()) if tree else {os.getpid()}
    others = {pid: (start, jiffies, ppid) for pid, (ppid, start, jiffies, state) in stats.items()
              if pid not in mine and state != "Z"}
    return Snapshot(time.monotonic(), cpu[0], cpu[1], others, frozenset(mine))


def _cpus() -> int:
    """The machine's CPUs: those ``/proc/stat``'s total counts, whatever this process's affinity
    (a collector pinned to one CPU with ``taskset`` still shares a machine of several)."""
    return os.cpu_count() or 1


def _cpu_mhz() -> float | None:
    freqs = []
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"):
        try:
            with open(path) as f:
                freqs.append(int(f.read()) / 1000.0)
        except (OSError, ValueError):
            pass
    if not freqs:
        try:
            with open("/proc/cpuinfo") as f:
                freqs = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
        except (OSError, ValueError, IndexError):
            freqs = []
    return round(sum(freqs) / len(freqs), 1) if freqs else None


def _load1() -> float | None:
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def state_between(before: Snapshot | None, after: Snapshot | None) -> dict:
    """The machine record of the interval between two snapshots (empty when unreadable)."""
    if before is None or after is None or after.total <= before.total:
        return {}
    cpus = _cpus()
    seconds = after.t - before.t
    total = after.total - before.total  # jiffies over all CPUs
    others = 0
    for pid, (start, jiffies, ppid) in after.others.items():
        if pid in before.tree:  # one of ours, reparented when its parent was killed
            continue
        was = before.others.get(pid)
        if was is not None and was[0] == start:
            others += max(0, jiffies - was[1])
        elif ppid != 1:  # started since: all of its time is new. An orphan (parent init) may be one of
            others += jiffies  # ours that started and lost its parent within the cell: not counted
    return {"other_cores": round(cpus * others / total, 3), "steal": round((after.steal - before.steal) / total, 4),
            "load1": _load1(), "cpu_mhz": _cpu_mhz(), "cpus": cpus, "seconds": round(seconds, 2)}


def sample(seconds: float = 1.0) -> dict:
    """The machine record of the next ``seconds`` with this process idle: what every other
    process, this one's children included, uses now."""
    before = snapshot(tree=False)
    time.sleep(seconds)
    return state_between(before, snapshot(tree=False))


def free_cores(threads: int | None, cpus: int) -> float:
    return max(0.0, float(cpus - (threads or cpus)))


def busy_reason(state: dict, threads: int | None = None) -> str | None:
    """Why the machine was too busy for a measurement with ``threads`` threads, or None."""
    if not state:
        return None
    cpus = int(state.get("cpus") or _cpus())
    allowed = free_cores(threads, cpus) + OTHER_CORES_SLACK
    if state.get("other_cores", 0.0) > allowed:
        load = f"; load average {state['load1']:.2f}" if state.get("load1") is not None else ""
        return (f"other processes used {state['other_cores']:.2f} of {cpus} cores "
                f"(at most {allowed:.2f} leave a {threads or cpus}-thread measurement alone){load}")
    if state.get("steal", 0.0) > MAX_STEAL:
        return f"the hypervisor stole {100 * state['steal']:.0f}% of the CPU time"
    return None


def quality_flags(result: dict, threads: int | None) -> tuple[str, str]:
    """``(flags, why)`` of a measured cell: ``noisy`` and the reason when the machine was busy
    during it or its repeats disagree; ``("", "")`` for a clean cell or a failure."""
    if result.get("status") != "ok":
        return "", ""
    why = busy_reason(result.get("machine") or {}, threads)
    spread = result.get("spread")
    if why is None and spread is not None and spread == spread and spread > MAX_SPREAD:
        why = f"its repeats disagree (spread {spread:.2f} > {MAX_SPREAD})"
    return (NOISY, why) if why else ("", "")


def watched(run, *, threads: int | None) -> dict:
    """``run()``'s result (a measured cell's fields) with the machine's state during it
    (``machine``) and, for a noisy cell, ``flags`` and the reason in ``message``."""
    before = snapshot()
    result = run()
    state = state_between(before, snapshot())
    if state:
        result["machine"] = state
    flags, why = quality_flags(result, threads)
    if flags:
        result["flags"] = flags
        result["message"] = f"{flags}: {why}"
    return result
